// Checks a model against one reference fixture case (test/fixtures/models/<case>.safetensors),
// with the tolerances of the fixtures' README. Used by native/tests/models_test.cc; callable
// from the binding for a self-test.
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
};

// Tensor comparisons (README tolerances as defaults).
// max |got - expected| / (max(expected) - min(expected)) <= tol
Comparison compare_logprob(const std::string& what, const at::Tensor& got, const at::Tensor& expected,
                           double tol = 1e-3);
// count of pixels with margin > min_margin whose predictions differ == 0
Comparison compare_pred(const at::Tensor& got, const at::Tensor& expected, const at::Tensor& margin,
                        double min_margin = 1e-3);
// max |got - expected| <= tol (absolute; probabilities are in [0, 1])
Comparison compare_abs(const std::string& what, const at::Tensor& got, const at::Tensor& expected, double tol);
// |got - expected| <= tol * max(|expected|, floor)
Comparison compare_scalar(const std::string& what, double got, double expected, double rel_tol,
                          double floor = 1e-12);

struct FixtureCaseResult {
  std::string encoder, decoder;
  double seconds = 0;
  std::vector<Comparison> comparisons;
  bool ok() const;
};

// Builds encoder/decoder (from the file's metadata) with procedural weights and runs the
// eval and three training steps of the fixture (lr 0.02, momentum 0.9, wd 1e-4, dropout 0,
// BN momentum 0.001). Throws on unreadable files.
FixtureCaseResult run_fixture_case(const std::string& safetensors_path);

}  // namespace segtool::nn
