// CUDA kernels of synchronized BatchNorm: per-channel reductions (statistics for the forward,
// sum dy and sum dy*(x - mean) for the backward) and the two elementwise passes. Plain CUDA host
// launchers over raw pointers (no LibTorch, like channel_stats.h); the ATen glue, dtype dispatch
// and streams live in native/ops/batch_norm_ops.cc. CPU twin: native/ops/cpu/batch_norm_kernels.
//
// Layout: the input is read as [outer, C, inner]: contiguous NCHW is outer = N, inner = H*W;
// channels-last (and [N, C]) is outer = N*H*W, inner = 1, read with channels across threads.
// `T` is float, __half or __nv_bfloat16; accumulation and elementwise math are in float.
// Reductions are deterministic: fixed chunks (chosen from the sizes only) summed in order.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace segtool::ops::cuda {

// Floats of scratch the reductions below need for these sizes (device memory, any content).
size_t channel_reduce_workspace(int64_t outer, int64_t channels, int64_t inner);

// sum[c] = sum of x, sumsq[c] = sum of x^2 over outer and inner.
template <typename T>
cudaError_t bn_channel_sums(const T* x, int64_t outer, int64_t channels, int64_t inner, float* sum, float* sumsq,
                            float* workspace, cudaStream_t stream);

// sum_dy[c] = sum of dy, sum_dy_xmu[c] = sum of dy * (x - mean[c]).
template <typename T>
cudaError_t bn_grad_sums(const T* dy, const T* x, const float* mean, int64_t outer, int64_t channels, int64_t inner,
                         float* sum_dy, float* sum_dy_xmu, float* workspace, cudaStream_t stream);

// y = x * scale[c] + shift[c] (normalise + affine with scale = w*invstd, shift = b - mean*scale).
template <typename T>
cudaError_t bn_affine(const T* x, const float* scale, const float* shift, T* y, int64_t numel, int64_t channels,
                      int64_t inner, cudaStream_t stream);

// dx = dy * dy_scale[c] + (x - mean[c]) * x_scale[c] + offset[c].
template <typename T>
cudaError_t bn_input_grad(const T* dy, const T* x, const float* mean, const float* dy_scale, const float* x_scale,
                          const float* offset, T* dx, int64_t numel, int64_t channels, int64_t inner,
                          cudaStream_t stream);

}  // namespace segtool::ops::cuda
