// Building blocks shared by the encoders and decoders: an ordered parameter/buffer registry
// whose names are the reference's state-dict keys, and functional Conv2d / BatchNorm2d.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ops/sync_batch_norm.h"

namespace segtool::nn {

class FuseCache;  // fuse.h

// How one forward pass runs. The model passes the encoder and the decoder their own context
// (hrnetv2's encoder BNs use momentum 0.1 as the reference's hrnet.py; all others 0.001).
struct ForwardContext {
  bool training = false;
  double bn_momentum = 0.001;
  double bn_eps = 1e-5;
  double dropout = 0.1;  // Dropout2d probability of the PPM heads
  // Synchronized BatchNorm: when set (and training), every BN layer normalises with the
  // statistics of all ranks' batches through ops::sync_batch_norm over `communicator` (nullptr
  // = this process alone, used for the reference's formula without other ranks). Each BN call
  // is then a collective: every rank runs the same layers in the same order.
  bool sync_bn = false;
  dist::Communicator* communicator = nullptr;
  ops::SyncBatchNormMode sync_mode = ops::SyncBatchNormMode::Exact;
  // The fused inference graph (fuse.h): set only for eval-mode inference (never training, never
  // with gradients); conv_bn then runs the folded convolution instead of conv + BatchNorm.
  FuseCache* fuse = nullptr;
  at::ScalarType fuse_dtype = at::kFloat;  // of the folded weights: bfloat16 in the bf16 graph
};

enum class TensorRole {
  ConvWeight,       // parameter, ndim >= 2: weight decay applies
  ConvBias,         // parameter
  BnWeight,         // parameter
  BnBias,           // parameter
  RunningMean,      // buffer
  RunningVar,       // buffer
  NumBatchesTracked,  // buffer, int64 scalar
  TmpRunningMean,   // buffer of the reference's SyncBN (updated only by Reference-mode SyncBN)
  TmpRunningVar,    // buffer of the reference's SyncBN (updated only by Reference-mode SyncBN)
  RunningIter,      // buffer of the reference's SyncBN (updated only by Reference-mode SyncBN)
};

inline bool is_parameter(TensorRole r) {
  return r == TensorRole::ConvWeight || r == TensorRole::ConvBias || r == TensorRole::BnWeight ||
         r == TensorRole::BnBias;
}

struct RegistryEntry {
  std::string name;  // full state-dict key, e.g. "encoder.layer1.0.conv1.weight"
  at::Tensor tensor;
  TensorRole role;
  int64_t fan_in = 0;  // conv weights and biases: in_channels/groups * kh * kw
};

// Owns every tensor of a model in state-dict order. Tensors are allocated uninitialised;
// the model's reference initialisation (model.cc) or procedural.cc fill them.
class Registry {
 public:
  at::Tensor add(const std::string& name, std::vector<int64_t> shape, TensorRole role,
                 int64_t fan_in = 0);
  const std::vector<RegistryEntry>& entries() const { return entries_; }
  std::vector<RegistryEntry>& entries() { return entries_; }

 private:
  std::vector<RegistryEntry> entries_;
};

// A name prefix into a registry ("encoder.layer1.0."), like a module path.
class Scope {
 public:
  Scope(Registry* registry, std::string prefix) : registry_(registry), prefix_(std::move(prefix)) {}
  Scope operator/(const std::string& child) const { return Scope(registry_, prefix_ + child + "."); }
  Scope operator/(int64_t index) const { return *this / std::to_string(index); }
  Registry& registry() const { return *registry_; }
  const std::string& prefix() const { return prefix_; }

 private:
  Registry* registry_;
  std::string prefix_;
};

struct Conv2d {
  at::Tensor weight, bias;  // bias undefined when the reference has bias=False
  int64_t kernel = 1, stride = 1, padding = 0, dilation = 1, groups = 1;

  Conv2d() = default;
  // Registers `<scope>weight` (and `<scope>bias`).
  Conv2d(const Scope& scope, int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
         int64_t padding = 0, bool bias = false, int64_t groups = 1);
  at::Tensor operator()(const at::Tensor& x) const;

  // The reference's ResnetDilated/_nostride_dilate: a stride-2 conv becomes stride 1 (a 3x3 one
  // gets dilation dilate/2); other 3x3 convs get dilation `dilate`. Padding follows dilation.
  void nostride_dilate(int64_t dilate);
};

// The reference's SynchronizedBatchNorm2d on one device = F.batch_norm. Registers weight, bias,
// running_mean, running_var, num_batches_tracked, _tmp_running_mean, _tmp_running_var,
// _running_iter in the reference's order. num_batches_tracked is never incremented (the
// reference's forward calls F.batch_norm directly, which does not touch it). With
// ctx.sync_bn in training mode: ops::sync_batch_norm (the reference buffers are kept up to
// date in Reference mode).
struct BatchNorm2d {
  at::Tensor weight, bias, running_mean, running_var;
  ops::ReferenceBuffers reference;  // _tmp_running_mean, _tmp_running_var, _running_iter

  BatchNorm2d() = default;
  BatchNorm2d(const Scope& scope, int64_t channels);
  at::Tensor operator()(const at::Tensor& x, const ForwardContext& ctx) const;
};

// bn(conv(x)), or with ctx.fuse the convolution with bn folded into it (same result within
// float32 rounding). Every conv followed by a BN goes through here.
at::Tensor conv_bn(const Conv2d& conv, const BatchNorm2d& bn, const at::Tensor& x, const ForwardContext& ctx);

// conv_bn over the channel concatenation of `parts` blocks, cat(part(0), ..., part(parts-1)),
// where part(i) makes block i on demand. Unfused: the concatenation, then conv_bn. In the fused
// graph the concatenation is never made: a convolution over concatenated channels is the sum of
// each block's convolution with its own slice of the weight's input channels, so each block is
// made, convolved and dropped in turn (the same FLOPs; at UPerNet's fusion at 800 x 600 the live
// memory falls from the four upsampled levels plus their concatenation, 490 MiB, to ~180).
at::Tensor conv_bn_of_concat(const Conv2d& conv, const BatchNorm2d& bn, int parts,
                             const std::function<at::Tensor(int)>& part, const ForwardContext& ctx);

// conv (no bias) + BN + ReLU, the reference's conv3x3_bn_relu and the 1x1 variants:
// registers `<scope>0.*` and `<scope>1.*`.
struct ConvBnRelu {
  Conv2d conv;
  BatchNorm2d bn;
  ConvBnRelu() = default;
  ConvBnRelu(const Scope& scope, int64_t in, int64_t out, int64_t kernel, int64_t stride = 1);
  at::Tensor operator()(const at::Tensor& x, const ForwardContext& ctx) const;
};

// BasicBlock (two 3x3), Bottleneck (1x1, 3x3, 1x1, expansion 4) and the ResNeXt
// GroupBottleneck (grouped 3x3, expansion 2) of the reference, with optional downsample.
struct ResidualBlock {
  bool bottleneck = false;
  Conv2d conv1, conv2, conv3;
  BatchNorm2d bn1, bn2, bn3;
  bool has_downsample = false;
  Conv2d downsample_conv;
  BatchNorm2d downsample_bn;

  ResidualBlock() = default;
  // `expansion` 1 = BasicBlock; 2 or 4 = bottleneck. Registers in the reference's order:
  // conv1, bn1, conv2, bn2, [conv3, bn3], [downsample.0, downsample.1].
  ResidualBlock(const Scope& scope, int64_t inplanes, int64_t planes, int64_t expansion,
                int64_t stride, int64_t groups, bool downsample);
  at::Tensor operator()(const at::Tensor& x, const ForwardContext& ctx) const;
  std::vector<Conv2d*> convs();
};

at::Tensor upsample_bilinear(const at::Tensor& x, int64_t h, int64_t w);  // align_corners=false
at::Tensor dropout2d(const at::Tensor& x, const ForwardContext& ctx);

}  // namespace segtool::nn
