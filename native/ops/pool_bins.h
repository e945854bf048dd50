// Bin geometry of adaptive average pooling shared by the CPU and CUDA pyramid pooling (plain
// C++, no LibTorch, so nvcc compiles it into the kernels too). PyTorch's adaptive_avg_pool2d:
// cell i of `bins` over `size` covers [floor(i*size/bins), ceil((i+1)*size/bins)).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define SEGTOOL_HOST_DEVICE __host__ __device__
#else
#define SEGTOOL_HOST_DEVICE
#endif

namespace segtool::ops {

constexpr int kMaxPoolBins = 8;   // bin sizes per call
constexpr int kMaxBinSize = 32;   // largest b (b x b cells)

SEGTOOL_HOST_DEVICE inline int64_t bin_start(int64_t i, int64_t bins, int64_t size) { return (i * size) / bins; }
SEGTOOL_HOST_DEVICE inline int64_t bin_end(int64_t i, int64_t bins, int64_t size) {
  return ((i + 1) * size + bins - 1) / bins;
}

// The bin sizes of one pyramid, passed by value to kernels.
struct PoolBins {
  int count = 0;
  int size[kMaxPoolBins] = {};
  int offset[kMaxPoolBins] = {};  // first packed cell of each bin size
  int cells = 0;                  // sum of size^2

  SEGTOOL_HOST_DEVICE void add(int b) {
    offset[count] = cells;
    size[count++] = b;
    cells += b * b;
  }
};

}  // namespace segtool::ops
