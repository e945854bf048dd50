// The pyramid pooling module's adaptive average pooling, all bin sizes (the PPM's 1, 2, 3, 6)
// in one pass over the input: the CPU kernels (ops/cpu/pyramid_pool_kernels) for CPU tensors,
// the CUDA kernels (ops/cuda/pyramid_pool.cu) for float/half/bf16 CUDA tensors, chosen by the
// tensor's device; other devices and dtypes fall back to at::adaptive_avg_pool2d per bin.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <vector>

namespace segtool::ops {

// One [N, C, b, b] tensor per bin size b, each equal (within float rounding: sums accumulate in
// double on CPU, float on CUDA) to at::adaptive_avg_pool2d(x, {b, b}). x: [N, C, H, W],
// contiguous or channels-last (the results then are channels-last views). Differentiable
// w.r.t. x (a LibTorch autograd function); under InferenceMode or no-grad just the kernel.
std::vector<at::Tensor> pyramid_pool(const at::Tensor& x, c10::ArrayRef<int64_t> bins);

// The kernels without autograd: packed cells [N, C, cells] (ops/cpu/pyramid_pool_kernels.h
// describes the packing) and their gradient, on x's device.
at::Tensor pyramid_pool_packed(const at::Tensor& x, c10::ArrayRef<int64_t> bins);
at::Tensor pyramid_pool_packed_backward(const at::Tensor& grad, const at::Tensor& like, c10::ArrayRef<int64_t> bins);

// Splits packed cells into the per-bin [N, C, b, b] views.
std::vector<at::Tensor> unpack_pyramid(const at::Tensor& packed, c10::ArrayRef<int64_t> bins);

}  // namespace segtool::ops
