#include "nn/slide.h"

#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "nn/cancel.h"

namespace segtool::nn {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_side(const char* name, int64_t value, int64_t output_stride) {
  if (value < 1 || value % output_stride != 0)
    throw std::invalid_argument(std::string("slide: ") + name + " must be a positive multiple of the output stride (" +
                                std::to_string(output_stride) + "), got " + std::to_string(value));
}

// [start, end) of every crop along one axis of `size` pixels.
std::vector<std::pair<int64_t, int64_t>> axis_spans(int64_t size, int64_t crop, int64_t stride, int64_t output_stride) {
  const int64_t count = std::max<int64_t>(size - crop + stride - 1, 0) / stride + 1;
  // The last crop ends at the image's edge, starting on a canvas cell (no larger than crop).
  const int64_t last = ceil_div(std::max<int64_t>(size - crop, 0), output_stride) * output_stride;
  std::vector<std::pair<int64_t, int64_t>> spans;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t start = std::min(i * stride, last);
    spans.emplace_back(start, std::min(start + crop, size));
  }
  return spans;
}

}  // namespace

std::vector<SlideTile> slide_tiles(int64_t height, int64_t width, const SlideOptions& o, int64_t output_stride) {
  if (height < 1 || width < 1) throw std::invalid_argument("slide: the image size must be positive");
  if (output_stride < 1) throw std::invalid_argument("slide: the output stride must be positive");
  check_side("crop height", o.crop_h, output_stride);
  check_side("crop width", o.crop_w, output_stride);
  check_side("stride height", o.stride_h, output_stride);
  check_side("stride width", o.stride_w, output_stride);
  if (o.stride_h > o.crop_h || o.stride_w > o.crop_w)
    throw std::invalid_argument("slide: the stride must not exceed the crop (the crops would leave gaps)");
  std::vector<SlideTile> tiles;
  for (const auto& [y0, y1] : axis_spans(height, o.crop_h, o.stride_h, output_stride))
    for (const auto& [x0, x1] : axis_spans(width, o.crop_w, o.stride_w, output_stride)) tiles.push_back({y0, y1, x0, x1});
  return tiles;
}

StitchedLogits stitch_tiles(const at::Tensor& input, const SlideOptions& options, int64_t output_stride,
                            const std::function<at::Tensor(const at::Tensor&)>& forward_logits,
                            const std::atomic<bool>* cancel, const TileProgress& progress) {
  if (input.dim() != 4) throw std::invalid_argument("slide: the input must be B x 3 x H x W");
  c10::InferenceMode inference;
  const int64_t s = output_stride;
  const int64_t height = input.size(2), width = input.size(3);
  const std::vector<SlideTile> tiles = slide_tiles(height, width, options, s);
  const int64_t cells_h = ceil_div(height, s), cells_w = ceil_div(width, s);

  StitchedLogits out;
  at::Tensor counts;  // 1 x 1 x cells_h x cells_w: crops that covered each cell
  const int views = options.flip ? 2 : 1;
  const int64_t total = static_cast<int64_t>(tiles.size()) * views;
  for (const SlideTile& t : tiles) {
    const int64_t c0 = t.y0 / s, c1 = t.x0 / s;
    const at::Tensor crop = input.narrow(2, t.y0, t.y1 - t.y0).narrow(3, t.x0, t.x1 - t.x0).contiguous();
    for (int view = 0; view < views; ++view) {
      if (cancel_requested(cancel))
        throw Cancelled("the computation was cancelled after " + std::to_string(out.tiles) + " of " + std::to_string(total) + " crops");
      at::Tensor logits = view == 0 ? forward_logits(crop) : forward_logits(crop.flip({3})).flip({3});
      const int64_t rows = ceil_div(t.y1 - t.y0, s), cols = ceil_div(t.x1 - t.x0, s);
      if (logits.dim() != 4 || logits.size(2) != rows || logits.size(3) != cols)
        throw std::runtime_error("slide: a " + std::to_string(t.y1 - t.y0) + " x " + std::to_string(t.x1 - t.x0) +
                                 " crop gave logits of another size than crop / output stride");
      if (out.canvases.size() <= static_cast<size_t>(view)) {
        // Allocated at the first crop, on the logits' device (the model's).
        out.canvases.push_back(at::zeros({logits.size(0), logits.size(1), cells_h, cells_w}, logits.options().dtype(at::kFloat)));
        if (!counts.defined()) counts = at::zeros({1, 1, cells_h, cells_w}, logits.options().dtype(at::kFloat));
      }
      out.canvases[view].narrow(2, c0, rows).narrow(3, c1, cols).add_(logits);
      if (view == 0) counts.narrow(2, c0, rows).narrow(3, c1, cols).add_(1);
      ++out.tiles;
      if (progress) progress(out.tiles, total);
    }
  }
  for (at::Tensor& canvas : out.canvases) canvas.div_(counts);
  return out;
}

}  // namespace segtool::nn
