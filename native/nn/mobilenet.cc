// The reference's MobileNetV2Dilated (models.py over mobilenet.py): features[:-1] of
// MobileNetV2 with dilate_scale 8; conv_out = outputs of features 2, 4, 7, 14 and the last.
#include <ATen/ops/hardtanh.h>

#include "nn/encoders.h"

namespace segtool::nn {
namespace {

// nn.ReLU6(inplace=True) = F.hardtanh(x, 0, 6, inplace=True). LibTorch 1.13 has no bfloat16 CPU
// kernel for hardtanh's backward: bf16 activations use clamp, the same forward (its gradient
// differs only at exactly 0 and 6, where hardtanh passes none).
at::Tensor relu6_inplace(at::Tensor x) {
  if (x.scalar_type() == at::kBFloat16) return x.clamp_(0.0, 6.0);
  return at::hardtanh_(x, 0.0, 6.0);
}

struct ConvBn {
  Conv2d conv;
  BatchNorm2d bn;
};

// features.i: InvertedResidual, registered as conv.0/conv.1 (.. conv.6/conv.7).
class InvertedResidual {
 public:
  InvertedResidual(const Scope& scope, int64_t inp, int64_t oup, int64_t stride, int64_t expand) {
    const int64_t hidden = inp * expand;
    residual_ = stride == 1 && inp == oup;
    const Scope conv = scope / "conv";
    int64_t index = 0;
    auto add = [&](int64_t in, int64_t out, int64_t kernel, int64_t s, int64_t groups) {
      ConvBn cb{Conv2d(conv / index, in, out, kernel, s, kernel / 2, false, groups),
                BatchNorm2d(conv / (index + 1), out)};
      index += 3;  // Sequential slots: conv, bn, ReLU6
      layers_.push_back(std::move(cb));
    };
    if (expand != 1) add(inp, hidden, 1, 1, 1);  // pw
    add(hidden, hidden, 3, stride, hidden);        // dw
    add(hidden, oup, 1, 1, 1);                     // pw-linear
  }

  at::Tensor operator()(const at::Tensor& x, const ForwardContext& ctx) const {
    at::Tensor y = x;
    for (size_t i = 0; i < layers_.size(); ++i) {
      y = conv_bn(layers_[i].conv, layers_[i].bn, y, ctx);
      if (i + 1 < layers_.size()) y = relu6_inplace(y);  // the last (pw-linear) has no activation
    }
    return residual_ ? x.add(y) : y;
  }

  void nostride_dilate(int64_t dilate) {
    for (auto& l : layers_) l.conv.nostride_dilate(dilate);
  }

 private:
  bool residual_ = false;
  std::vector<ConvBn> layers_;
};

class MobileNetV2Dilated : public Encoder {
 public:
  explicit MobileNetV2Dilated(const Scope& scope) {
    const Scope features = scope / "features";
    stem_ = ConvBn{Conv2d(features / 0 / 0, 3, 32, 3, 2, 1), BatchNorm2d(features / 0 / 1, 32)};
    // t (expand), c (channels), n (repeats), s (stride of the first)
    const int64_t settings[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                                    {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    int64_t in = 32;
    int64_t index = 1;
    for (const auto& s : settings) {
      for (int64_t i = 0; i < s[2]; ++i) {
        blocks_.emplace_back(features / index++, in, s[1], i == 0 ? s[3] : 1, s[0]);
        in = s[1];
      }
    }
    // features 1..17 = blocks_[0..16]; dilate_scale 8: features 7..13 by 2, 14..17 by 4.
    for (int64_t f = 7; f < 14; ++f) blocks_[f - 1].nostride_dilate(2);
    for (int64_t f = 14; f < 18; ++f) blocks_[f - 1].nostride_dilate(4);
  }

  std::vector<at::Tensor> forward(const at::Tensor& input, const ForwardContext& ctx) const override {
    std::vector<at::Tensor> conv_out;
    at::Tensor x = relu6_inplace(conv_bn(stem_.conv, stem_.bn, input, ctx));
    for (size_t i = 0; i < blocks_.size(); ++i) {
      x = blocks_[i](x, ctx);
      const size_t feature = i + 1;
      if (feature == 2 || feature == 4 || feature == 7 || feature == 14) conv_out.push_back(x);
    }
    conv_out.push_back(x);
    return conv_out;
  }

 private:
  ConvBn stem_;
  std::vector<InvertedResidual> blocks_;
};

}  // namespace

std::unique_ptr<Encoder> make_mobilenet_encoder(const Scope& scope) {
  return std::make_unique<MobileNetV2Dilated>(scope);
}

}  // namespace segtool::nn
