// Where and how a model computes: the device ("cpu", "cuda", "cuda:N"), the precision (float32,
// or bfloat16: autocast on CUDA, and on CPUs with AVX512-BF16 or AMX), the inputs' memory format
// (channels-last) and cuDNN's benchmark mode. The model applies them in every forward pass
// (SegmentationModel::run): inputs are copied to the model's device and memory format there, and
// autocast covers the forward (and the loss inputs, cast back to float32), never the backward or
// the SGD update, whose weights stay float32 - PyTorch's torch.autocast recipe. On the CPU the
// fused inference graph (fuse.h) also keeps its folded weights in bfloat16, cast once.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace segtool::nn {

enum class Precision { Fp32, Bf16 };

struct RuntimeOptions {
  Precision precision = Precision::Fp32;
  bool channels_last = false;    // inputs (hence convolutions) in channels-last memory format
  bool cudnn_benchmark = false;  // cuDNN autotuning; a process-wide LibTorch setting
  // Eval-mode inference through the fused graph (fuse.h: BatchNorm folded into the convs).
  // SEGTOOL_FUSE=0 in the environment turns it off for every model of the process.
  bool fuse = true;
};

// What this LibTorch offers for CUDA.
struct CudaInfo {
  bool available = false;     // LibTorch was built with CUDA and sees at least one device
  int64_t device_count = 0;
  bool kernels = false;       // segtool's CUDA kernels are compiled in (SEGTOOL_WITH_CUDA)
  std::string torch_version;  // TORCH_VERSION of the headers built against
};
CudaInfo cuda_info();

// What this CPU offers for bfloat16 (CPUID, and whether the OS saves the AVX-512 / AMX state).
struct CpuInfo {
  bool avx512 = false;       // AVX512F + BW + VL, enabled by the OS
  bool avx512_bf16 = false;  // AVX512_BF16 (vdpbf16ps): oneDNN's bf16 convolutions
  bool amx_bf16 = false;     // AMX-BF16 tiles, enabled by the OS
  bool bf16() const { return (avx512 && avx512_bf16) || amx_bf16; }
};
CpuInfo cpu_info();
// The reason bf16 cannot run on this CPU (empty when it can).
std::string cpu_bf16_unsupported_reason();

// glibc's malloc raises its mmap threshold to the size of each large block it frees (up to
// 32 MiB); tensors up to that size then come from the heap, where freed memory stays in the
// process and fragments: a 5-scale UPerNet pass peaked 300-550 MiB higher than with a fixed
// 1 MiB threshold, by an amount that depends on the order of earlier allocations. A fixed
// threshold maps (and zero-fills) every large tensor afresh, which made inference and training
// take 0.97-1.49x the time here (docs/performance.md section 9), so it is opt-in:
// SEGTOOL_MMAP_THRESHOLD=BYTES (1 to 32 MiB; 0 or unset leaves glibc's dynamic threshold),
// applied once per process when the addon loads, unless glibc's own MALLOC_MMAP_THRESHOLD_ is set.
struct MallocSetting {
  int64_t mmap_threshold = 0;  // bytes set with mallopt, 0 when left to glibc
  std::string source;          // for people: "N bytes (SEGTOOL_MMAP_THRESHOLD)", or why it was left
};
const MallocSetting& configure_malloc();

// A device that cannot be used here (CUDA asked of a CPU-only LibTorch, or device N of fewer).
class DeviceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "cpu", "cuda", "cuda:N" -> a device checked against this LibTorch. Throws
// std::invalid_argument for a malformed name and DeviceError for an unavailable device.
at::Device parse_device(const std::string& spec);
std::string device_name(const at::Device& device);

// Throws std::invalid_argument when the options cannot run on `device` (bf16 on a CPU without
// AVX512-BF16 or AMX).
void check_runtime(const RuntimeOptions& options, const at::Device& device);

// One forward pass's settings, restored on destruction (thread-local autocast state).
class ForwardScope {
 public:
  ForwardScope(const RuntimeOptions& options, const at::Device& device);
  ~ForwardScope();
  ForwardScope(const ForwardScope&) = delete;
  ForwardScope& operator=(const ForwardScope&) = delete;

  // x on the model's device, in channels-last memory format when asked for (4-D inputs) or when
  // `prefer_channels_last` (the fused CPU inference graph: oneDNN's convolutions take NHWC
  // activations as they are, where NCHW ones are reordered in and out of every call).
  at::Tensor input(const at::Tensor& x, bool prefer_channels_last = false) const;
  // Logits for the loss/softmax: float32 when autocast produced a lower precision.
  at::Tensor output(const at::Tensor& logits) const;
  bool autocast() const { return autocast_; }
  // The dtype the fused graph keeps its folded weights in: bfloat16 under autocast, else float32.
  at::ScalarType compute_dtype() const { return autocast_ ? at::kBFloat16 : at::kFloat; }

 private:
  const RuntimeOptions& options_;
  at::Device device_;
  bool autocast_ = false;
  bool previous_autocast_ = false;
  at::ScalarType previous_dtype_ = at::kHalf;
};

}  // namespace segtool::nn
