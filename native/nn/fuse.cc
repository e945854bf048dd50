#include "nn/fuse.h"

#include <ATen/ops/sqrt.h>

#include <cstdlib>
#include <cstring>

#include "nn/layers.h"

namespace segtool::nn {
namespace {

uint32_t version_of(const at::Tensor& t) { return t.defined() ? t._version() : 0; }

std::array<uint32_t, 6> versions_of(const Conv2d& conv, const BatchNorm2d& bn) {
  return {version_of(conv.weight), version_of(conv.bias),     version_of(bn.weight),
          version_of(bn.bias),     version_of(bn.running_mean), version_of(bn.running_var)};
}

}  // namespace

const FuseCache::Folded& FuseCache::get(const Conv2d& conv, const BatchNorm2d& bn, double eps, at::ScalarType dtype) {
  const auto versions = versions_of(conv, bn);
  auto it = entries_.find(conv.weight.unsafeGetTensorImpl());
  if (it != entries_.end() && it->second.versions == versions && it->second.device == conv.weight.device() &&
      it->second.dtype == dtype)
    return it->second;

  // The per-channel factors in float64, the weight scaled in its own dtype: one rounding of
  // w * scale (a float64 copy of the weight would be a transient the size of the largest conv
  // weight twice over, 300 MB for PPM's conv_last, and stay in the process's peak RSS).
  const at::Tensor w = conv.weight.detach();
  const at::Tensor scale =
      bn.weight.detach().to(at::kDouble).div(at::sqrt(bn.running_var.detach().to(at::kDouble).add(eps)));
  at::Tensor bias = bn.bias.detach().to(at::kDouble).sub(bn.running_mean.detach().to(at::kDouble).mul(scale));
  if (conv.bias.defined()) bias = bias.add(conv.bias.detach().to(at::kDouble).mul(scale));
  Folded f;
  f.weight = w.mul(scale.to(w.scalar_type()).view({-1, 1, 1, 1})).to(dtype).contiguous(w.suggest_memory_format());
  f.bias = bias.to(dtype);
  f.dtype = dtype;
  f.versions = versions;
  f.device = w.device();
  ++builds_;
  return entries_.insert_or_assign(conv.weight.unsafeGetTensorImpl(), std::move(f)).first->second;
}

bool fuse_default() {
  static const bool value = [] {
    const char* v = std::getenv("SEGTOOL_FUSE");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return value;
}

}  // namespace segtool::nn
