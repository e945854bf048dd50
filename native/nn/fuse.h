// The fused inference graph (issue 18 item 1): every BatchNorm that follows a convolution is
// folded into that convolution's weight and bias for eval-mode inference,
//   w' = w * gamma / sqrt(var + eps),   b' = beta - mean * gamma / sqrt(var + eps) (+ b * same),
// so an eval forward runs conv(x, w', b') and the ReLU in place on its output instead of conv,
// batch_norm and ReLU. The folded tensors are built lazily, once per model (per conv, on the
// first eval forward that reaches it): the per-channel factors in float64, the weight scaled in
// its own dtype, device and memory format (then cast to bfloat16 for the CPU/CUDA bf16 graph). They are one more copy of the conv weights (float32:
// 47 MiB for resnet18dilated-c1_deepsup, 197 MiB resnet50dilated-ppm_deepsup, 253 MiB
// hrnetv2-c1). The unfused path (training, fix_bn training steps, gradients, checking with fuse
// off) is untouched.
//
// Staleness: an entry is rebuilt when any of its six source tensors changed version (every
// in-place write - set_tensor, load_state_dict, the SGD update, a write through a state_dict
// alias - bumps it) or device; SegmentationModel also clears the whole cache where versions do
// not tell (a training-mode forward updates BN running statistics inside the kernel, to(),
// set_runtime, broadcast_state).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <array>
#include <cstdint>
#include <unordered_map>

namespace segtool::nn {

struct Conv2d;
struct BatchNorm2d;

class FuseCache {
 public:
  struct Folded {
    at::Tensor weight, bias;
    std::array<uint32_t, 6> versions{};  // conv weight, conv bias, gamma, beta, mean, var
    c10::Device device = c10::Device(c10::kCPU);
    at::ScalarType dtype = at::kFloat;
  };
  // conv's weight and bias with `bn` (eps) folded in, in `dtype` (float32, or bfloat16 for the
  // bf16 graph: folded in float32, then rounded once); built or rebuilt on demand.
  const Folded& get(const Conv2d& conv, const BatchNorm2d& bn, double eps, at::ScalarType dtype = at::kFloat);
  void clear() { entries_.clear(); }
  size_t size() const { return entries_.size(); }
  int64_t builds() const { return builds_; }  // folds computed since the model was made

 private:
  std::unordered_map<const c10::TensorImpl*, Folded> entries_;  // keyed by the conv weight
  int64_t builds_ = 0;
};

// Whether new models fuse by default: true unless the environment variable SEGTOOL_FUSE is "0"
// (read once per process). RuntimeOptions::fuse overrides it per model.
bool fuse_default();

}  // namespace segtool::nn
