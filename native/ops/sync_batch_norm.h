// Synchronized BatchNorm: training-mode BatchNorm whose statistics cover the batches of every
// rank, as if the ranks' batches were concatenated (they may differ in batch size and image
// size; a rank with an empty batch still takes part). One all-reduce of [sum, sum of squares,
// count] per channel in the forward, one of [sum dy, sum dy*(x - mean)] in the backward.
// Differentiable through LibTorch autograd (w.r.t. input, weight and bias).
#pragma once
#include <ATen/core/Tensor.h>

namespace segtool::dist {
class Communicator;
}

namespace segtool::ops {

enum class SyncBatchNormMode {
  // Equals at::batch_norm over the concatenated batch: 1/sqrt(var + eps), running stats
  // updated as PyTorch (momentum * batch + (1 - momentum) * running, unbiased variance).
  Exact,
  // The CSAIL reference's SynchronizedBatchNorm2d, so released weights fine-tune the same:
  // 1/sqrt(max(var, eps)) (no gradient through var where var < eps), and running stats as a
  // bias-corrected moving average of the unbiased variance kept in ReferenceBuffers.
  Reference,
};

// The reference's extra buffers (state-dict keys `_tmp_running_mean`, `_tmp_running_var`,
// `_running_iter`), updated in place in Reference mode.
struct ReferenceBuffers {
  at::Tensor tmp_running_mean;  // [C]
  at::Tensor tmp_running_var;   // [C]
  at::Tensor running_iter;      // [1]
};

// For the models engineer: a BatchNorm layer in training mode calls
//
//   y = ops::sync_batch_norm(x, weight, bias, running_mean, running_var, momentum, eps,
//                            communicator, mode, mode == Reference ? &buffers : nullptr);
//
// - x: [N, C, ...] float/double (half/bf16 too); N may be 0 on some ranks. weight/bias may be
//   undefined (no affine). running_mean/running_var ([C]) may be undefined (no tracking);
//   they and `reference_buffers` are updated in place with the global statistics.
// - communicator: nullptr (or world size 1) = this process alone: Exact mode then equals
//   at::batch_norm(x, weight, bias, running_mean, running_var, true, momentum, eps, ...).
//   It must outlive the backward pass, and every rank must run the same BN layers in the same
//   order (forward and backward): each call is a collective.
// - The returned weight/bias gradients are this rank's share (sum over its own batch), as in
//   PyTorch's SyncBatchNorm: the gradient all-reduce (sum, or average with the loss averaged)
//   completes them. The input gradient already covers every rank's batch.
// - Eval mode (running statistics) is plain at::batch_norm(..., training=false, ...) in both
//   modes (the reference calls F.batch_norm there); do not call this function for it.
// Throws std::invalid_argument for bad shapes or fewer than 2 values per channel over all
// ranks; dist::DistError when a collective fails.
at::Tensor sync_batch_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           const at::Tensor& running_mean, const at::Tensor& running_var, double momentum,
                           double eps, dist::Communicator* communicator, SyncBatchNormMode mode,
                           const ReferenceBuffers* reference_buffers);

}  // namespace segtool::ops
