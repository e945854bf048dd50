#include "ops/ppm_pool.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <stdexcept>
#include <string>

#include "ops/cpu/pyramid_pool_kernels.h"
#include "ops/pool_bins.h"

#ifdef SEGTOOL_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "ops/cuda/pyramid_pool.h"
#endif

namespace segtool::ops {
namespace {

int64_t total_cells(c10::ArrayRef<int64_t> bins) {
  int64_t cells = 0;
  for (int64_t b : bins) cells += b * b;
  return cells;
}

#ifdef SEGTOOL_WITH_CUDA
bool channels_last(const at::Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

bool cuda_kernel_dtype(const at::Tensor& x) {
  const auto t = x.scalar_type();
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

PoolBins cuda_bins(c10::ArrayRef<int64_t> sizes) {
  if (sizes.empty() || sizes.size() > static_cast<size_t>(kMaxPoolBins))
    throw std::invalid_argument("pyramid_pool: expected 1 to " + std::to_string(kMaxPoolBins) + " bin sizes");
  PoolBins bins;
  for (int64_t b : sizes) {
    if (b < 1 || b > kMaxBinSize) throw std::invalid_argument("pyramid_pool: bin size out of range: " + std::to_string(b));
    bins.add(static_cast<int>(b));
  }
  return bins;
}

template <typename F>
void with_cuda_type(const at::Tensor& x, F&& f) {
  switch (x.scalar_type()) {
    case at::kFloat: f(static_cast<float*>(nullptr)); break;
    case at::kHalf: f(static_cast<__half*>(nullptr)); break;
    case at::kBFloat16: f(static_cast<__nv_bfloat16*>(nullptr)); break;
    default: throw std::invalid_argument(std::string("pyramid_pool: unsupported CUDA dtype ") + c10::toString(x.scalar_type()));
  }
}

at::Tensor cuda_forward(const at::Tensor& input, c10::ArrayRef<int64_t> sizes) {
  const c10::cuda::CUDAGuard guard(input.device());
  const PoolBins bins = cuda_bins(sizes);
  const bool cl = channels_last(input);
  const at::Tensor x = cl ? input : input.contiguous();
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor out = cl ? at::empty({n, bins.cells, c}, x.options()).permute({0, 2, 1})
                      : at::empty({n, c, bins.cells}, x.options());
  with_cuda_type(x, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const cudaError_t status = cuda::pyramid_pool_forward(reinterpret_cast<const T*>(x.data_ptr()), n, c, h, w, bins, cl,
                                                          reinterpret_cast<T*>(out.data_ptr()),
                                                          c10::cuda::getCurrentCUDAStream());
    TORCH_CHECK(status == cudaSuccess, "pyramid_pool: CUDA kernel failed: ", cudaGetErrorString(status));
  });
  return out;
}

at::Tensor cuda_backward(const at::Tensor& grad, const at::Tensor& like, c10::ArrayRef<int64_t> sizes) {
  const c10::cuda::CUDAGuard guard(like.device());
  const PoolBins bins = cuda_bins(sizes);
  const bool cl = channels_last(like);
  const int64_t n = like.size(0), c = like.size(1), h = like.size(2), w = like.size(3);
  // The packed gradient in the forward output's layout, in like's dtype.
  const at::Tensor g = cl ? grad.to(like.scalar_type()).transpose(1, 2).contiguous()
                          : grad.to(like.scalar_type()).contiguous();
  at::Tensor dx = at::empty(like.sizes(), like.options().memory_format(cl ? at::MemoryFormat::ChannelsLast
                                                                           : at::MemoryFormat::Contiguous));
  with_cuda_type(like, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const cudaError_t status = cuda::pyramid_pool_backward(reinterpret_cast<const T*>(g.data_ptr()), n, c, h, w, bins, cl,
                                                           reinterpret_cast<T*>(dx.data_ptr()),
                                                           c10::cuda::getCurrentCUDAStream());
    TORCH_CHECK(status == cudaSuccess, "pyramid_pool_backward: CUDA kernel failed: ", cudaGetErrorString(status));
  });
  return dx;
}
#endif

// Whether the packed kernels handle x (else: at::adaptive_avg_pool2d per bin).
bool has_kernel(const at::Tensor& x) {
  if (x.is_cpu()) return true;
#ifdef SEGTOOL_WITH_CUDA
  if (x.is_cuda() && cuda_kernel_dtype(x)) return true;
#endif
  return false;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class PyramidPoolFunction : public torch::autograd::Function<PyramidPoolFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const std::vector<int64_t>& bins) {
    ctx->save_for_backward({x});
    ctx->saved_data["bins"] = bins;
    return pyramid_pool_packed(x, bins);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    const std::vector<int64_t> bins = ctx->saved_data["bins"].toIntVector();
    return {pyramid_pool_packed_backward(grad_outputs[0], x, bins), at::Tensor()};
  }
};

}  // namespace

at::Tensor pyramid_pool_packed(const at::Tensor& x, c10::ArrayRef<int64_t> bins) {
  if (x.dim() != 4) throw std::invalid_argument("pyramid_pool: expected [N, C, H, W], got " + std::to_string(x.dim()) + " dimension(s)");
  if (x.is_cpu()) return cpu::pyramid_pool_forward(x, bins);
#ifdef SEGTOOL_WITH_CUDA
  if (x.is_cuda() && cuda_kernel_dtype(x)) return cuda_forward(x, bins);
#endif
  std::vector<at::Tensor> parts;
  for (int64_t b : bins) parts.push_back(at::adaptive_avg_pool2d(x, {b, b}).flatten(2));
  return at::cat(parts, 2);
}

at::Tensor pyramid_pool_packed_backward(const at::Tensor& grad, const at::Tensor& like, c10::ArrayRef<int64_t> bins) {
  if (like.is_cpu()) return cpu::pyramid_pool_backward(grad, like, bins);
#ifdef SEGTOOL_WITH_CUDA
  if (like.is_cuda() && cuda_kernel_dtype(like)) return cuda_backward(grad, like, bins);
#endif
  at::Tensor dx = at::zeros_like(like);
  const std::vector<at::Tensor> g = unpack_pyramid(grad, bins);
  for (size_t i = 0; i < g.size(); ++i) dx.add_(at::_adaptive_avg_pool2d_backward(g[i].contiguous(), like));
  return dx;
}

std::vector<at::Tensor> unpack_pyramid(const at::Tensor& packed, c10::ArrayRef<int64_t> bins) {
  if (packed.dim() != 3 || packed.size(2) != total_cells(bins))
    throw std::invalid_argument("pyramid_pool: packed cells do not match the bin sizes");
  std::vector<at::Tensor> out;
  int64_t offset = 0;
  for (int64_t b : bins) {
    out.push_back(packed.narrow(2, offset, b * b).view({packed.size(0), packed.size(1), b, b}));
    offset += b * b;
  }
  return out;
}

std::vector<at::Tensor> pyramid_pool(const at::Tensor& x, c10::ArrayRef<int64_t> bins) {
  if (!has_kernel(x)) {
    std::vector<at::Tensor> out;
    for (int64_t b : bins) out.push_back(at::adaptive_avg_pool2d(x, {b, b}));
    return out;
  }
  const std::vector<int64_t> sizes(bins.begin(), bins.end());
  if (!at::GradMode::is_enabled() || !x.requires_grad()) return unpack_pyramid(pyramid_pool_packed(x, sizes), sizes);
  return unpack_pyramid(PyramidPoolFunction::apply(x, sizes), sizes);
}

}  // namespace segtool::ops
