// Loads as float and stores from float for every element type the kernels take (float, double,
// half, bfloat16): half and bf16 inputs are accumulated in float.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace segtool::ops::cuda {

template <typename T>
__device__ __forceinline__ float load(const T* p) {
  return static_cast<float>(*p);
}
template <>
__device__ __forceinline__ float load<__half>(const __half* p) {
  return __half2float(*p);
}
template <>
__device__ __forceinline__ float load<__nv_bfloat16>(const __nv_bfloat16* p) {
  return __bfloat162float(*p);
}
template <typename T>
__device__ __forceinline__ T store(float v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __half store<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

}  // namespace segtool::ops::cuda
