// Full-size class prediction from feature-resolution logits in one fused pass per output row:
// bilinear upsampling (align_corners=false, ATen's source indices and weights), softmax over
// classes, average over scales, argmax and its probability. Only a few rows of num_class x W
// scores exist at a time (per thread), never num_class x H x W: the reference needs 13.41 GiB
// for one large photo (its issue #229) and spends most of a small model's time there.
#pragma once
#include <atomic>
#include <cstdint>
#include <vector>

namespace segtool::ops::cpu {

// Source indices and weights of upsample_bilinear2d (align_corners=false, no scale factor)
// along one axis of `in` -> `out` samples, computed as ATen's CPU kernel does (float arithmetic).
struct AxisWeights {
  std::vector<int64_t> index0, index1;
  std::vector<float> lambda0, lambda1;
};
AxisWeights bilinear_axis_weights(int64_t in, int64_t out);

struct ClassLogits {
  const float* data;  // num_class x height x width, contiguous
  int64_t height, width;
};

struct ClassPredictionOutputs {
  int32_t* labels = nullptr;         // out_h x out_w: argmax (first on ties); required
  float* confidence = nullptr;       // out_h x out_w: its averaged probability; optional
  float* probabilities = nullptr;    // num_class x out_h x out_w averaged probabilities; optional
  // Set from another thread to stop between rows (the rows left are not computed; the caller
  // checks the flag afterwards and discards the outputs).
  const std::atomic<bool>* cancel = nullptr;
};

// Every scale's probabilities count 1/scales.size() (the reference's `scores += p / n`).
// Parallel over output rows on ATen's intra-op threads; results do not depend on the thread
// count.
void predict_classes(const std::vector<ClassLogits>& scales, int64_t num_class, int64_t out_h, int64_t out_w,
                     const ClassPredictionOutputs& out);

}  // namespace segtool::ops::cpu
