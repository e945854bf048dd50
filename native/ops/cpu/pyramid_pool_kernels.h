// CPU kernels of the pyramid pooling module's adaptive average pooling: every bin size of the
// pyramid (the PPM's 1, 2, 3, 6) in one call, with the bin boundaries of PyTorch's
// adaptive_avg_pool2d (cell i of b over H rows covers [floor(i*H/b), ceil((i+1)*H/b))).
// The cells of all bins are packed along one dimension: bin s starts at sum_{t<s} b_t^2 and
// holds its b x b cells row-major. Sums accumulate in double (one rounding per cell); the CUDA
// kernels (ops/cuda/pyramid_pool.cu) compute the same cells with float accumulators.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>

namespace segtool::ops::cpu {

// x: [N, C, H, W], contiguous or channels-last, float/double/half/bf16. Returns the packed
// cells, logically [N, C, cells] in x's dtype: contiguous for a contiguous x, and with memory
// [N, cells, C] (strides {cells*C, 1, C}) for a channels-last x.
at::Tensor pyramid_pool_forward(const at::Tensor& x, c10::ArrayRef<int64_t> bins);

// The gradient of pyramid_pool_forward: grad [N, C, cells] (any strides) -> [N, C, H, W] in
// `like`'s dtype and memory format (contiguous or channels-last). Each input pixel gets the sum,
// over the cells containing it, of grad / cell area.
at::Tensor pyramid_pool_backward(const at::Tensor& grad, const at::Tensor& like, c10::ArrayRef<int64_t> bins);

}  // namespace segtool::ops::cpu
