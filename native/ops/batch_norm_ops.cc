#include "ops/batch_norm_ops.h"

#include <ATen/ATen.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "ops/cpu/batch_norm_kernels.h"

#ifdef SEGTOOL_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "ops/cuda/batch_norm.h"
#endif

namespace segtool::ops {
namespace {

at::Tensor channel_view(const at::Tensor& v, const at::Tensor& x) {
  std::vector<int64_t> shape(x.dim(), 1);
  shape[1] = v.numel();
  return v.reshape(shape);
}

std::vector<int64_t> reduced_dims(const at::Tensor& x) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

at::ScalarType compute_type(const at::Tensor& x) { return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

// Keeps a channels-last input as it is, makes anything else contiguous.
at::Tensor kernel_layout(const at::Tensor& x) { return bn_channels_last(x) ? x : x.contiguous(); }

#ifdef SEGTOOL_WITH_CUDA
bool cuda_kernel_dtype(const at::Tensor& x) {
  const auto t = x.scalar_type();
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

void check(cudaError_t status, const char* what) {
  TORCH_CHECK(status == cudaSuccess, what, ": CUDA kernel failed: ", cudaGetErrorString(status));
}

// [outer, C, inner] of the kernels' layout.
struct Shape {
  int64_t outer, channels, inner;
};
Shape shape_of(const at::Tensor& x) {
  const int64_t channels = x.size(1);
  if (bn_channels_last(x) || x.dim() == 2) return {channels ? x.numel() / channels : 0, channels, 1};
  const int64_t n = x.size(0);
  return {n, channels, n * channels != 0 ? x.numel() / (n * channels) : 0};
}

// Calls f(ptr) with x's data as the CUDA element type.
template <typename F>
void with_cuda_type(const at::Tensor& x, F&& f) {
  switch (x.scalar_type()) {
    case at::kFloat: f(x.data_ptr<float>()); break;
    case at::kHalf: f(reinterpret_cast<__half*>(x.data_ptr<at::Half>())); break;
    case at::kBFloat16: f(reinterpret_cast<__nv_bfloat16*>(x.data_ptr<at::BFloat16>())); break;
    default: throw std::invalid_argument(std::string("batch norm kernels: unsupported CUDA dtype ") + c10::toString(x.scalar_type()));
  }
}

at::Tensor floats_on(const at::Tensor& v, const at::Tensor& x) {
  return v.to(x.device(), at::kFloat).contiguous();
}

at::Tensor cuda_reduce(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& mean) {
  const c10::cuda::CUDAGuard guard(x.device());
  const Shape s = shape_of(x);
  at::Tensor out = at::empty({2, s.channels}, x.options().dtype(at::kFloat));
  at::Tensor workspace =
      at::empty({static_cast<int64_t>(cuda::channel_reduce_workspace(s.outer, s.channels, s.inner)) + 1},
                x.options().dtype(at::kFloat));
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  float* a = out.data_ptr<float>();
  float* b = a + s.channels;
  if (!dy.defined()) {
    with_cuda_type(x, [&](auto* xp) {
      check(cuda::bn_channel_sums(xp, s.outer, s.channels, s.inner, a, b, workspace.data_ptr<float>(), stream),
            "bn_channel_sums");
    });
  } else {
    const at::Tensor m = floats_on(mean, x);
    with_cuda_type(x, [&](auto* xp) {
      using T = std::remove_pointer_t<decltype(xp)>;
      const T* gp = reinterpret_cast<const T*>(dy.data_ptr());
      check(cuda::bn_grad_sums(gp, xp, m.data_ptr<float>(), s.outer, s.channels, s.inner, a, b,
                               workspace.data_ptr<float>(), stream),
            "bn_grad_sums");
    });
  }
  return out.to(at::kDouble);
}
#endif

}  // namespace

bool bn_channels_last(const at::Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

bool built_with_cuda_kernels() {
#ifdef SEGTOOL_WITH_CUDA
  return true;
#else
  return false;
#endif
}

at::Tensor bn_channel_sums(const at::Tensor& input) {
  if (input.is_cpu()) return cpu::channel_sums(input);
  const at::Tensor x = kernel_layout(input);
#ifdef SEGTOOL_WITH_CUDA
  if (x.is_cuda() && cuda_kernel_dtype(x)) return cuda_reduce(at::Tensor(), x, at::Tensor());
#endif
  const auto dims = reduced_dims(x);
  const at::Tensor xd = x.to(at::kDouble);
  return at::stack({xd.sum(dims), (xd * xd).sum(dims)});
}

at::Tensor bn_grad_sums(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& mean) {
  if (input.is_cpu()) return cpu::channel_grad_sums(grad_output, input, mean);
  const at::Tensor x = kernel_layout(input);
  const at::Tensor dy = grad_output.contiguous(bn_channels_last(x) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
#ifdef SEGTOOL_WITH_CUDA
  if (x.is_cuda() && cuda_kernel_dtype(x)) return cuda_reduce(dy.to(x.scalar_type()), x, mean);
#endif
  const auto dims = reduced_dims(x);
  const at::Tensor centred = x.to(at::kDouble) - channel_view(mean.to(x.device(), at::kDouble), x);
  return at::stack({dy.sum(dims, false, at::kDouble), (dy.to(at::kDouble) * centred).sum(dims)});
}

at::Tensor bn_affine(const at::Tensor& input, const at::Tensor& scale, const at::Tensor& shift) {
  if (input.is_cpu()) return cpu::channel_affine(input, scale, shift);
  const at::Tensor x = kernel_layout(input);
#ifdef SEGTOOL_WITH_CUDA
  if (x.is_cuda() && cuda_kernel_dtype(x)) {
    const c10::cuda::CUDAGuard guard(x.device());
    const Shape s = shape_of(x);
    const at::Tensor a = floats_on(scale, x), b = floats_on(shift, x);
    at::Tensor y = at::empty_like(x);  // keeps x's memory format
    with_cuda_type(x, [&](auto* xp) {
      using T = std::remove_pointer_t<decltype(xp)>;
      check(cuda::bn_affine(xp, a.data_ptr<float>(), b.data_ptr<float>(), reinterpret_cast<T*>(y.data_ptr()), x.numel(),
                            s.channels, s.inner, c10::cuda::getCurrentCUDAStream()),
            "bn_affine");
    });
    return y;
  }
#endif
  const auto type = compute_type(x);
  const auto d = x.device();
  return (x.to(type) * channel_view(scale.to(d, type), x) + channel_view(shift.to(d, type), x)).to(x.scalar_type());
}

at::Tensor bn_input_grad(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& mean,
                         const at::Tensor& dy_scale, const at::Tensor& x_scale, const at::Tensor& offset) {
  if (input.is_cpu()) return cpu::batch_norm_input_grad(grad_output, input, mean, dy_scale, x_scale, offset);
  const at::Tensor x = kernel_layout(input);
  const at::Tensor dy = grad_output.contiguous(bn_channels_last(x) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
#ifdef SEGTOOL_WITH_CUDA
  if (x.is_cuda() && cuda_kernel_dtype(x)) {
    const c10::cuda::CUDAGuard guard(x.device());
    const Shape s = shape_of(x);
    const at::Tensor m = floats_on(mean, x), ks = floats_on(dy_scale, x), kx = floats_on(x_scale, x),
                     k0 = floats_on(offset, x);
    const at::Tensor g = dy.to(x.scalar_type());
    at::Tensor dx = at::empty_like(x);
    with_cuda_type(x, [&](auto* xp) {
      using T = std::remove_pointer_t<decltype(xp)>;
      check(cuda::bn_input_grad(reinterpret_cast<const T*>(g.data_ptr()), xp, m.data_ptr<float>(), ks.data_ptr<float>(),
                                kx.data_ptr<float>(), k0.data_ptr<float>(), reinterpret_cast<T*>(dx.data_ptr()),
                                x.numel(), s.channels, s.inner, c10::cuda::getCurrentCUDAStream()),
            "bn_input_grad");
    });
    return dx;
  }
#endif
  const auto type = compute_type(x);
  const auto d = x.device();
  at::Tensor out = dy.to(type) * channel_view(dy_scale.to(d, type), x) +
                   (x.to(type) - channel_view(mean.to(d, type), x)) * channel_view(x_scale.to(d, type), x) +
                   channel_view(offset.to(d, type), x);
  return out.to(x.scalar_type());
}

}  // namespace segtool::ops
