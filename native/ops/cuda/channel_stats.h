// Per-channel statistics for synchronized BatchNorm on CUDA: the local part of SyncBN's
// forward (sum and sum of squares per channel, float accumulation for half/bf16 inputs).
// Plain CUDA host launchers over raw pointers, so the kernels compile without LibTorch; the
// ATen glue (dispatch, streams, checks) lives with the op in native/ops/.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace segtool::ops::cuda {

// x is contiguous NCHW with `inner` = H*W. Writes sum[c] and sumsq[c] (float, length C).
// `T` is float, __half or __nv_bfloat16.
template <typename T>
cudaError_t channel_sums(const T* x, int64_t batch, int64_t channels, int64_t inner, float* sum,
                         float* sumsq, cudaStream_t stream);

}  // namespace segtool::ops::cuda
