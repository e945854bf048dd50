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

// What a decoder may assume about an encoder's outputs.
struct EncoderInfo {
  std::vector<int64_t> channels;  // channels of each conv_out entry
  std::vector<int64_t> strides;   // output stride of each conv_out entry
};

// `name` is a canonical encoder name (see arch.h). Registers the tensors under `scope`.
std::unique_ptr<Encoder> make_resnet_encoder(const std::string& name, const Scope& scope);
std::unique_ptr<Encoder> make_mobilenet_encoder(const Scope& scope);
std::unique_ptr<Encoder> make_hrnet_encoder(const Scope& scope);

}  // namespace segtool::nn
