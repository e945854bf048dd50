#include "ops/cpu/class_prediction.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

// The row loops below are plain arrays that the compiler vectorises; on x86-64 they get an AVX2
// clone picked at load time (the baseline build targets SSE2 only).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define SEGTOOL_ROW_KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define SEGTOOL_ROW_KERNEL
#endif

namespace segtool::ops::cpu {
namespace {

// exp(x) for x <= 0 (Cephes' expf polynomial, ~1 ulp), branch-free so that it vectorises.
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);
  const float t = x * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 x 2^23 trick)
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

SEGTOOL_ROW_KERNEL void blend_rows(float* out, const float* a, const float* b, float la, float lb, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = la * a[i] + lb * b[i];
}

// First maximum over classes of scores[c * w + x] (strict >, as torch.max's first index).
SEGTOOL_ROW_KERNEL void row_max(const float* scores, int64_t classes, int64_t w, float* best, int32_t* label) {
  std::memcpy(best, scores, sizeof(float) * w);
  std::fill(label, label + w, 0);
  for (int64_t c = 1; c < classes; ++c) {
    const float* s = scores + c * w;
    const int32_t cc = static_cast<int32_t>(c);
    for (int64_t x = 0; x < w; ++x) {
      const bool more = s[x] > best[x];
      best[x] = more ? s[x] : best[x];
      label[x] = more ? cc : label[x];
    }
  }
}

// scores := exp(scores - best) in place; sum[x] := the per-pixel sum over classes.
SEGTOOL_ROW_KERNEL void row_exp(float* scores, int64_t classes, int64_t w, const float* best, float* sum) {
  std::fill(sum, sum + w, 0.0f);
  for (int64_t c = 0; c < classes; ++c) {
    float* s = scores + c * w;
    for (int64_t x = 0; x < w; ++x) {
      s[x] = exp_nonpositive(s[x] - best[x]);
      sum[x] += s[x];
    }
  }
}

// Just the sum of exp(scores - best) (scores untouched): the top class's softmax denominator.
SEGTOOL_ROW_KERNEL void row_exp_sum(const float* scores, int64_t classes, int64_t w, const float* best, float* sum) {
  std::fill(sum, sum + w, 0.0f);
  for (int64_t c = 0; c < classes; ++c) {
    const float* s = scores + c * w;
    for (int64_t x = 0; x < w; ++x) sum[x] += exp_nonpositive(s[x] - best[x]);
  }
}

// acc[c] (+)= e[c] * (1 / sum) * weight: the softmax of one scale, scaled, added.
SEGTOOL_ROW_KERNEL void row_accumulate(float* const* acc, const float* e, int64_t classes, int64_t w, const float* sum,
                                       float* inv, float weight, bool first) {
  for (int64_t x = 0; x < w; ++x) inv[x] = 1.0f / sum[x];
  for (int64_t c = 0; c < classes; ++c) {
    float* a = acc[c];
    const float* s = e + c * w;
    if (first) {
      for (int64_t x = 0; x < w; ++x) a[x] = (s[x] * inv[x]) * weight;
    } else {
      for (int64_t x = 0; x < w; ++x) a[x] += (s[x] * inv[x]) * weight;
    }
  }
}

// One scale's logits, width-upsampled source rows cached (consecutive output rows share them).
class ScaleRows {
 public:
  ScaleRows(const ClassLogits& l, int64_t classes, int64_t out_h, int64_t out_w)
      : logits_(l), classes_(classes), out_w_(out_w), rows_(bilinear_axis_weights(l.height, out_h)),
        cols_(bilinear_axis_weights(l.width, out_w)) {
    for (auto& slot : slots_) slot.data.resize(static_cast<size_t>(classes * out_w));
  }

  // Output row y (classes x out_w) into `out`.
  void row(int64_t y, float* out) {
    const float* a = source_row(rows_.index0[y], nullptr);
    const float* b = source_row(rows_.index1[y], a);
    blend_rows(out, a, b, rows_.lambda0[y], rows_.lambda1[y], classes_ * out_w_);
  }

 private:
  struct Slot {
    int64_t source = -1;
    std::vector<float> data;
  };

  // The width-upsampled source row r, computed into a slot other than `keep`'s if needed.
  const float* source_row(int64_t r, const float* keep) {
    for (auto& slot : slots_)
      if (slot.source == r) return slot.data.data();
    Slot& slot = slots_[0].data.data() == keep ? slots_[1] : slots_[0];
    slot.source = r;
    const int64_t in_w = logits_.width;
    for (int64_t c = 0; c < classes_; ++c) {
      const float* src = logits_.data + (c * logits_.height + r) * in_w;
      float* dst = slot.data.data() + c * out_w_;
      for (int64_t x = 0; x < out_w_; ++x)
        dst[x] = cols_.lambda0[x] * src[cols_.index0[x]] + cols_.lambda1[x] * src[cols_.index1[x]];
    }
    return slot.data.data();
  }

  ClassLogits logits_;
  int64_t classes_, out_w_;
  AxisWeights rows_, cols_;
  Slot slots_[2];
};

}  // namespace

AxisWeights bilinear_axis_weights(int64_t in, int64_t out) {
  AxisWeights w;
  w.index0.resize(out);
  w.index1.resize(out);
  w.lambda0.resize(out);
  w.lambda1.resize(out);
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t o = 0; o < out; ++o) {
    int64_t i0 = o, i1 = o;
    float l1 = 0;
    if (in != out) {
      const float src = std::max(scale * (static_cast<float>(o) + 0.5f) - 0.5f, 0.0f);
      i0 = static_cast<int64_t>(src);
      i1 = i0 + (i0 < in - 1 ? 1 : 0);
      l1 = std::min(std::max(src - static_cast<float>(i0), 0.0f), 1.0f);
    }
    w.index0[o] = i0;
    w.index1[o] = i1;
    w.lambda0[o] = 1.0f - l1;
    w.lambda1[o] = l1;
  }
  return w;
}

void predict_classes(const std::vector<ClassLogits>& scales, int64_t num_class, int64_t out_h, int64_t out_w,
                     const ClassPredictionOutputs& out) {
  if (scales.empty()) throw std::invalid_argument("predict_classes: no logits");
  if (num_class < 1 || out_h < 1 || out_w < 1) throw std::invalid_argument("predict_classes: empty output");
  if (!out.labels) throw std::invalid_argument("predict_classes: labels output required");
  const bool single = scales.size() == 1 && !out.probabilities;
  const float weight = 1.0f / static_cast<float>(scales.size());
  const int64_t plane = out_h * out_w;
  // Rows per task: enough to reuse the cached source rows (upsampling factors are ~4-8).
  const int64_t grain = std::max<int64_t>(8, out_h / (4 * std::max(1, at::get_num_threads())));
  at::parallel_for(0, out_h, grain, [&](int64_t begin, int64_t end) {
    std::vector<ScaleRows> rows;
    rows.reserve(scales.size());
    for (const auto& s : scales) rows.emplace_back(s, num_class, out_h, out_w);
    std::vector<float> scores(static_cast<size_t>(num_class * out_w));
    std::vector<float> acc_row(out.probabilities ? 0 : static_cast<size_t>(num_class * out_w));
    std::vector<float*> acc(static_cast<size_t>(num_class));
    std::vector<float> best(out_w), sum(out_w), inv(out_w);
    std::vector<int32_t> label(out_w);
    for (int64_t y = begin; y < end; ++y) {
      if (out.cancel && out.cancel->load(std::memory_order_relaxed)) return;
      if (single) {
        rows[0].row(y, scores.data());
        row_max(scores.data(), num_class, out_w, best.data(), out.labels + y * out_w);
        if (out.confidence) {
          row_exp_sum(scores.data(), num_class, out_w, best.data(), sum.data());
          float* conf = out.confidence + y * out_w;
          for (int64_t x = 0; x < out_w; ++x) conf[x] = 1.0f / sum[x];
        }
        continue;
      }
      for (int64_t c = 0; c < num_class; ++c)
        acc[c] = out.probabilities ? out.probabilities + c * plane + y * out_w : acc_row.data() + c * out_w;
      for (size_t s = 0; s < rows.size(); ++s) {
        rows[s].row(y, scores.data());
        row_max(scores.data(), num_class, out_w, best.data(), label.data());
        row_exp(scores.data(), num_class, out_w, best.data(), sum.data());
        row_accumulate(acc.data(), scores.data(), num_class, out_w, sum.data(), inv.data(),
                       rows.size() == 1 ? 1.0f : weight, s == 0);
      }
      // Argmax of the averaged probabilities: the rows of `acc` gathered contiguously.
      for (int64_t c = 0; c < num_class; ++c) std::memcpy(scores.data() + c * out_w, acc[c], sizeof(float) * out_w);
      row_max(scores.data(), num_class, out_w, best.data(), out.labels + y * out_w);
      if (out.confidence) std::memcpy(out.confidence + y * out_w, best.data(), sizeof(float) * out_w);
    }
  });
}

}  // namespace segtool::ops::cpu
