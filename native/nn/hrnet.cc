// The reference's HRNetV2-W48 (hrnet.py): stem, layer1, stages 2-4 of high-resolution modules;
// the output is the four branches upsampled to branch 0's size and concatenated (720 channels).
#include <ATen/ops/cat.h>

#include "nn/encoders.h"

namespace segtool::nn {
namespace {

// Conv + BN with an optional ReLU: the Sequential(conv, BN[, ReLU]) pieces of transitions and fuses.
struct ConvBnAct {
  Conv2d conv;
  BatchNorm2d bn;
  bool relu = false;
  ConvBnAct(const Scope& scope, int64_t in, int64_t out, int64_t kernel, int64_t stride, bool relu_)
      : conv(scope / 0, in, out, kernel, stride, kernel / 2), bn(scope / 1, out), relu(relu_) {}
  at::Tensor operator()(const at::Tensor& x, const ForwardContext& ctx) const {
    at::Tensor y = conv_bn(conv, bn, x, ctx);
    return relu ? y.relu_() : y;
  }
};
using Chain = std::vector<ConvBnAct>;  // Sequential of ConvBnAct (empty = identity / None)

at::Tensor run_chain(const Chain& chain, at::Tensor x, const ForwardContext& ctx) {
  for (const auto& c : chain) x = c(x, ctx);
  return x;
}

constexpr int64_t kBlocks = 4;  // NUM_BLOCKS of every branch, all stages

class HighResolutionModule {
 public:
  HighResolutionModule(const Scope& scope, const std::vector<int64_t>& channels) : channels_(channels) {
    const int64_t n = static_cast<int64_t>(channels.size());
    branches_.resize(n);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t b = 0; b < kBlocks; ++b)
        branches_[i].emplace_back(scope / "branches" / i / b, channels[i], channels[i], 1, 1, 1, false);
    // fuse_layers[i][j]: j > i: 1x1 conv + BN (then upsample); j < i: (i-j) stride-2 3x3 convs.
    fuse_.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      fuse_[i].resize(n);
      for (int64_t j = 0; j < n; ++j) {
        const Scope s = scope / "fuse_layers" / i / j;
        if (j > i) {
          fuse_[i][j].emplace_back(s, channels[j], channels[i], 1, 1, false);
        } else if (j < i) {
          for (int64_t k = 0; k < i - j; ++k) {
            const bool last = k == i - j - 1;
            fuse_[i][j].emplace_back(s / k, channels[j], last ? channels[i] : channels[j], 3, 2, !last);
          }
        }
      }
    }
  }

  std::vector<at::Tensor> operator()(std::vector<at::Tensor> x, const ForwardContext& ctx) const {
    const size_t n = channels_.size();
    for (size_t i = 0; i < n; ++i)
      for (const auto& block : branches_[i]) x[i] = block(x[i], ctx);
    std::vector<at::Tensor> out;
    for (size_t i = 0; i < n; ++i) {
      at::Tensor y = i == 0 ? x[0] : run_chain(fuse_[i][0], x[0], ctx);
      for (size_t j = 1; j < n; ++j) {
        if (i == j) {
          y = y.add(x[j]);
        } else if (j > i) {
          y = y.add(upsample_bilinear(run_chain(fuse_[i][j], x[j], ctx), x[i].size(2), x[i].size(3)));
        } else {
          y = y.add(run_chain(fuse_[i][j], x[j], ctx));
        }
      }
      out.push_back(y.relu_());
    }
    return out;
  }

 private:
  std::vector<int64_t> channels_;
  std::vector<std::vector<ResidualBlock>> branches_;
  std::vector<std::vector<Chain>> fuse_;
};

class HRNetV2 : public Encoder {
 public:
  explicit HRNetV2(const Scope& scope)
      : conv1_(scope / "conv1", 3, 64, 3, 2, 1),
        bn1_(scope / "bn1", 64),
        conv2_(scope / "conv2", 64, 64, 3, 2, 1),
        bn2_(scope / "bn2", 64) {
    for (int64_t b = 0; b < 4; ++b)
      layer1_.emplace_back(scope / "layer1" / b, b == 0 ? 64 : 256, 64, 4, 1, 1, b == 0);
    const std::vector<int64_t> widths = {48, 96, 192, 384};
    const int64_t modules[3] = {1, 4, 3};
    std::vector<int64_t> previous = {256};
    for (int stage = 0; stage < 3; ++stage) {
      const std::vector<int64_t> current(widths.begin(), widths.begin() + stage + 2);
      const Scope t = scope / ("transition" + std::to_string(stage + 1));
      std::vector<Chain> transition(current.size());
      for (size_t i = 0; i < current.size(); ++i) {
        if (i < previous.size()) {
          if (current[i] != previous[i])
            transition[i].emplace_back(t / static_cast<int64_t>(i), previous[i], current[i], 3, 1, true);
        } else {
          // New branch from the last previous one: stride-2 3x3 convs (only one here).
          const int64_t count = static_cast<int64_t>(i + 1 - previous.size());
          for (int64_t j = 0; j < count; ++j) {
            const int64_t in = previous.back();
            const int64_t out = j == count - 1 ? current[i] : in;
            transition[i].emplace_back(t / static_cast<int64_t>(i) / j, in, out, 3, 2, true);
          }
        }
      }
      transitions_.push_back(std::move(transition));
      std::vector<HighResolutionModule> stage_modules;
      const Scope st = scope / ("stage" + std::to_string(stage + 2));
      for (int64_t m = 0; m < modules[stage]; ++m) stage_modules.emplace_back(st / m, current);
      stages_.push_back(std::move(stage_modules));
      previous = current;
    }
  }

  std::vector<at::Tensor> forward(const at::Tensor& input, const ForwardContext& ctx) const override {
    at::Tensor x = conv_bn(conv1_, bn1_, input, ctx).relu_();
    x = conv_bn(conv2_, bn2_, x, ctx).relu_();
    for (const auto& block : layer1_) x = block(x, ctx);
    std::vector<at::Tensor> y_list = {x};
    for (size_t stage = 0; stage < stages_.size(); ++stage) {
      const auto& transition = transitions_[stage];
      std::vector<at::Tensor> x_list;
      for (size_t i = 0; i < transition.size(); ++i) {
        if (transition[i].empty()) {
          x_list.push_back(y_list[i]);
        } else {
          // The reference feeds y_list[-1] to every non-None transition; for stage 2 that is
          // the single layer1 output, later only new branches have one.
          x_list.push_back(run_chain(transition[i], y_list.back(), ctx));
        }
      }
      for (const auto& module : stages_[stage]) x_list = module(std::move(x_list), ctx);
      y_list = std::move(x_list);
    }
    const int64_t h = y_list[0].size(2), w = y_list[0].size(3);
    std::vector<at::Tensor> parts = {y_list[0]};
    for (size_t i = 1; i < y_list.size(); ++i) parts.push_back(upsample_bilinear(y_list[i], h, w));
    return {at::cat(parts, 1)};
  }

 private:
  Conv2d conv1_;
  BatchNorm2d bn1_;
  Conv2d conv2_;
  BatchNorm2d bn2_;
  std::vector<ResidualBlock> layer1_;
  std::vector<std::vector<Chain>> transitions_;
  std::vector<std::vector<HighResolutionModule>> stages_;
};

}  // namespace

std::unique_ptr<Encoder> make_hrnet_encoder(const Scope& scope) { return std::make_unique<HRNetV2>(scope); }

}  // namespace segtool::nn
