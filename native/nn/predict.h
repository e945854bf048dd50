// Memory-lean full-resolution prediction: bilinear upsampling (align_corners=false) of
// feature-resolution logits, softmax, average over scales, argmax — computed in horizontal
// bands so that num_class x H x W scores never exist at once (the reference needs 13.41 GiB
// for one large photo, its issue #229).
#pragma once
#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <vector>

namespace segtool::nn {

struct PredictOptions {
  bool confidence = true;      // the top class's averaged probability per pixel
  bool probabilities = false;  // every class's averaged probability (B x C x H x W)
  // Non-CPU tensors: rows per band such that B x C x rows x out_w stays under this (16 MiB).
  int64_t band_elements = int64_t(1) << 22;
  bool counts = false;  // pixels per class (B x C int64), for coverage summaries
  at::Tensor palette;   // uint8 C x 3: also colour the labels (B = 1), in the same job
  // Checked between scales, bands and rows: set, the prediction stops with nn::Cancelled.
  const std::atomic<bool>* cancel = nullptr;
};

struct Prediction {
  at::Tensor pred;           // int32 B x H x W: argmax over classes of the averaged probabilities
  at::Tensor prob;           // float32 B x H x W: that maximum probability (if asked)
  at::Tensor probabilities;  // float32 B x C x H x W (if asked)
  at::Tensor counts;         // int64 B x C: pixels predicted as each class (if asked)
  at::Tensor colors;         // uint8 H x W x 3: the labels in the palette (if one was given)
  at::Tensor logits;         // float32 B x C x h x w: stitched logits of a sliding window (if asked)
};

// Pixels per class of int32 B x H x W labels in [0, num_class): int64 B x num_class.
at::Tensor class_counts(const at::Tensor& labels, int64_t num_class);

// RGB colours of int32 H x W labels: uint8 H x W x 3 from a uint8 C x 3 palette; labels outside
// the palette are black. Parallel over rows.
at::Tensor colorize_labels(const at::Tensor& labels, const at::Tensor& palette);

// `logits`: one B x C x h_i x w_i tensor per scale (any h_i, w_i; same B and C). The
// probabilities of each scale (softmax of its logits upsampled to out_h x out_w) are averaged
// as the reference's multi-scale evaluation does (scores += p / n). On CPU one fused pass per
// output row (ops/cpu/class_prediction.h): a few rows of C x out_w scores per thread, nothing
// of C x H x W unless `probabilities` is asked for.
Prediction predict_from_logits(const std::vector<at::Tensor>& logits, int64_t out_h, int64_t out_w,
                               const PredictOptions& options = {});

}  // namespace segtool::nn
