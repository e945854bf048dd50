#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "pyramid_pool.h"
#include "float_access.cuh"

namespace segtool::ops::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;


struct CellBox {
  int64_t h0, h1, w0, w1;
};

// Packed cell k -> its rows and columns.
__device__ __forceinline__ CellBox cell_box(const PoolBins& bins, int k, int64_t height, int64_t width) {
  int s = 0;
  while (s + 1 < bins.count && k >= bins.offset[s + 1]) ++s;
  const int b = bins.size[s];
  const int local = k - bins.offset[s];
  const int i = local / b, j = local - i * b;
  return {bin_start(i, b, height), bin_end(i, b, height), bin_start(j, b, width), bin_end(j, b, width)};
}

// NCHW: one block per (n, c) plane; each warp sums whole cells (lanes stride over the cell,
// then a shuffle tree), so a plane is read from global memory once and re-read from cache.
template <typename T>
__global__ void forward_planes_kernel(const T* __restrict__ x, int64_t height, int64_t width, PoolBins bins,
                                      T* __restrict__ out) {
  const int64_t plane = blockIdx.x;
  const T* p = x + plane * height * width;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int k = warp; k < bins.cells; k += kWarps) {
    const CellBox box = cell_box(bins, k, height, width);
    const int64_t kw = box.w1 - box.w0, area = (box.h1 - box.h0) * kw;
    float sum = 0.f;
    for (int64_t e = lane; e < area; e += 32) {
      const int64_t h = box.h0 + e / kw, w = box.w0 + e % kw;
      sum += load(p + h * width + w);
    }
    for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, offset);
    if (lane == 0) out[plane * bins.cells + k] = store<T>(sum / static_cast<float>(area));
  }
}

// Channels-last: grid (N * cells, ceil(C / 256)); a thread sums one channel of one cell,
// neighbouring threads reading neighbouring channels.
template <typename T>
__global__ void forward_pixels_kernel(const T* __restrict__ x, int64_t channels, int64_t height, int64_t width,
                                      PoolBins bins, T* __restrict__ out) {
  const int64_t task = blockIdx.x;
  const int64_t img = task / bins.cells;
  const int k = static_cast<int>(task - img * bins.cells);
  const int64_t c = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= channels) return;
  const CellBox box = cell_box(bins, k, height, width);
  float sum = 0.f;
  for (int64_t h = box.h0; h < box.h1; ++h)
    for (int64_t w = box.w0; w < box.w1; ++w) sum += load(x + ((img * height + h) * width + w) * channels + c);
  const float area = static_cast<float>((box.h1 - box.h0) * (box.w1 - box.w0));
  out[task * channels + c] = store<T>(sum / area);
}

// One thread per input element: the cells covering (h, w), bin size by bin size.
template <typename T>
__global__ void backward_kernel(const T* __restrict__ grad, int64_t n, int64_t channels, int64_t height, int64_t width,
                                PoolBins bins, bool channels_last, T* __restrict__ dx) {
  const int64_t numel = n * channels * height * width;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < numel;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t img, c, h, w;
    if (channels_last) {
      c = idx % channels;
      int64_t r = idx / channels;
      w = r % width;
      r /= width;
      h = r % height;
      img = r / height;
    } else {
      w = idx % width;
      int64_t r = idx / width;
      h = r % height;
      r /= height;
      c = r % channels;
      img = r / channels;
    }
    float sum = 0.f;
    for (int s = 0; s < bins.count; ++s) {
      const int b = bins.size[s];
      for (int i = 0; i < b; ++i) {
        const int64_t h0 = bin_start(i, b, height), h1 = bin_end(i, b, height);
        if (h < h0 || h >= h1) continue;
        for (int j = 0; j < b; ++j) {
          const int64_t w0 = bin_start(j, b, width), w1 = bin_end(j, b, width);
          if (w < w0 || w >= w1) continue;
          const int64_t k = bins.offset[s] + i * b + j;
          const int64_t g = channels_last ? (img * bins.cells + k) * channels + c : (img * channels + c) * bins.cells + k;
          sum += load(grad + g) / static_cast<float>((h1 - h0) * (w1 - w0));
        }
      }
    }
    dx[idx] = store<T>(sum);
  }
}

}  // namespace

template <typename T>
cudaError_t pyramid_pool_forward(const T* x, int64_t n, int64_t channels, int64_t height, int64_t width,
                                 const PoolBins& bins, bool channels_last, T* out, cudaStream_t stream) {
  if (n * channels == 0 || bins.cells == 0) return cudaSuccess;
  if (!channels_last) {
    forward_planes_kernel<T><<<static_cast<unsigned>(n * channels), kThreads, 0, stream>>>(x, height, width, bins, out);
  } else {
    const dim3 grid(static_cast<unsigned>(n * bins.cells), static_cast<unsigned>((channels + kThreads - 1) / kThreads));
    forward_pixels_kernel<T><<<grid, kThreads, 0, stream>>>(x, channels, height, width, bins, out);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t pyramid_pool_backward(const T* grad, int64_t n, int64_t channels, int64_t height, int64_t width,
                                  const PoolBins& bins, bool channels_last, T* dx, cudaStream_t stream) {
  const int64_t numel = n * channels * height * width;
  if (numel == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((numel + kThreads - 1) / kThreads, 65535 * 8));
  backward_kernel<T><<<blocks, kThreads, 0, stream>>>(grad, n, channels, height, width, bins, channels_last, dx);
  return cudaGetLastError();
}

#define SEGTOOL_INSTANTIATE(T)                                                                                   \
  template cudaError_t pyramid_pool_forward<T>(const T*, int64_t, int64_t, int64_t, int64_t, const PoolBins&, bool, \
                                               T*, cudaStream_t);                                                \
  template cudaError_t pyramid_pool_backward<T>(const T*, int64_t, int64_t, int64_t, int64_t, const PoolBins&,     \
                                                bool, T*, cudaStream_t);
SEGTOOL_INSTANTIATE(float)
SEGTOOL_INSTANTIATE(__half)
SEGTOOL_INSTANTIATE(__nv_bfloat16)
#undef SEGTOOL_INSTANTIATE

}  // namespace segtool::ops::cuda
