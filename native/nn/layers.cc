#include "nn/layers.h"

#include <ATen/ops/batch_norm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/feature_dropout.h>
#include <ATen/ops/upsample_bilinear2d.h>

#include "nn/fuse.h"

namespace segtool::nn {

at::Tensor Registry::add(const std::string& name, std::vector<int64_t> shape, TensorRole role,
                         int64_t fan_in) {
  const bool int_buffer = role == TensorRole::NumBatchesTracked;
  at::Tensor t = at::empty(shape, int_buffer ? at::kLong : at::kFloat);
  if (is_parameter(role)) t.set_requires_grad(true);
  entries_.push_back({name, t, role, fan_in});
  return t;
}

Conv2d::Conv2d(const Scope& scope, int64_t in, int64_t out, int64_t kernel_, int64_t stride_,
               int64_t padding_, bool with_bias, int64_t groups_)
    : kernel(kernel_), stride(stride_), padding(padding_), groups(groups_) {
  const int64_t fan_in = in / groups * kernel * kernel;
  weight = scope.registry().add(scope.prefix() + "weight", {out, in / groups, kernel, kernel},
                                TensorRole::ConvWeight, fan_in);
  if (with_bias) bias = scope.registry().add(scope.prefix() + "bias", {out}, TensorRole::ConvBias, fan_in);
}

at::Tensor Conv2d::operator()(const at::Tensor& x) const {
  return at::conv2d(x, weight, bias, {stride, stride}, {padding, padding}, {dilation, dilation}, groups);
}

void Conv2d::nostride_dilate(int64_t dilate) {
  if (stride == 2) {
    stride = 1;
    if (kernel == 3) {
      dilation = dilate / 2;
      padding = dilate / 2;
    }
  } else if (kernel == 3) {
    dilation = dilate;
    padding = dilate;
  }
}

BatchNorm2d::BatchNorm2d(const Scope& scope, int64_t channels) {
  Registry& r = scope.registry();
  const std::string& p = scope.prefix();
  weight = r.add(p + "weight", {channels}, TensorRole::BnWeight);
  bias = r.add(p + "bias", {channels}, TensorRole::BnBias);
  running_mean = r.add(p + "running_mean", {channels}, TensorRole::RunningMean);
  running_var = r.add(p + "running_var", {channels}, TensorRole::RunningVar);
  r.add(p + "num_batches_tracked", {}, TensorRole::NumBatchesTracked);
  reference.tmp_running_mean = r.add(p + "_tmp_running_mean", {channels}, TensorRole::TmpRunningMean);
  reference.tmp_running_var = r.add(p + "_tmp_running_var", {channels}, TensorRole::TmpRunningVar);
  reference.running_iter = r.add(p + "_running_iter", {1}, TensorRole::RunningIter);
}

at::Tensor BatchNorm2d::operator()(const at::Tensor& x, const ForwardContext& ctx) const {
  if (ctx.training && ctx.sync_bn) {
    const bool ref = ctx.sync_mode == ops::SyncBatchNormMode::Reference;
    return ops::sync_batch_norm(x, weight, bias, running_mean, running_var, ctx.bn_momentum, ctx.bn_eps,
                                ctx.communicator, ctx.sync_mode, ref ? &reference : nullptr);
  }
  // cudnn_enabled=true as F.batch_norm passes torch.backends.cudnn.enabled.
  return at::batch_norm(x, weight, bias, running_mean, running_var, ctx.training, ctx.bn_momentum,
                        ctx.bn_eps, /*cudnn_enabled=*/true);
}

at::Tensor conv_bn(const Conv2d& conv, const BatchNorm2d& bn, const at::Tensor& x, const ForwardContext& ctx) {
  if (!ctx.fuse) return bn(conv(x), ctx);
  const FuseCache::Folded& f = ctx.fuse->get(conv, bn, ctx.bn_eps, ctx.fuse_dtype);
  return at::conv2d(x, f.weight, f.bias, {conv.stride, conv.stride}, {conv.padding, conv.padding},
                    {conv.dilation, conv.dilation}, conv.groups);
}

at::Tensor conv_bn_of_concat(const Conv2d& conv, const BatchNorm2d& bn, int parts,
                             const std::function<at::Tensor(int)>& part, const ForwardContext& ctx) {
  if (!ctx.fuse) {
    std::vector<at::Tensor> blocks;
    for (int i = 0; i < parts; ++i) blocks.push_back(part(i));
    at::Tensor x = at::cat(blocks, 1);
    blocks.clear();
    return conv_bn(conv, bn, x, ctx);
  }
  const FuseCache::Folded& f = ctx.fuse->get(conv, bn, ctx.bn_eps, ctx.fuse_dtype);
  at::Tensor sum;
  int64_t first_channel = 0;
  for (int i = 0; i < parts; ++i) {
    at::Tensor block = part(i);
    const int64_t channels = block.size(1);
    at::Tensor weight = f.weight.narrow(1, first_channel, channels).contiguous(f.weight.suggest_memory_format());
    first_channel += channels;
    at::Tensor y = at::conv2d(block, weight, i == 0 ? f.bias : at::Tensor(), {conv.stride, conv.stride},
                              {conv.padding, conv.padding}, {conv.dilation, conv.dilation}, conv.groups);
    block.reset();
    sum = i == 0 ? y : sum.add_(y);
  }
  TORCH_CHECK(first_channel == f.weight.size(1), "conv_bn_of_concat: the blocks have ", first_channel,
              " channels, the convolution takes ", f.weight.size(1));
  return sum;
}

ConvBnRelu::ConvBnRelu(const Scope& scope, int64_t in, int64_t out, int64_t kernel, int64_t stride)
    : conv(scope / 0, in, out, kernel, stride, kernel / 2), bn(scope / 1, out) {}

at::Tensor ConvBnRelu::operator()(const at::Tensor& x, const ForwardContext& ctx) const {
  return conv_bn(conv, bn, x, ctx).relu_();
}

ResidualBlock::ResidualBlock(const Scope& scope, int64_t inplanes, int64_t planes,
                             int64_t expansion, int64_t stride, int64_t groups, bool downsample)
    : bottleneck(expansion > 1), has_downsample(downsample) {
  if (bottleneck) {
    conv1 = Conv2d(scope / "conv1", inplanes, planes, 1);
    bn1 = BatchNorm2d(scope / "bn1", planes);
    conv2 = Conv2d(scope / "conv2", planes, planes, 3, stride, 1, false, groups);
    bn2 = BatchNorm2d(scope / "bn2", planes);
    conv3 = Conv2d(scope / "conv3", planes, planes * expansion, 1);
    bn3 = BatchNorm2d(scope / "bn3", planes * expansion);
  } else {
    conv1 = Conv2d(scope / "conv1", inplanes, planes, 3, stride, 1);
    bn1 = BatchNorm2d(scope / "bn1", planes);
    conv2 = Conv2d(scope / "conv2", planes, planes, 3, 1, 1);
    bn2 = BatchNorm2d(scope / "bn2", planes);
  }
  if (downsample) {
    downsample_conv = Conv2d(scope / "downsample" / 0, inplanes, planes * expansion, 1, stride);
    downsample_bn = BatchNorm2d(scope / "downsample" / 1, planes * expansion);
  }
}

at::Tensor ResidualBlock::operator()(const at::Tensor& x, const ForwardContext& ctx) const {
  at::Tensor out = conv_bn(conv1, bn1, x, ctx).relu_();
  if (bottleneck) {
    out = conv_bn(conv2, bn2, out, ctx).relu_();
    out = conv_bn(conv3, bn3, out, ctx);
  } else {
    out = conv_bn(conv2, bn2, out, ctx);
  }
  if (has_downsample) {
    out += conv_bn(downsample_conv, downsample_bn, x, ctx);
  } else {
    out += x;
  }
  return out.relu_();
}

std::vector<Conv2d*> ResidualBlock::convs() {
  std::vector<Conv2d*> v{&conv1, &conv2};
  if (bottleneck) v.push_back(&conv3);
  if (has_downsample) v.push_back(&downsample_conv);
  return v;
}

at::Tensor upsample_bilinear(const at::Tensor& x, int64_t h, int64_t w) {
  if (x.size(2) == h && x.size(3) == w) return x;  // identity: upsample would copy the same values
  return at::upsample_bilinear2d(x, {h, w}, /*align_corners=*/false);
}

at::Tensor dropout2d(const at::Tensor& x, const ForwardContext& ctx) {
  // p = 0 multiplies by an all-ones mask: skipping it gives the same numbers.
  if (!ctx.training || ctx.dropout <= 0) return x;
  return at::feature_dropout(x, ctx.dropout, /*train=*/true);
}

}  // namespace segtool::nn
