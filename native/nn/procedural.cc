#include "nn/procedural.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>

#include <cmath>

#include "nn/model.h"

namespace segtool::nn {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Fills a float32/float64 tensor with value(u_i) (computed in float64, rounded on store).
template <typename F>
void fill(at::Tensor& t, const std::string& name, F value) {
  const uint32_t h = fnv1a32(name);
  at::Tensor buffer = at::empty(t.sizes(), t.options().dtype(at::kDouble).requires_grad(false));
  double* data = buffer.data_ptr<double>();
  at::parallel_for(0, buffer.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) data[i] = value(procedural_u(h, static_cast<uint32_t>(i)));
  });
  t.copy_(buffer);
}

std::string strip_suffix(const std::string& s, const std::string& suffix) {
  return s.substr(0, s.size() - suffix.size());
}

}  // namespace

uint32_t fnv1a32(const std::string& s) {
  uint32_t h = 0x811C9DC5u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x01000193u;
  }
  return h;
}

uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

double procedural_u(uint32_t name_hash, uint32_t i) {
  return static_cast<double>(mix32(name_hash ^ mix32(i))) / 2147483648.0 - 1.0;
}

at::Tensor procedural_uniform(const std::string& name, std::vector<int64_t> shape) {
  at::Tensor t = at::empty(shape, at::kDouble);
  fill(t, name, [](double u) { return u; });
  return t;
}

void apply_procedural_weights(SegmentationModel& model) {
  at::NoGradGuard no_grad;
  for (auto& [name, t] : model.state_dict()) {  // aliases: filling them fills the model
    const auto mean = [](double u) { return 0.1 * u; };
    const auto var = [](double u) { return 1.0 + 0.25 * (u + 1.0); };
    if (ends_with(name, "num_batches_tracked")) {
      t.zero_();
    } else if (ends_with(name, "_running_iter")) {
      t.fill_(1.0);
    } else if (ends_with(name, "_tmp_running_mean")) {  // same values as the running_mean
      fill(t, strip_suffix(name, "_tmp_running_mean") + "running_mean", mean);
    } else if (ends_with(name, "running_mean")) {
      fill(t, name, mean);
    } else if (ends_with(name, "_tmp_running_var")) {
      fill(t, strip_suffix(name, "_tmp_running_var") + "running_var", var);
    } else if (ends_with(name, "running_var")) {
      fill(t, name, var);
    } else if (ends_with(name, "weight") && t.dim() >= 2) {
      const double scale = std::sqrt(6.0 / static_cast<double>(t.numel() / t.size(0)));
      fill(t, name, [scale](double u) { return scale * u; });
    } else if (ends_with(name, "weight")) {
      fill(t, name, [](double u) { return 1.0 + 0.1 * u; });
    } else if (ends_with(name, "bias")) {
      fill(t, name, [](double u) { return 0.1 * u; });
    }
  }
}

io::NamedTensors procedural_state_dict(const ModelOptions& options) {
  SegmentationModel model(options);
  apply_procedural_weights(model);
  return model.state_dict();
}

at::Tensor procedural_input(const std::string& name, std::vector<int64_t> shape) {
  return procedural_uniform(name, std::move(shape)).to(at::kFloat);
}

at::Tensor procedural_label(const std::string& name, std::vector<int64_t> shape) {
  // floor((u + 1) / 2 * 151) - 1 in float64, then int64
  return procedural_uniform(name, std::move(shape)).add(1.0).div(2.0).mul(151.0).floor().sub(1.0).to(at::kLong);
}

}  // namespace segtool::nn
