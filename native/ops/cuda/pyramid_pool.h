// CUDA kernels of the pyramid pooling module: adaptive average pooling for every bin size of
// the pyramid (1, 2, 3, 6 in the PPM) in one launch, with PyTorch's adaptive_avg_pool2d bin
// boundaries (ops/pool_bins.h), and its backward. Plain host launchers over raw pointers; the
// ATen glue is native/ops/ppm_pool.cc, the CPU twin native/ops/cpu/pyramid_pool_kernels.
// `T` is float, __half or __nv_bfloat16 (float accumulation).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "ops/pool_bins.h"

namespace segtool::ops::cuda {

// x: [N, C, H, W]. channels_last = false: x contiguous NCHW, out [N, C, cells] contiguous;
// true: x memory [N, H, W, C], out memory [N, cells, C]. Cells packed as PoolBins describes.
template <typename T>
cudaError_t pyramid_pool_forward(const T* x, int64_t n, int64_t channels, int64_t height, int64_t width,
                                 const PoolBins& bins, bool channels_last, T* out, cudaStream_t stream);

// grad: the packed gradient in the forward output's layout; dx: x's layout. Each input pixel
// gets the sum over the cells containing it of grad / cell area.
template <typename T>
cudaError_t pyramid_pool_backward(const T* grad, int64_t n, int64_t channels, int64_t height, int64_t width,
                                  const PoolBins& bins, bool channels_last, T* dx, cudaStream_t stream);

}  // namespace segtool::ops::cuda
