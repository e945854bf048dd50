// The reference's deep-stem ResNet / ResNeXt (resnet.py, resnext.py) wrapped as Resnet or
// ResnetDilated (models.py): conv_out = [layer1, layer2, layer3, layer4].
#include <ATen/ops/max_pool2d.h>

#include <stdexcept>

#include "nn/encoders.h"

namespace segtool::nn {
namespace {

struct ResnetConfig {
  int64_t expansion;          // 1 BasicBlock, 4 Bottleneck, 2 GroupBottleneck
  int64_t groups;             // 32 for ResNeXt
  int64_t base_planes;        // planes of layer1 (64 ResNet, 128 ResNeXt); doubles per layer
  std::vector<int64_t> blocks;
  int64_t dilate_scale;       // 0 = not dilated (stride 32), 8 or 16
};

ResnetConfig config_for(const std::string& name) {
  auto with_dilation = [&](ResnetConfig c) {
    if (name.size() >= 9 && name.compare(name.size() - 9, 9, "dilated16") == 0) c.dilate_scale = 16;
    else if (name.find("dilated") != std::string::npos) c.dilate_scale = 8;
    return c;
  };
  if (name.rfind("resnet18", 0) == 0) return with_dilation({1, 1, 64, {2, 2, 2, 2}, 0});
  if (name.rfind("resnet50", 0) == 0) return with_dilation({4, 1, 64, {3, 4, 6, 3}, 0});
  if (name.rfind("resnet101", 0) == 0) return with_dilation({4, 1, 64, {3, 4, 23, 3}, 0});
  if (name.rfind("resnext101", 0) == 0) return with_dilation({2, 32, 128, {3, 4, 23, 3}, 0});
  throw std::invalid_argument("not a ResNet encoder: " + name);
}

class ResnetEncoder : public Encoder {
 public:
  ResnetEncoder(const ResnetConfig& cfg, const Scope& scope)
      : conv1_(scope / "conv1", 3, 64, 3, 2, 1),
        bn1_(scope / "bn1", 64),
        conv2_(scope / "conv2", 64, 64, 3, 1, 1),
        bn2_(scope / "bn2", 64),
        conv3_(scope / "conv3", 64, 128, 3, 1, 1),
        bn3_(scope / "bn3", 128) {
    int64_t inplanes = 128;
    for (int layer = 0; layer < 4; ++layer) {
      const int64_t planes = cfg.base_planes << layer;
      const int64_t stride = layer == 0 ? 1 : 2;
      const Scope layer_scope = scope / ("layer" + std::to_string(layer + 1));
      for (int64_t b = 0; b < cfg.blocks[layer]; ++b) {
        const bool first = b == 0;
        const bool downsample = first && (stride != 1 || inplanes != planes * cfg.expansion);
        layers_[layer].emplace_back(layer_scope / b, inplanes, planes, cfg.expansion,
                                    first ? stride : 1, cfg.groups, downsample);
        inplanes = planes * cfg.expansion;
      }
    }
    // ResnetDilated: layer3 and layer4 (scale 8) or layer4 only (scale 16).
    if (cfg.dilate_scale == 8) {
      dilate_layer(2, 2);
      dilate_layer(3, 4);
    } else if (cfg.dilate_scale == 16) {
      dilate_layer(3, 2);
    }
  }

  std::vector<at::Tensor> forward(const at::Tensor& input, const ForwardContext& ctx) const override {
    at::Tensor x = conv_bn(conv1_, bn1_, input, ctx).relu_();
    x = conv_bn(conv2_, bn2_, x, ctx).relu_();
    x = conv_bn(conv3_, bn3_, x, ctx).relu_();
    x = at::max_pool2d(x, {3, 3}, {2, 2}, {1, 1});
    std::vector<at::Tensor> conv_out;
    for (const auto& layer : layers_) {
      for (const auto& block : layer) x = block(x, ctx);
      conv_out.push_back(x);
    }
    return conv_out;
  }

 private:
  void dilate_layer(int layer, int64_t dilate) {
    for (auto& block : layers_[layer])
      for (Conv2d* conv : block.convs()) conv->nostride_dilate(dilate);
  }

  Conv2d conv1_;
  BatchNorm2d bn1_;
  Conv2d conv2_;
  BatchNorm2d bn2_;
  Conv2d conv3_;
  BatchNorm2d bn3_;
  std::vector<ResidualBlock> layers_[4];
};

}  // namespace

std::unique_ptr<Encoder> make_resnet_encoder(const std::string& name, const Scope& scope) {
  return std::make_unique<ResnetEncoder>(config_for(name), scope);
}

}  // namespace segtool::nn
