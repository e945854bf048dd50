// Sliding-window inference (mmsegmentation's `slide` test mode) for images far larger than the
// training scale: the image, at its own resolution, goes through the network one crop at a
// time; each crop's logits are added into a canvas at the network's output resolution
// (C x ceil(H / s) x ceil(W / s), s = the output stride) with a count of the crops that covered
// each cell, and the canvas divided by the counts is the image's logits. The full-size labels
// then come from predict_from_logits (row by row), so memory is bounded by one crop's network
// activations plus the canvas: no C x H x W buffer exists.
//
// The grid is mmsegmentation's: rows = max(H - crop_h + stride_h - 1, 0) / stride_h + 1 (and
// the same across), crop r at r * stride_h clamped into the image. Unlike mmsegmentation, crop
// and stride are multiples of the output stride and the last crop starts at the first multiple
// of it at or past H - crop_h: every crop starts on a canvas cell, so its logits land on the
// canvas cell for cell, and no crop is larger than crop_h x crop_w.
#pragma once
#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

namespace segtool::nn {

struct SlideOptions {
  int64_t crop_h = 512, crop_w = 512;      // crop size, multiples of the output stride
  int64_t stride_h = 336, stride_w = 336;  // step between crops, multiples of it, <= the crop
  bool flip = false;  // each crop also mirrored left-right: a second canvas, probabilities averaged
  bool logits = false;  // SegmentationModel::predict_sliding: also return the stitched logits
};

// One crop: input rows [y0, y1) and columns [x0, x1).
struct SlideTile {
  int64_t y0, y1, x0, x1;
};

// The crops covering a height x width image, row by row. Throws std::invalid_argument for
// sizes that are not positive or not multiples of `output_stride`, or a stride over the crop.
std::vector<SlideTile> slide_tiles(int64_t height, int64_t width, const SlideOptions& options, int64_t output_stride);

// Stitched logits: one B x C x ceil(H / s) x ceil(W / s) float32 canvas (two with flip: the
// mirrored crops' logits mirrored back in the second), each the average over the crops that
// covered a cell.
struct StitchedLogits {
  std::vector<at::Tensor> canvases;
  int64_t tiles = 0;  // crops run (x 2 with flip)
};

// Called after each crop with (crops done, crops in all), on the computing thread.
using TileProgress = std::function<void(int64_t, int64_t)>;

// `input`: B x 3 x H x W (normalised, any device). `forward_logits` maps a B x 3 x h x w crop
// to its B x C x ceil(h / s) x ceil(w / s) logits. `cancel` is checked before every crop:
// set, the work stops with nn::Cancelled (its message says how many crops had run).
StitchedLogits stitch_tiles(const at::Tensor& input, const SlideOptions& options, int64_t output_stride,
                            const std::function<at::Tensor(const at::Tensor&)>& forward_logits,
                            const std::atomic<bool>* cancel = nullptr, const TileProgress& progress = nullptr);

}  // namespace segtool::nn
