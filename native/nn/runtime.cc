#include "nn/runtime.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/csrc/api/include/torch/version.h>

#include <cctype>

#include "ops/batch_norm_ops.h"

// at::autocast's per-device API arrived in PyTorch 2.4 (the CUDA-only calls are deprecated there).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define SEGTOOL_AUTOCAST_DEVICE_API 1
#endif

namespace segtool::nn {
namespace {

bool cuda_enabled(bool enabled) {
#ifdef SEGTOOL_AUTOCAST_DEVICE_API
  const bool previous = at::autocast::is_autocast_enabled(at::kCUDA);
  at::autocast::set_autocast_enabled(at::kCUDA, enabled);
#else
  const bool previous = at::autocast::is_enabled();
  at::autocast::set_enabled(enabled);
#endif
  return previous;
}

at::ScalarType cuda_dtype(at::ScalarType dtype) {
#ifdef SEGTOOL_AUTOCAST_DEVICE_API
  const at::ScalarType previous = at::autocast::get_autocast_dtype(at::kCUDA);
  at::autocast::set_autocast_dtype(at::kCUDA, dtype);
#else
  const at::ScalarType previous = at::autocast::get_autocast_gpu_dtype();
  at::autocast::set_autocast_gpu_dtype(dtype);
#endif
  return previous;
}

const char* kBuildHint =
    "segtool's addon was built against a LibTorch without CUDA (or no GPU is visible). Build against a CUDA "
    "LibTorch (docs/gpu.md: a pip-installed PyTorch 2.x, Torch_DIR=$(python3 -c 'import torch; "
    "print(torch.utils.cmake_prefix_path)')/Torch) on a machine with an NVIDIA GPU, or use device 'cpu'";

}  // namespace

CudaInfo cuda_info() {
  CudaInfo info;
  info.kernels = ops::built_with_cuda_kernels();
  info.torch_version = TORCH_VERSION;
  if (at::hasCUDA()) {
    info.device_count = at::detail::getCUDAHooks().getNumGPUs();
    info.available = info.device_count > 0;
  }
  return info;
}

at::Device parse_device(const std::string& spec) {
  if (spec == "cpu") return at::Device(at::kCPU);
  int64_t index = 0;
  if (spec == "cuda") {
    index = 0;
  } else if (spec.rfind("cuda:", 0) == 0 && spec.size() > 5 && spec.size() <= 8) {
    for (size_t i = 5; i < spec.size(); ++i)
      if (!std::isdigit(static_cast<unsigned char>(spec[i])))
        throw std::invalid_argument("device must be 'cpu', 'cuda' or 'cuda:N', got '" + spec + "'");
    index = std::stoll(spec.substr(5));
  } else {
    throw std::invalid_argument("device must be 'cpu', 'cuda' or 'cuda:N', got '" + spec + "'");
  }
  const CudaInfo info = cuda_info();
  if (!info.available) throw DeviceError("device '" + spec + "' is not available: " + kBuildHint);
  if (index >= info.device_count)
    throw DeviceError("device '" + spec + "' is not available: this machine has " + std::to_string(info.device_count) +
                      " CUDA device(s) (cuda:0 to cuda:" + std::to_string(info.device_count - 1) + ")");
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

std::string device_name(const at::Device& device) {
  if (device.is_cpu()) return "cpu";
  return device.str();
}

void check_runtime(const RuntimeOptions& options, const at::Device& device) {
  if (options.precision == Precision::Bf16 && !device.is_cuda())
    throw std::invalid_argument("precision 'bf16' (autocast) runs on CUDA devices only; the model is on '" +
                                device_name(device) + "': use precision 'fp32' there");
}

ForwardScope::ForwardScope(const RuntimeOptions& options, const at::Device& device)
    : options_(options), device_(device) {
  if (device_.is_cuda()) {
    at::globalContext().setBenchmarkCuDNN(options_.cudnn_benchmark);
    if (options_.precision == Precision::Bf16) {
      autocast_ = true;
      previous_autocast_ = cuda_enabled(true);
      previous_dtype_ = cuda_dtype(at::kBFloat16);
      at::autocast::increment_nesting();
    }
  }
}

ForwardScope::~ForwardScope() {
  if (!autocast_) return;
  // Leaving the outermost autocast region frees its cache of casted weights.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  cuda_enabled(previous_autocast_);
  cuda_dtype(previous_dtype_);
}

at::Tensor ForwardScope::input(const at::Tensor& x) const {
  at::Tensor out = x.device() == device_ ? x : x.to(device_, /*non_blocking=*/false);
  if (options_.channels_last && out.dim() == 4) out = out.contiguous(at::MemoryFormat::ChannelsLast);
  return out;
}

at::Tensor ForwardScope::output(const at::Tensor& logits) const {
  if (!logits.defined() || !autocast_ || logits.scalar_type() == at::kFloat) return logits;
  return logits.to(at::kFloat);
}

}  // namespace segtool::nn
