// CPU kernels of synchronized BatchNorm. The input is viewed as [N, C, inner] (contiguous;
// inner = H*W, 1 for [N, C]); a 4-D channels-last input is read as [N*H*W, C] without a copy
// and elementwise results keep its memory format. Per-channel parameters and results are float64 [C] tensors.
// Reductions accumulate in double in a fixed order (deterministic for any thread count); the
// CUDA kernel (ops/cuda/channel_stats.cu) computes the same sums with float accumulators.
// One pass each, no temporaries: that is why these exist instead of an ATen composition.
#pragma once
#include <ATen/core/Tensor.h>

namespace segtool::ops::cpu {

// [2, C] float64: row 0 = sum of x, row 1 = sum of x^2, per channel.
at::Tensor channel_sums(const at::Tensor& x);

// [2, C] float64: row 0 = sum of dy, row 1 = sum of dy * (x - mean[c]), per channel.
at::Tensor channel_grad_sums(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& mean);

// x * scale[c] + shift[c], in x's dtype (computed in float, or double for double inputs).
at::Tensor channel_affine(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift);

// dy * dy_scale[c] + (x - mean[c]) * x_scale[c] + offset[c]: BatchNorm's input gradient once
// the per-channel terms are known.
at::Tensor batch_norm_input_grad(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& mean,
                                 const at::Tensor& dy_scale, const at::Tensor& x_scale, const at::Tensor& offset);

}  // namespace segtool::ops::cpu
