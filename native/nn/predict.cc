#include "nn/predict.h"

#include <ATen/Parallel.h>

#include "nn/cancel.h"

#include "ops/cpu/class_prediction.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/upsample_bilinear2d.h>
#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <stdexcept>

namespace segtool::nn {
namespace {

at::Tensor vector_tensor(std::vector<int64_t>& v) {
  return at::from_blob(v.data(), {static_cast<int64_t>(v.size())}, at::kLong).clone();
}

at::Tensor weight_column(std::vector<float>& v, const at::Tensor& like) {
  return at::from_blob(v.data(), {1, 1, static_cast<int64_t>(v.size()), 1}, at::kFloat)
      .to(like.options(), /*non_blocking=*/false, /*copy=*/true);
}

// Rows [y0, y1) of upsample_bilinear2d(logits, {out_h, out_w}); `row_weights` are
// bilinear_axis_weights(logits.size(2), out_h), computed once per scale.
at::Tensor upsample_band(const at::Tensor& logits, const ops::cpu::AxisWeights& row_weights, int64_t out_w, int64_t y0,
                         int64_t y1) {
  ops::cpu::AxisWeights w;
  w.index0.assign(row_weights.index0.begin() + y0, row_weights.index0.begin() + y1);
  w.index1.assign(row_weights.index1.begin() + y0, row_weights.index1.begin() + y1);
  w.lambda0.assign(row_weights.lambda0.begin() + y0, row_weights.lambda0.begin() + y1);
  w.lambda1.assign(row_weights.lambda1.begin() + y0, row_weights.lambda1.begin() + y1);
  const int64_t r0 = w.index0.front();
  const int64_t r1 = w.index1.back();
  // Width first on the few source rows the band needs (height unchanged: an exact copy).
  const at::Tensor rows = at::upsample_bilinear2d(logits.narrow(2, r0, r1 - r0 + 1), {r1 - r0 + 1, out_w}, false);
  for (auto& i : w.index0) i -= r0;
  for (auto& i : w.index1) i -= r0;
  const at::Tensor i0 = vector_tensor(w.index0).to(rows.device());
  const at::Tensor i1 = vector_tensor(w.index1).to(rows.device());
  at::Tensor band = rows.index_select(2, i0).mul_(weight_column(w.lambda0, rows));
  band.add_(rows.index_select(2, i1).mul_(weight_column(w.lambda1, rows)));
  return band;
}

// Device-agnostic path (CUDA tensors): ATen ops on bands of rows.
Prediction predict_in_bands(const std::vector<at::Tensor>& logits, int64_t out_h, int64_t out_w,
                            const PredictOptions& options) {
  const int64_t batch = logits[0].size(0), classes = logits[0].size(1);
  const auto tensor_options = logits[0].options().dtype(at::kFloat);
  Prediction p;
  p.pred = at::empty({batch, out_h, out_w}, tensor_options.dtype(at::kInt));
  if (options.confidence) p.prob = at::empty({batch, out_h, out_w}, tensor_options);
  if (options.probabilities) p.probabilities = at::empty({batch, classes, out_h, out_w}, tensor_options);
  const int64_t rows = std::max<int64_t>(1, options.band_elements / std::max<int64_t>(1, batch * classes * out_w));
  const double n = static_cast<double>(logits.size());
  std::vector<at::Tensor> scales;
  std::vector<ops::cpu::AxisWeights> row_weights;
  for (const auto& l : logits) {
    scales.push_back(l.to(at::kFloat));
    row_weights.push_back(ops::cpu::bilinear_axis_weights(l.size(2), out_h));
  }
  for (int64_t y0 = 0; y0 < out_h; y0 += rows) {
    throw_if_cancelled(options.cancel);
    const int64_t y1 = std::min(out_h, y0 + rows);
    at::Tensor scores;
    for (size_t s = 0; s < scales.size(); ++s) {
      at::Tensor probs = at::softmax(upsample_band(scales[s], row_weights[s], out_w, y0, y1), 1);
      if (logits.size() == 1) {
        scores = std::move(probs);
      } else {
        probs.div_(n);
        scores = scores.defined() ? scores.add_(probs) : probs;
      }
    }
    auto [max_prob, argmax] = scores.max(1);
    p.pred.narrow(1, y0, y1 - y0).copy_(argmax);
    if (options.confidence) p.prob.narrow(1, y0, y1 - y0).copy_(max_prob);
    if (options.probabilities) p.probabilities.narrow(2, y0, y1 - y0).copy_(scores);
  }
  return p;
}

}  // namespace

Prediction predict_from_logits(const std::vector<at::Tensor>& logits, int64_t out_h, int64_t out_w,
                               const PredictOptions& options) {
  if (logits.empty()) throw std::invalid_argument("predict_from_logits: no logits");
  if (out_h < 1 || out_w < 1) throw std::invalid_argument("predict_from_logits: the output size must be positive");
  c10::InferenceMode inference;
  const int64_t batch = logits[0].size(0), classes = logits[0].size(1);
  for (const auto& l : logits)
    if (l.dim() != 4 || l.size(0) != batch || l.size(1) != classes || l.device() != logits[0].device())
      throw std::invalid_argument("predict_from_logits: logits of every scale must be B x C x h x w with equal B, C and device");
  if (!logits[0].device().is_cpu()) return predict_in_bands(logits, out_h, out_w, options);

  std::vector<at::Tensor> contiguous;
  for (const auto& l : logits) contiguous.push_back(l.to(at::kFloat).contiguous());
  const auto cpu = at::TensorOptions().dtype(at::kFloat);
  Prediction p;
  p.pred = at::empty({batch, out_h, out_w}, cpu.dtype(at::kInt));
  if (options.confidence) p.prob = at::empty({batch, out_h, out_w}, cpu);
  if (options.probabilities) p.probabilities = at::empty({batch, classes, out_h, out_w}, cpu);
  const int64_t plane = out_h * out_w;
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<ops::cpu::ClassLogits> scales;
    for (const auto& l : contiguous)
      scales.push_back({l.data_ptr<float>() + b * classes * l.size(2) * l.size(3), l.size(2), l.size(3)});
    ops::cpu::ClassPredictionOutputs out;
    out.labels = p.pred.data_ptr<int32_t>() + b * plane;
    if (options.confidence) out.confidence = p.prob.data_ptr<float>() + b * plane;
    if (options.probabilities) out.probabilities = p.probabilities.data_ptr<float>() + b * classes * plane;
    out.cancel = options.cancel;
    ops::cpu::predict_classes(scales, classes, out_h, out_w, out);
    throw_if_cancelled(options.cancel);  // rows were skipped: the outputs are incomplete
  }
  return p;
}

at::Tensor class_counts(const at::Tensor& labels_in, int64_t num_class) {
  c10::InferenceMode inference;
  const at::Tensor labels = labels_in.to(at::kCPU).to(at::kInt).contiguous();
  const int64_t batch = labels.size(0), plane = labels.numel() / std::max<int64_t>(1, batch);
  at::Tensor counts = at::zeros({batch, num_class}, at::TensorOptions().dtype(at::kLong));
  const int32_t* src = labels.data_ptr<int32_t>();
  int64_t* dst = counts.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch; ++b) {
    const int32_t* l = src + b * plane;
    int64_t* c = dst + b * num_class;
    for (int64_t i = 0; i < plane; ++i)
      if (l[i] >= 0 && l[i] < num_class) ++c[l[i]];
  }
  return counts;
}

at::Tensor colorize_labels(const at::Tensor& labels_in, const at::Tensor& palette_in) {
  c10::InferenceMode inference;
  if (labels_in.dim() != 2 && !(labels_in.dim() == 3 && labels_in.size(0) == 1))
    throw std::invalid_argument("colorize: labels must be H x W (or 1 x H x W)");
  if (palette_in.dim() != 2 || palette_in.size(1) != 3) throw std::invalid_argument("colorize: the palette must be C x 3");
  const at::Tensor labels = labels_in.reshape({labels_in.size(-2), labels_in.size(-1)}).to(at::kCPU).to(at::kInt).contiguous();
  const at::Tensor palette = palette_in.to(at::kCPU).to(at::kByte).contiguous();
  const int64_t h = labels.size(0), w = labels.size(1), colors = palette.size(0);
  at::Tensor rgb = at::empty({h, w, 3}, at::TensorOptions().dtype(at::kByte));
  const int32_t* src = labels.data_ptr<int32_t>();
  const uint8_t* pal = palette.data_ptr<uint8_t>();
  uint8_t* dst = rgb.data_ptr<uint8_t>();
  at::parallel_for(0, h, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin * w; i < end * w; ++i) {
      const int32_t c = src[i];
      const bool known = c >= 0 && c < colors;
      dst[3 * i] = known ? pal[3 * c] : 0;
      dst[3 * i + 1] = known ? pal[3 * c + 1] : 0;
      dst[3 * i + 2] = known ? pal[3 * c + 2] : 0;
    }
  });
  return rgb;
}

}  // namespace segtool::nn
