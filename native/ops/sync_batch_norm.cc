#include "ops/sync_batch_norm.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <stdexcept>
#include <string>

#include "distributed/communicator.h"
#include "ops/batch_norm_ops.h"


namespace segtool::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The local kernels, on the tensor's device (ops/batch_norm_ops.h: CPU, CUDA, or ATen).
// [2, C] float64 on x's device: sum and sum of squares per channel.
at::Tensor local_channel_sums(const at::Tensor& x) { return bn_channel_sums(x); }

// [2, C] float64: sum dy and sum dy * (x - mean) per channel.
at::Tensor local_grad_sums(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& mean) {
  return bn_grad_sums(dy, x, mean);
}

at::Tensor affine(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift) {
  return bn_affine(x, scale, shift);
}

at::Tensor input_grad(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& dy_scale,
                      const at::Tensor& x_scale, const at::Tensor& offset) {
  return bn_input_grad(dy, x, mean, dy_scale, x_scale, offset);
}

// Channels-last inputs stay channels-last (the kernels read them as they are).
at::Tensor kernel_layout(const at::Tensor& x) { return bn_channels_last(x) ? x : x.contiguous(); }

void all_reduce(dist::Communicator* communicator, const at::Tensor& t) {
  if (communicator && communicator->world_size() > 1) communicator->all_reduce_sum({t});
}

// What the autograd node needs besides its tensor inputs.
struct Config {
  at::Tensor running_mean, running_var;
  double momentum, eps;
  dist::Communicator* communicator;
  SyncBatchNormMode mode;
  const ReferenceBuffers* reference;
};

// Running statistics from the global batch statistics (float64 [C]), written in place.
void update_running_stats(const Config& config, const at::Tensor& mean, const at::Tensor& unbiased_var) {
  const double m = config.momentum;
  if (config.mode == SyncBatchNormMode::Exact) {
    if (config.running_mean.defined()) {
      config.running_mean.copy_(mean * m + config.running_mean.to(at::kDouble) * (1 - m));
    }
    if (config.running_var.defined()) {
      config.running_var.copy_(unbiased_var * m + config.running_var.to(at::kDouble) * (1 - m));
    }
    return;
  }
  // The reference: tmp = tmp * (1 - momentum) + value, iter = iter * (1 - momentum) + 1,
  // running = tmp / iter (a moving average corrected for its start at zero).
  const ReferenceBuffers& b = *config.reference;
  const double keep = 1 - m;
  at::Tensor tmp_mean = b.tmp_running_mean.to(at::kDouble) * keep + mean;
  at::Tensor tmp_var = b.tmp_running_var.to(at::kDouble) * keep + unbiased_var;
  at::Tensor iter = b.running_iter.to(at::kDouble) * keep + 1;
  b.tmp_running_mean.copy_(tmp_mean);
  b.tmp_running_var.copy_(tmp_var);
  b.running_iter.copy_(iter);
  if (config.running_mean.defined()) config.running_mean.copy_(tmp_mean / iter);
  if (config.running_var.defined()) config.running_var.copy_(tmp_var / iter);
}

class SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, const Config* config) {
    at::Tensor x = kernel_layout(input);
    const int64_t channels = x.size(1);
    const auto stat_options = x.options().dtype(at::kDouble);

    // One collective: [sum (C), sum of squares (C), count (1)].
    at::Tensor local = local_channel_sums(x);
    at::Tensor stats = at::cat({local.view({-1}), at::full({1}, static_cast<double>(x.numel() / channels), stat_options)});
    all_reduce(config->communicator, stats);
    const double count = stats[2 * channels].item<double>();
    if (count < 2) {
      throw std::invalid_argument("sync_batch_norm: expected more than 1 value per channel over all ranks when training, got " +
                                  std::to_string(static_cast<int64_t>(count)));
    }
    at::Tensor sum = stats.narrow(0, 0, channels);
    at::Tensor mean = sum / count;
    at::Tensor sum_var = stats.narrow(0, channels, channels) - sum * mean;
    at::Tensor var = sum_var / count;
    at::Tensor invstd, gate;
    if (config->mode == SyncBatchNormMode::Exact) {
      invstd = (var.clamp_min(0) + config->eps).rsqrt();
      gate = at::ones_like(var);
    } else {
      invstd = var.clamp_min(config->eps).rsqrt();
      gate = (var >= config->eps).to(at::kDouble);  // clamp passes no gradient where it clamps
    }
    update_running_stats(*config, mean, sum_var / (count - 1));

    at::Tensor scale = weight.to(at::kDouble) * invstd;
    at::Tensor shift = bias.to(at::kDouble) - mean * scale;
    ctx->save_for_backward({x, weight});
    ctx->saved_data["mean"] = mean;
    ctx->saved_data["invstd"] = invstd;
    ctx->saved_data["gate"] = gate;
    ctx->saved_data["count"] = count;
    // The communicator outlives the backward pass (documented in the header).
    ctx->saved_data["communicator"] = reinterpret_cast<int64_t>(config->communicator);
    return affine(x, scale, shift);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor mean = ctx->saved_data["mean"].toTensor();
    const at::Tensor invstd = ctx->saved_data["invstd"].toTensor();
    const at::Tensor gate = ctx->saved_data["gate"].toTensor();
    const double count = ctx->saved_data["count"].toDouble();
    auto* communicator = reinterpret_cast<dist::Communicator*>(ctx->saved_data["communicator"].toInt());

    // Every rank reaches this collective, even one whose output received no gradient.
    at::Tensor dy = grad_outputs[0].defined() ? grad_outputs[0].contiguous(x.suggest_memory_format()) : at::zeros_like(x);
    at::Tensor local = local_grad_sums(dy, x, mean);  // [sum dy, sum dy*(x - mean)], this rank
    at::Tensor global = local.clone();
    all_reduce(communicator, global);

    const at::Tensor w = weight.to(at::kDouble);
    const at::Tensor mean_dy = global[0] / count;
    const at::Tensor mean_dy_centred = global[1] / count;
    // dx = w*invstd * (dy - mean(dy) - gate * (x - mean) * invstd^2 * mean(dy*(x - mean)))
    const at::Tensor dy_scale = w * invstd;
    const at::Tensor x_scale = -dy_scale * invstd * invstd * gate * mean_dy_centred;
    const at::Tensor offset = -dy_scale * mean_dy;
    at::Tensor grad_input = input_grad(dy, x, mean, dy_scale, x_scale, offset);
    at::Tensor grad_weight = (local[1] * invstd).to(weight.scalar_type());
    at::Tensor grad_bias = local[0].to(weight.scalar_type());
    return {grad_input, grad_weight, grad_bias, at::Tensor()};
  }
};

}  // namespace

at::Tensor sync_batch_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           const at::Tensor& running_mean, const at::Tensor& running_var, double momentum,
                           double eps, dist::Communicator* communicator, SyncBatchNormMode mode,
                           const ReferenceBuffers* reference_buffers) {
  if (x.dim() < 2) {
    throw std::invalid_argument("sync_batch_norm: expected an input of shape [N, C, ...], got " +
                                std::to_string(x.dim()) + " dimension(s)");
  }
  const int64_t channels = x.size(1);
  auto check_channels = [&](const at::Tensor& t, const char* name) {
    if (t.defined() && t.numel() != channels) {
      throw std::invalid_argument(std::string("sync_batch_norm: ") + name + " has " + std::to_string(t.numel()) +
                                  " values for " + std::to_string(channels) + " channels");
    }
  };
  check_channels(weight, "weight");
  check_channels(bias, "bias");
  check_channels(running_mean, "running_mean");
  check_channels(running_var, "running_var");
  if (mode == SyncBatchNormMode::Reference) {
    if (!reference_buffers) throw std::invalid_argument("sync_batch_norm: Reference mode needs the reference buffers");
    check_channels(reference_buffers->tmp_running_mean, "_tmp_running_mean");
    check_channels(reference_buffers->tmp_running_var, "_tmp_running_var");
    if (reference_buffers->running_iter.numel() != 1) throw std::invalid_argument("sync_batch_norm: _running_iter must hold 1 value");
  }
  // Autograd inputs must be defined tensors: no affine = weight 1, bias 0 (without gradient).
  const auto param_options = x.options().dtype(x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  const at::Tensor w = weight.defined() ? weight : at::ones({channels}, param_options);
  const at::Tensor b = bias.defined() ? bias : at::zeros({channels}, param_options);
  const Config config{running_mean, running_var, momentum, eps, communicator, mode, reference_buffers};
  return SyncBatchNormFunction::apply(x, w, b, &config);
}

}  // namespace segtool::ops
