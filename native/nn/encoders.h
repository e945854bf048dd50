// Encoders: each returns the reference's `conv_out` list (return_feature_maps=True).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace segtool::nn {

class Encoder {
 public:
  virtual ~Encoder() = default;
  virtual std::vector<at::Tensor> forward(const at::Tensor& x, const ForwardContext& ctx) const = 0;
};

// `name` is a canonical encoder name (arch.h, which also lists their output channels and
// strides). Each registers its tensors under `scope` in the reference's order.
std::unique_ptr<Encoder> make_resnet_encoder(const std::string& name, const Scope& scope);
std::unique_ptr<Encoder> make_mobilenet_encoder(const Scope& scope);
std::unique_ptr<Encoder> make_hrnet_encoder(const Scope& scope);

}  // namespace segtool::nn
