#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "batch_norm.h"
#include "float_access.cuh"

namespace segtool::ops::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTileChannels = 32;  // channels-last: channels per block (x), rows per block (y)
constexpr int kTileRows = 8;


int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Chunks per channel: enough blocks to fill a large GPU, each still summing >= ~2K values.
int64_t reduce_chunks(int64_t outer, int64_t inner) {
  if (inner > 1) return std::max<int64_t>(1, std::min<int64_t>(64, ceil_div(outer * inner, kThreads * 8)));
  return std::max<int64_t>(1, std::min<int64_t>(256, ceil_div(outer, kTileRows * 32)));
}

// The two terms of each reduction at element e of channel c.
template <typename T>
struct StatsTerm {
  const T* x;
  __device__ __forceinline__ void operator()(int64_t e, int64_t, float& a, float& b) const {
    const float v = load(x + e);
    a += v;
    b += v * v;
  }
};
template <typename T>
struct GradTerm {
  const T* dy;
  const T* x;
  const float* mean;
  __device__ __forceinline__ void operator()(int64_t e, int64_t c, float& a, float& b) const {
    const float g = load(dy + e);
    a += g;
    b += g * (load(x + e) - mean[c]);
  }
};

// inner > 1: grid (C, chunks); the block's threads stride over its chunk of channel c's
// outer*inner values; a shared-memory tree reduces them; partial[chunk][0|1][c].
template <typename Term>
__global__ void reduce_planes_kernel(Term term, int64_t outer, int64_t channels, int64_t inner, float* partial) {
  const int64_t c = blockIdx.x;
  const int64_t chunks = gridDim.y, chunk = blockIdx.y;
  const int64_t total = outer * inner;
  const int64_t per = (total + chunks - 1) / chunks;
  const int64_t k0 = chunk * per, k1 = min(total, k0 + per);
  float a = 0.f, b = 0.f;
  for (int64_t k = k0 + threadIdx.x; k < k1; k += blockDim.x) {
    const int64_t n = k / inner;
    term((n * channels + c) * inner + (k - n * inner), c, a, b);
  }
  __shared__ float sa[kThreads];
  __shared__ float sb[kThreads];
  sa[threadIdx.x] = a;
  sb[threadIdx.x] = b;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      sa[threadIdx.x] += sa[threadIdx.x + stride];
      sb[threadIdx.x] += sb[threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    partial[(chunk * 2) * channels + c] = sa[0];
    partial[(chunk * 2 + 1) * channels + c] = sb[0];
  }
}

// inner == 1 (channels-last): grid (ceil(C/32), chunks), block (32, 8): x runs over channels
// (coalesced), y over rows of the chunk; the 8 rows' sums reduced in shared memory.
template <typename Term>
__global__ void reduce_rows_kernel(Term term, int64_t outer, int64_t channels, float* partial) {
  const int64_t c = blockIdx.x * kTileChannels + threadIdx.x;
  const int64_t chunks = gridDim.y, chunk = blockIdx.y;
  const int64_t per = (outer + chunks - 1) / chunks;
  const int64_t r0 = chunk * per, r1 = min(outer, r0 + per);
  float a = 0.f, b = 0.f;
  if (c < channels) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kTileRows) term(r * channels + c, c, a, b);
  }
  __shared__ float sa[kTileRows][kTileChannels];
  __shared__ float sb[kTileRows][kTileChannels];
  sa[threadIdx.y][threadIdx.x] = a;
  sb[threadIdx.y][threadIdx.x] = b;
  __syncthreads();
  for (int stride = kTileRows / 2; stride > 0; stride >>= 1) {
    if (threadIdx.y < stride) {
      sa[threadIdx.y][threadIdx.x] += sa[threadIdx.y + stride][threadIdx.x];
      sb[threadIdx.y][threadIdx.x] += sb[threadIdx.y + stride][threadIdx.x];
    }
    __syncthreads();
  }
  if (threadIdx.y == 0 && c < channels) {
    partial[(chunk * 2) * channels + c] = sa[0][threadIdx.x];
    partial[(chunk * 2 + 1) * channels + c] = sb[0][threadIdx.x];
  }
}

// Sums the chunks of each channel in order.
__global__ void finish_kernel(const float* partial, int64_t chunks, int64_t channels, float* out_a, float* out_b) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= channels) return;
  float a = 0.f, b = 0.f;
  for (int64_t k = 0; k < chunks; ++k) {
    a += partial[(k * 2) * channels + c];
    b += partial[(k * 2 + 1) * channels + c];
  }
  out_a[c] = a;
  out_b[c] = b;
}

template <typename Term>
cudaError_t reduce(Term term, int64_t outer, int64_t channels, int64_t inner, float* out_a, float* out_b,
                   float* workspace, cudaStream_t stream) {
  if (channels == 0) return cudaSuccess;
  const int64_t chunks = reduce_chunks(outer, inner);
  if (outer * inner == 0) {
    cudaMemsetAsync(out_a, 0, channels * sizeof(float), stream);
    cudaMemsetAsync(out_b, 0, channels * sizeof(float), stream);
    return cudaGetLastError();
  }
  if (inner > 1) {
    const dim3 grid(static_cast<unsigned>(channels), static_cast<unsigned>(chunks));
    reduce_planes_kernel<Term><<<grid, kThreads, 0, stream>>>(term, outer, channels, inner, workspace);
  } else {
    const dim3 grid(static_cast<unsigned>(ceil_div(channels, kTileChannels)), static_cast<unsigned>(chunks));
    const dim3 block(kTileChannels, kTileRows);
    reduce_rows_kernel<Term><<<grid, block, 0, stream>>>(term, outer, channels, workspace);
  }
  finish_kernel<<<static_cast<unsigned>(ceil_div(channels, kThreads)), kThreads, 0, stream>>>(workspace, chunks, channels,
                                                                                               out_a, out_b);
  return cudaGetLastError();
}

unsigned elementwise_blocks(int64_t numel) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(ceil_div(numel, kThreads), 65535 * 8)));
}

template <typename T>
__global__ void affine_kernel(const T* __restrict__ x, const float* __restrict__ scale, const float* __restrict__ shift,
                              T* __restrict__ y, int64_t numel, int64_t channels, int64_t inner) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < numel;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = (i / inner) % channels;
    y[i] = store<T>(load(x + i) * scale[c] + shift[c]);
  }
}

template <typename T>
__global__ void input_grad_kernel(const T* __restrict__ dy, const T* __restrict__ x, const float* __restrict__ mean,
                                  const float* __restrict__ dy_scale, const float* __restrict__ x_scale,
                                  const float* __restrict__ offset, T* __restrict__ dx, int64_t numel, int64_t channels,
                                  int64_t inner) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < numel;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = (i / inner) % channels;
    dx[i] = store<T>(load(dy + i) * dy_scale[c] + (load(x + i) - mean[c]) * x_scale[c] + offset[c]);
  }
}

}  // namespace

size_t channel_reduce_workspace(int64_t outer, int64_t channels, int64_t inner) {
  return static_cast<size_t>(2 * channels * reduce_chunks(outer, inner));
}

template <typename T>
cudaError_t bn_channel_sums(const T* x, int64_t outer, int64_t channels, int64_t inner, float* sum, float* sumsq,
                            float* workspace, cudaStream_t stream) {
  return reduce(StatsTerm<T>{x}, outer, channels, inner, sum, sumsq, workspace, stream);
}

template <typename T>
cudaError_t bn_grad_sums(const T* dy, const T* x, const float* mean, int64_t outer, int64_t channels, int64_t inner,
                         float* sum_dy, float* sum_dy_xmu, float* workspace, cudaStream_t stream) {
  return reduce(GradTerm<T>{dy, x, mean}, outer, channels, inner, sum_dy, sum_dy_xmu, workspace, stream);
}

template <typename T>
cudaError_t bn_affine(const T* x, const float* scale, const float* shift, T* y, int64_t numel, int64_t channels,
                      int64_t inner, cudaStream_t stream) {
  if (numel == 0) return cudaSuccess;
  affine_kernel<T><<<elementwise_blocks(numel), kThreads, 0, stream>>>(x, scale, shift, y, numel, channels, inner);
  return cudaGetLastError();
}

template <typename T>
cudaError_t bn_input_grad(const T* dy, const T* x, const float* mean, const float* dy_scale, const float* x_scale,
                          const float* offset, T* dx, int64_t numel, int64_t channels, int64_t inner,
                          cudaStream_t stream) {
  if (numel == 0) return cudaSuccess;
  input_grad_kernel<T><<<elementwise_blocks(numel), kThreads, 0, stream>>>(dy, x, mean, dy_scale, x_scale, offset, dx,
                                                                           numel, channels, inner);
  return cudaGetLastError();
}

#define SEGTOOL_INSTANTIATE(T)                                                                                        \
  template cudaError_t bn_channel_sums<T>(const T*, int64_t, int64_t, int64_t, float*, float*, float*, cudaStream_t); \
  template cudaError_t bn_grad_sums<T>(const T*, const T*, const float*, int64_t, int64_t, int64_t, float*, float*,   \
                                       float*, cudaStream_t);                                                         \
  template cudaError_t bn_affine<T>(const T*, const float*, const float*, T*, int64_t, int64_t, int64_t,              \
                                    cudaStream_t);                                                                    \
  template cudaError_t bn_input_grad<T>(const T*, const T*, const float*, const float*, const float*, const float*,   \
                                        T*, int64_t, int64_t, int64_t, cudaStream_t);
SEGTOOL_INSTANTIATE(float)
SEGTOOL_INSTANTIATE(__half)
SEGTOOL_INSTANTIATE(__nv_bfloat16)
#undef SEGTOOL_INSTANTIATE

}  // namespace segtool::ops::cuda
