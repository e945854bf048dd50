#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "channel_stats.h"

namespace segtool::ops::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__device__ __forceinline__ float to_float(T v) {
  return static_cast<float>(v);
}
template <>
__device__ __forceinline__ float to_float<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// One block per channel: threads stride over (n, i); a shared-memory tree reduces the
// partial sums. Accumulates in float (and a pairwise tree), as PyTorch's batch_norm_collect_statistics.
template <typename T>
__global__ void channel_sums_kernel(const T* __restrict__ x, int64_t batch, int64_t channels,
                                    int64_t inner, float* __restrict__ sum, float* __restrict__ sumsq) {
  const int64_t c = blockIdx.x;
  const int64_t per_channel = batch * inner;
  float s = 0.f, q = 0.f;
  for (int64_t k = threadIdx.x; k < per_channel; k += blockDim.x) {
    const int64_t n = k / inner;
    const int64_t i = k - n * inner;
    const float v = to_float(x[(n * channels + c) * inner + i]);
    s += v;
    q += v * v;
  }
  __shared__ float shared_s[kThreads];
  __shared__ float shared_q[kThreads];
  shared_s[threadIdx.x] = s;
  shared_q[threadIdx.x] = q;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      shared_s[threadIdx.x] += shared_s[threadIdx.x + stride];
      shared_q[threadIdx.x] += shared_q[threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    sum[c] = shared_s[0];
    sumsq[c] = shared_q[0];
  }
}

}  // namespace

template <typename T>
cudaError_t channel_sums(const T* x, int64_t batch, int64_t channels, int64_t inner, float* sum,
                         float* sumsq, cudaStream_t stream) {
  if (channels == 0) return cudaSuccess;
  channel_sums_kernel<T><<<static_cast<unsigned>(channels), kThreads, 0, stream>>>(x, batch, channels, inner, sum, sumsq);
  return cudaGetLastError();
}

template cudaError_t channel_sums<float>(const float*, int64_t, int64_t, int64_t, float*, float*, cudaStream_t);
template cudaError_t channel_sums<__half>(const __half*, int64_t, int64_t, int64_t, float*, float*, cudaStream_t);
template cudaError_t channel_sums<__nv_bfloat16>(const __nv_bfloat16*, int64_t, int64_t, int64_t, float*, float*,
                                                 cudaStream_t);

}  // namespace segtool::ops::cuda
