// Memory-lean full-resolution prediction: bilinear upsampling (align_corners=false) of
// feature-resolution logits, softmax, average over scales, argmax — computed in horizontal
// bands so that num_class x H x W scores never exist at once (the reference needs 13.41 GiB
// for one large photo, its issue #229).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace segtool::nn {

struct Prediction {
  at::Tensor pred;  // int64 B x H x W: argmax over classes of the averaged probabilities
  at::Tensor prob;  // float32 B x H x W: that maximum probability
};

// `logits`: one B x C x h_i x w_i tensor per scale (any h_i, w_i; same B and C). The
// probabilities of each scale (softmax of its logits upsampled to out_h x out_w) are averaged
// as the reference's multi-scale evaluation does (scores += p / n). Peak extra memory is about
// (2 + scales) x band_elements floats plus the B x H x W outputs; band_elements bounds
// B x C x rows x out_w of one band (default 4 Mi elements = 16 MiB).
Prediction predict_from_logits(const std::vector<at::Tensor>& logits, int64_t out_h, int64_t out_w,
                               int64_t band_elements = int64_t(1) << 22);

}  // namespace segtool::nn
