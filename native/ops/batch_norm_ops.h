// Device dispatch of synchronized BatchNorm's local kernels: the CPU kernels (ops/cpu/
// batch_norm_kernels) on CPU, the CUDA kernels (ops/cuda/batch_norm.cu) for float/half/bf16
// CUDA tensors when built with CUDA, and an ATen composition of the same math otherwise (double
// on CUDA, other devices). Contiguous and channels-last inputs; results of the elementwise
// passes keep the input's memory format. Per-channel vectors are [C] (any float dtype); the
// reductions return [2, C] float64 on the input's device.
#pragma once
#include <ATen/core/Tensor.h>

namespace segtool::ops {

// Row 0: sum of x, row 1: sum of x^2 per channel.
at::Tensor bn_channel_sums(const at::Tensor& x);
// Row 0: sum of dy, row 1: sum of dy * (x - mean[c]) per channel.
at::Tensor bn_grad_sums(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& mean);
// x * scale[c] + shift[c], in x's dtype.
at::Tensor bn_affine(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift);
// dy * dy_scale[c] + (x - mean[c]) * x_scale[c] + offset[c], in x's dtype.
at::Tensor bn_input_grad(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& mean,
                         const at::Tensor& dy_scale, const at::Tensor& x_scale, const at::Tensor& offset);

// True when x is read as channels-last ([N*H*W, C] memory) by the kernels.
bool bn_channels_last(const at::Tensor& x);

// Whether this build has the CUDA kernels (SEGTOOL_WITH_CUDA).
bool built_with_cuda_kernels();

}  // namespace segtool::ops
