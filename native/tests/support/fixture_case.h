// Checks a model against one reference fixture case (test/fixtures/models/<case>.safetensors),
// with the tolerances of the fixtures' README. Used by native/tests/models_test.cc only (not part
// of the addon).
#pragma once
#include <string>
#include <vector>

#include "io/named_tensors.h"

namespace segtool::nn {

struct Comparison {
  std::string what;       // e.g. "eval.logprob", "train.loss2"
  double got = 0;         // scalar compared, or the error measure for tensors
  double expected = 0;
  double error = 0;       // the measure compared with `tolerance`
  double tolerance = 0;
  bool ok = false;
  std::string detail;     // how `error` is measured
  double noise = 0;          // training metrics: largest deviation of a rounding-perturbed run
  bool within_noise = false;  // failed the README tolerance, passed |got - expected| <= k x noise
};

// Tensor comparisons (README tolerances as defaults).
// max |got - expected| / (max(expected) - min(expected)) <= tol
Comparison compare_logprob(const std::string& what, const at::Tensor& got, const at::Tensor& expected,
                           double tol = 1e-3);
// count of pixels with margin > min_margin whose predictions differ == 0
Comparison compare_pred(const std::string& what, const at::Tensor& got, const at::Tensor& expected,
                        const at::Tensor& margin, double min_margin = 1e-3);
// max |log got - log expected| / logprob_range <= tol (probabilities, as log-probabilities)
Comparison compare_log_prob(const std::string& what, const at::Tensor& got, const at::Tensor& expected,
                            double logprob_range, double tol = 1e-3);
// max |got - expected| <= tol (absolute; probabilities are in [0, 1])
Comparison compare_abs(const std::string& what, const at::Tensor& got, const at::Tensor& expected, double tol);
// |got - expected| <= tol * max(|expected|, floor)
Comparison compare_scalar(const std::string& what, double got, double expected, double rel_tol,
                          double floor = 1e-12);

class SegmentationModel;

// Labeled pixels whose prediction could flip under logit errors below `margin`: correct with a
// top-2 gap < margin, or wrong with the label's log-probability within margin of the top.
int64_t near_tie_pixels(const at::Tensor& logprob, const at::Tensor& label, double margin);

// The fixtures' training measurements: three steps (lr 0.02, momentum 0.9, wd 1e-4) on one batch.
struct TrainTrace {
  double loss[3] = {0, 0, 0}, accuracy[3] = {0, 0, 0};
  double grad_norm_encoder1 = 0, grad_norm_decoder1 = 0;
  double encoder_running_mean_sum = 0;
  static std::vector<std::string> names();  // "train.loss1", ... as the fixtures' metadata
  std::vector<double> values() const;       // in names() order
};
TrainTrace train_trace(SegmentationModel& model, const at::Tensor& input, const at::Tensor& label);

// Multiplies every float parameter element by 1 + s * 2^-23, s in {-1, 0, 1} from a hash of
// (name, index, seed): a rounding-level change, like rounding the float64 procedural values
// the other way.
void perturb_parameters(SegmentationModel& model, uint32_t seed);

struct FixtureCheckOptions {
  // Training metrics that miss the README tolerance are re-measured this many times (run 1:
  // another ATen thread count; the others: rounding-perturbed weights); they pass when
  // |got - expected| <= noise_factor x the largest deviation seen (the computation is chaotic:
  // see models_test.cc). 0 = strict README verdict.
  int perturbed_runs = 4;
  double noise_factor = 3;
};

struct FixtureCaseResult {
  std::string encoder, decoder;
  double seconds = 0;
  std::vector<Comparison> comparisons;
  bool ok() const;
};

// Builds encoder/decoder (from the file's metadata) with procedural weights and runs the
// eval and three training steps of the fixture (lr 0.02, momentum 0.9, wd 1e-4, dropout 0,
// BN momentum 0.001). Throws on unreadable files.
FixtureCaseResult run_fixture_case(const std::string& safetensors_path, const FixtureCheckOptions& check = {});

}  // namespace segtool::nn
