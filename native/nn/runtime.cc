#include "nn/runtime.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/csrc/api/include/torch/version.h>

#include <cctype>
#include <cstdlib>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define SEGTOOL_X86 1
#endif

#include "ops/batch_norm_ops.h"

// at::autocast's per-device API arrived in PyTorch 2.4 (the CUDA-only calls are deprecated there).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define SEGTOOL_AUTOCAST_DEVICE_API 1
#endif

namespace segtool::nn {
namespace {

// Autocast on or off for one device type (CPU or CUDA); returns the previous setting.
bool set_autocast_enabled(at::DeviceType type, bool enabled) {
#ifdef SEGTOOL_AUTOCAST_DEVICE_API
  const bool previous = at::autocast::is_autocast_enabled(type);
  at::autocast::set_autocast_enabled(type, enabled);
#else
  const bool cuda = type == at::kCUDA;
  const bool previous = cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
  cuda ? at::autocast::set_enabled(enabled) : at::autocast::set_cpu_enabled(enabled);
#endif
  return previous;
}

// Autocast's lower-precision dtype for one device type; returns the previous one.
at::ScalarType set_autocast_dtype(at::DeviceType type, at::ScalarType dtype) {
#ifdef SEGTOOL_AUTOCAST_DEVICE_API
  const at::ScalarType previous = at::autocast::get_autocast_dtype(type);
  at::autocast::set_autocast_dtype(type, dtype);
#else
  const bool cuda = type == at::kCUDA;
  const at::ScalarType previous = cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
  cuda ? at::autocast::set_autocast_gpu_dtype(dtype) : at::autocast::set_autocast_cpu_dtype(dtype);
#endif
  return previous;
}

const char* kBuildHint =
    "segtool's addon was built against a LibTorch without CUDA (or no GPU is visible). Build against a CUDA "
    "LibTorch (docs/gpu.md: a pip-installed PyTorch 2.x, Torch_DIR=$(python3 -c 'import torch; "
    "print(torch.utils.cmake_prefix_path)')/Torch) on a machine with an NVIDIA GPU, or use device 'cpu'";

CpuInfo detect_cpu() {
  CpuInfo info;
#ifdef SEGTOOL_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return info;
  const bool osxsave = c & (1u << 27);
  if (!osxsave || __get_cpuid_max(0, nullptr) < 7) return info;
  // XCR0: which register states the OS saves (bits 5-7 opmask/ZMM, 17-18 AMX tile config/data).
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const bool os_avx512 = (xcr0_lo & 0xe6u) == 0xe6u;
  const bool os_amx = (xcr0_lo & (3u << 17)) == (3u << 17);
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx512f = b & (1u << 16), avx512bw = b & (1u << 30), avx512vl = b & (1u << 31);
  const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24);
  info.avx512 = os_avx512 && avx512f && avx512bw && avx512vl;
  info.amx_bf16 = os_amx && amx_bf16 && amx_tile;
  __cpuid_count(7, 1, a, b, c, d);
  info.avx512_bf16 = info.avx512 && (a & (1u << 5));
#endif
  return info;
}

}  // namespace

CpuInfo cpu_info() {
  static const CpuInfo info = detect_cpu();
  return info;
}

std::string cpu_bf16_unsupported_reason() {
  // SEGTOOL_CPU_BF16=0 hides the instructions (to test the error path on any CPU).
  const char* off = std::getenv("SEGTOOL_CPU_BF16");
  if (off && std::string(off) == "0") return "SEGTOOL_CPU_BF16=0 is set in the environment";
  const CpuInfo info = cpu_info();
  if (info.bf16()) return "";
#ifdef SEGTOOL_X86
  return std::string("this CPU has neither AVX512-BF16 nor AMX-BF16 (") +
         (info.avx512 ? "it has AVX-512 without the BF16 extension" : "no usable AVX-512") +
         "); bfloat16 would run emulated, slower than float32";
#else
  return "bfloat16 on the CPU is supported on x86-64 with AVX512-BF16 or AMX only";
#endif
}

namespace {

MallocSetting apply_malloc_setting() {
  MallocSetting setting;
  const char* value = std::getenv("SEGTOOL_MMAP_THRESHOLD");
  if (!value || std::string(value).empty() || std::string(value) == "0") {
    setting.source = "glibc's dynamic threshold (SEGTOOL_MMAP_THRESHOLD unset or 0)";
    return setting;
  }
#ifdef __GLIBC__
  if (std::getenv("MALLOC_MMAP_THRESHOLD_")) {
    setting.source = "left to glibc: MALLOC_MMAP_THRESHOLD_ is set in the environment";
    return setting;
  }
  char* end = nullptr;
  const long long threshold = std::strtoll(value, &end, 10);
  // glibc accepts at most 32 MiB (HEAP_MAX_SIZE / 2 on 64-bit). lib/native.ts refuses a bad value
  // before loading the addon; a direct user of the addon gets it ignored, said here.
  if (end == value || *end != '\0' || threshold < 0 || threshold > (int64_t{32} << 20)) {
    setting.source = std::string("left to glibc: SEGTOOL_MMAP_THRESHOLD=") + value +
                     " ignored (expected bytes from 0 to 33554432)";
  } else if (mallopt(M_MMAP_THRESHOLD, static_cast<int>(threshold)) == 1) {
    setting.mmap_threshold = threshold;
    setting.source = std::to_string(threshold) + " bytes (SEGTOOL_MMAP_THRESHOLD)";
  } else {
    setting.source = "left to glibc: mallopt(M_MMAP_THRESHOLD) refused SEGTOOL_MMAP_THRESHOLD";
  }
#else
  setting.source = "left to the C library: not glibc";
#endif
  return setting;
}

}  // namespace

const MallocSetting& configure_malloc() {
  // A function-local static: applied once per process however many Node environments (worker
  // threads) load the addon.
  static const MallocSetting setting = apply_malloc_setting();
  return setting;
}

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
  if (options.precision != Precision::Bf16 || device.is_cuda()) return;
  const std::string why = cpu_bf16_unsupported_reason();
  if (!why.empty())
    throw std::invalid_argument("precision 'bf16' on device '" + device_name(device) + "' needs a CPU with AVX512-BF16 or AMX: " +
                                why + ". Use precision 'fp32' there, or a CUDA device");
}

ForwardScope::ForwardScope(const RuntimeOptions& options, const at::Device& device)
    : options_(options), device_(device) {
  if (device_.is_cuda()) at::globalContext().setBenchmarkCuDNN(options_.cudnn_benchmark);
  if (options_.precision != Precision::Bf16) return;
  autocast_ = true;
  previous_autocast_ = set_autocast_enabled(device_.type(), true);
  previous_dtype_ = set_autocast_dtype(device_.type(), at::kBFloat16);
  at::autocast::increment_nesting();
}

ForwardScope::~ForwardScope() {
  if (!autocast_) return;
  // Leaving the outermost autocast region frees its cache of casted weights.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(device_.type(), previous_autocast_);
  set_autocast_dtype(device_.type(), previous_dtype_);
}

at::Tensor ForwardScope::input(const at::Tensor& x, bool prefer_channels_last) const {
  at::Tensor out = x.device() == device_ ? x : x.to(device_, /*non_blocking=*/false);
  if ((options_.channels_last || prefer_channels_last) && out.dim() == 4) out = out.contiguous(at::MemoryFormat::ChannelsLast);
  return out;
}

at::Tensor ForwardScope::output(const at::Tensor& logits) const {
  if (!logits.defined() || !autocast_ || logits.scalar_type() == at::kFloat) return logits;
  return logits.to(at::kFloat);
}

}  // namespace segtool::nn
