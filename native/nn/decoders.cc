#include "nn/decoders.h"

#include <ATen/ops/cat.h>

#include <stdexcept>

#include "ops/ppm_pool.h"

namespace segtool::nn {
namespace {

const int64_t kPoolScales[4] = {1, 2, 3, 6};

// adaptive_avg_pool2d for all four bin sizes in one pass (ops/ppm_pool.h: CPU or CUDA kernel).
std::vector<at::Tensor> pool_pyramid(const at::Tensor& conv5) { return ops::pyramid_pool(conv5, kPoolScales); }

// C1 / C1DeepSup: cbr (3x3 conv-BN-ReLU to fc_dim/4) + 1x1 conv_last; the deep-supervision
// head does the same on conv_out[-2] (fc_dim/2 channels).
class C1 : public Decoder {
 public:
  C1(const Scope& scope, int64_t fc_dim, int64_t num_class, bool deepsup) : deepsup_(deepsup) {
    cbr_ = ConvBnRelu(scope / "cbr", fc_dim, fc_dim / 4, 3);
    if (deepsup_) cbr_deepsup_ = ConvBnRelu(scope / "cbr_deepsup", fc_dim / 2, fc_dim / 4, 3);
    conv_last_ = Conv2d(scope / "conv_last", fc_dim / 4, num_class, 1, 1, 0, true);
    if (deepsup_) conv_last_deepsup_ = Conv2d(scope / "conv_last_deepsup", fc_dim / 4, num_class, 1, 1, 0, true);
  }

  DecoderOutput forward(const std::vector<at::Tensor>& conv_out, const ForwardContext& ctx,
                        bool with_deepsup) const override {
    DecoderOutput out;
    out.logits = conv_last_(cbr_(conv_out.back(), ctx));
    if (deepsup_ && with_deepsup)
      out.deepsup_logits = conv_last_deepsup_(cbr_deepsup_(conv_out[conv_out.size() - 2], ctx));
    return out;
  }
  bool has_deepsup() const override { return deepsup_; }

 private:
  bool deepsup_;
  ConvBnRelu cbr_, cbr_deepsup_;
  Conv2d conv_last_, conv_last_deepsup_;
};

// PPM / PPMDeepsup: pyramid pooling (pool -> 1x1 conv-BN-ReLU -> upsample) concatenated with
// conv5, then conv_last = [3x3 conv, BN, ReLU, Dropout2d, 1x1 conv].
class PPM : public Decoder {
 public:
  PPM(const Scope& scope, int64_t fc_dim, int64_t num_class, bool deepsup) : deepsup_(deepsup) {
    for (int i = 0; i < 4; ++i) {
      // ppm.i = Sequential(AdaptiveAvgPool2d, Conv2d, BN, ReLU): conv at slot 1, BN at slot 2.
      ppm_conv_[i] = Conv2d(scope / "ppm" / i / 1, fc_dim, 512, 1);
      ppm_bn_[i] = BatchNorm2d(scope / "ppm" / i / 2, 512);
    }
    if (deepsup_) cbr_deepsup_ = ConvBnRelu(scope / "cbr_deepsup", fc_dim / 2, fc_dim / 4, 3);
    last_conv_ = Conv2d(scope / "conv_last" / 0, fc_dim + 4 * 512, 512, 3, 1, 1);
    last_bn_ = BatchNorm2d(scope / "conv_last" / 1, 512);
    classifier_ = Conv2d(scope / "conv_last" / 4, 512, num_class, 1, 1, 0, true);
    if (deepsup_) conv_last_deepsup_ = Conv2d(scope / "conv_last_deepsup", fc_dim / 4, num_class, 1, 1, 0, true);
  }

  DecoderOutput forward(const std::vector<at::Tensor>& conv_out, const ForwardContext& ctx,
                        bool with_deepsup) const override {
    const at::Tensor& conv5 = conv_out.back();
    const int64_t h = conv5.size(2), w = conv5.size(3);
    std::vector<at::Tensor> pooled = pool_pyramid(conv5);
    // conv_last over cat(conv5, the four upsampled branches); in the fused graph one block at a
    // time (conv_bn_of_concat).
    at::Tensor x = conv_bn_of_concat(last_conv_, last_bn_, 5, [&](int i) {
      if (i == 0) return conv5;
      at::Tensor p = conv_bn(ppm_conv_[i - 1], ppm_bn_[i - 1], pooled[i - 1], ctx).relu_();
      pooled[i - 1].reset();
      return upsample_bilinear(p, h, w);
    }, ctx).relu_();
    DecoderOutput out;
    out.logits = classifier_(dropout2d(x, ctx));
    if (deepsup_ && with_deepsup) {
      at::Tensor d = cbr_deepsup_(conv_out[conv_out.size() - 2], ctx);
      out.deepsup_logits = conv_last_deepsup_(dropout2d(d, ctx));
    }
    return out;
  }
  bool has_deepsup() const override { return deepsup_; }

 private:
  bool deepsup_;
  Conv2d ppm_conv_[4];
  BatchNorm2d ppm_bn_[4];
  ConvBnRelu cbr_deepsup_;
  Conv2d last_conv_;
  BatchNorm2d last_bn_;
  Conv2d classifier_;
  Conv2d conv_last_deepsup_;
};

// UPerNet: PPM on conv5 (pool -> upsample -> 1x1 conv-BN-ReLU, as the reference orders it),
// FPN top-down over conv_out[0..2], fusion of the four levels at conv_out[0]'s resolution.
class UPerNet : public Decoder {
 public:
  UPerNet(const Scope& scope, int64_t fc_dim, int64_t num_class, int64_t fpn_dim) {
    for (int i = 0; i < 4; ++i) ppm_conv_[i] = ConvBnRelu(scope / "ppm_conv" / i, fc_dim, 512, 1);
    ppm_last_conv_ = ConvBnRelu(scope / "ppm_last_conv", fc_dim + 4 * 512, fpn_dim, 3);
    const int64_t fpn_inplanes[3] = {256, 512, 1024};
    for (int i = 0; i < 3; ++i) fpn_in_[i] = ConvBnRelu(scope / "fpn_in" / i, fpn_inplanes[i], fpn_dim, 1);
    // fpn_out.i = Sequential(conv3x3_bn_relu) -> keys fpn_out.i.0.{0,1}.
    for (int i = 0; i < 3; ++i) fpn_out_[i] = ConvBnRelu(scope / "fpn_out" / i / 0, fpn_dim, fpn_dim, 3);
    fusion_ = ConvBnRelu(scope / "conv_last" / 0, 4 * fpn_dim, fpn_dim, 3);
    classifier_ = Conv2d(scope / "conv_last" / 1, fpn_dim, num_class, 1, 1, 0, true);
  }

  DecoderOutput forward(const std::vector<at::Tensor>& conv_out, const ForwardContext& ctx,
                        bool /*with_deepsup*/) const override {
    const at::Tensor& conv5 = conv_out.back();
    const int64_t h = conv5.size(2), w = conv5.size(3);
    std::vector<at::Tensor> pyramid = {conv5};
    std::vector<at::Tensor> pooled = pool_pyramid(conv5);
    for (int i = 0; i < 4; ++i) {
      pyramid.push_back(ppm_conv_[i](upsample_bilinear(pooled[i], h, w), ctx));
    }
    at::Tensor f = ppm_last_conv_(at::cat(pyramid, 1), ctx);
    pyramid.clear();

    std::vector<at::Tensor> fpn(4);  // P2..P5
    fpn[3] = f;
    for (int i = 2; i >= 0; --i) {
      at::Tensor lateral = fpn_in_[i](conv_out[i], ctx);
      f = lateral.add(upsample_bilinear(f, lateral.size(2), lateral.size(3)));
      fpn[i] = fpn_out_[i](f, ctx);
    }
    // The fusion conv over cat(P2, up(P3), up(P4), up(P5)), one level upsampled at a time in
    // the fused graph (conv_bn_of_concat).
    const int64_t oh = fpn[0].size(2), ow = fpn[0].size(3);
    at::Tensor x = conv_bn_of_concat(fusion_.conv, fusion_.bn, 4, [&](int i) {
      at::Tensor level = upsample_bilinear(fpn[i], oh, ow);
      fpn[i].reset();
      return level;
    }, ctx).relu_();
    return {classifier_(x), at::Tensor()};
  }

 private:
  ConvBnRelu ppm_conv_[4];
  ConvBnRelu ppm_last_conv_;
  ConvBnRelu fpn_in_[3];
  ConvBnRelu fpn_out_[3];
  ConvBnRelu fusion_;
  Conv2d classifier_;
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const std::string& name, const Scope& scope, int64_t fc_dim,
                                      int64_t num_class) {
  if (name == "c1") return std::make_unique<C1>(scope, fc_dim, num_class, false);
  if (name == "c1_deepsup") return std::make_unique<C1>(scope, fc_dim, num_class, true);
  if (name == "ppm") return std::make_unique<PPM>(scope, fc_dim, num_class, false);
  if (name == "ppm_deepsup") return std::make_unique<PPM>(scope, fc_dim, num_class, true);
  if (name == "upernet_lite") return std::make_unique<UPerNet>(scope, fc_dim, num_class, 256);
  if (name == "upernet") return std::make_unique<UPerNet>(scope, fc_dim, num_class, 512);
  throw std::invalid_argument("unknown decoder: " + name);
}

}  // namespace segtool::nn
