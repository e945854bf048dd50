// Decoders: C1, C1DeepSup, PPM, PPMDeepsup, UPerNet (models.py). They return raw logits at
// feature resolution; the model applies log_softmax / upsampling + softmax.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace segtool::nn {

struct DecoderOutput {
  at::Tensor logits;
  at::Tensor deepsup_logits;  // undefined for decoders without deep supervision
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual DecoderOutput forward(const std::vector<at::Tensor>& conv_out, const ForwardContext& ctx,
                                bool with_deepsup) const = 0;
  virtual bool has_deepsup() const { return false; }
};

// `name` is a canonical decoder name: c1, c1_deepsup, ppm, ppm_deepsup, upernet_lite, upernet.
std::unique_ptr<Decoder> make_decoder(const std::string& name, const Scope& scope, int64_t fc_dim,
                                      int64_t num_class);

}  // namespace segtool::nn
