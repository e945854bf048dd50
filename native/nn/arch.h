// Architecture names: canonical names, the seed's aliases, default fc_dim, and which
// encoder/decoder pairs fit together.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace segtool::nn {

// Names accepted by SegmentationModel, in documentation order (aliases included).
const std::vector<std::string>& encoder_names();
const std::vector<std::string>& decoder_names();

// Maps a (case-insensitive) name or alias to its canonical name, e.g. "resnet50_dilated8" ->
// "resnet50dilated", "resnet50_dilated16" -> "resnet50dilated16", "ppm_bilinear_deepsup" ->
// "ppm_deepsup". Throws std::invalid_argument listing the valid names and the nearest one.
std::string canonical_encoder(const std::string& name);
std::string canonical_decoder(const std::string& name);

struct EncoderShape {
  std::vector<int64_t> channels;  // channels of each conv_out entry
  std::vector<int64_t> strides;   // output stride of each conv_out entry
};
EncoderShape encoder_shape(const std::string& canonical_encoder);

// fc_dim the decoder expects for this encoder: channels of its last output (mobilenetv2dilated
// 320, resnet18* 512, hrnetv2 720, others 2048). Accepts aliases.
int64_t default_fc_dim(const std::string& encoder);

// Output stride of the decoder's logits for this pair (upernet: stride of conv_out[0]).
int64_t output_stride(const std::string& canonical_encoder, const std::string& canonical_decoder);

// Empty when the pair (with this fc_dim) works; else a sentence saying why not.
std::string incompatibility(const std::string& canonical_encoder, const std::string& canonical_decoder,
                            int64_t fc_dim);

}  // namespace segtool::nn
