#include "nn/fixture_case.h"

#include <chrono>
#include <cmath>
#include <stdexcept>

#include "io/safetensors.h"
#include "nn/model.h"
#include "nn/procedural.h"

namespace segtool::nn {
namespace {

const at::Tensor& find(const io::NamedTensors& tensors, const std::string& name) {
  for (const auto& [key, t] : tensors)
    if (key == name) return t;
  throw std::runtime_error("fixture has no tensor " + name);
}

bool has(const io::NamedTensors& tensors, const std::string& name) {
  for (const auto& [key, t] : tensors)
    if (key == name) return true;
  return false;
}

double meta(const std::map<std::string, std::string>& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) throw std::runtime_error("fixture metadata has no " + key);
  return std::stod(it->second);
}

}  // namespace

Comparison compare_logprob(const std::string& what, const at::Tensor& got, const at::Tensor& expected,
                           double tol) {
  Comparison c{what};
  c.tolerance = tol;
  c.detail = "max abs diff / range";
  if (!got.defined() || got.sizes() != expected.sizes()) {
    c.detail = "shape mismatch";
    c.error = INFINITY;
    return c;
  }
  const at::Tensor e = expected.to(at::kDouble);
  const double range = (e.max() - e.min()).item<double>();
  c.got = (got.to(at::kDouble) - e).abs().max().item<double>();
  c.expected = range;
  c.error = c.got / range;
  c.ok = c.error <= tol;
  return c;
}

Comparison compare_pred(const at::Tensor& got, const at::Tensor& expected, const at::Tensor& margin,
                        double min_margin) {
  Comparison c{"eval.pred"};
  c.detail = "differing pixels where margin > " + std::to_string(min_margin);
  if (!got.defined() || got.sizes() != expected.sizes()) {
    c.detail = "shape mismatch";
    c.error = INFINITY;
    return c;
  }
  const at::Tensor confident = margin.gt(min_margin);
  const at::Tensor differ = got.to(at::kLong).ne(expected.to(at::kLong)).logical_and_(confident);
  c.error = static_cast<double>(differ.sum().item<int64_t>());
  c.got = c.error;
  c.expected = static_cast<double>(confident.sum().item<int64_t>());
  c.ok = c.error == 0;
  return c;
}

Comparison compare_abs(const std::string& what, const at::Tensor& got, const at::Tensor& expected, double tol) {
  Comparison c{what};
  c.tolerance = tol;
  c.detail = "max abs diff";
  if (!got.defined() || got.sizes() != expected.sizes()) {
    c.detail = "shape mismatch";
    c.error = INFINITY;
    return c;
  }
  c.error = (got.to(at::kDouble) - expected.to(at::kDouble)).abs().max().item<double>();
  c.got = c.error;
  c.ok = c.error <= tol;
  return c;
}

Comparison compare_scalar(const std::string& what, double got, double expected, double rel_tol, double floor) {
  Comparison c{what, got, expected};
  c.tolerance = rel_tol;
  c.detail = "relative diff";
  c.error = std::abs(got - expected) / std::max(std::abs(expected), floor);
  c.ok = c.error <= rel_tol;
  return c;
}

bool FixtureCaseResult::ok() const {
  for (const auto& c : comparisons)
    if (!c.ok) return false;
  return !comparisons.empty();
}

FixtureCaseResult run_fixture_case(const std::string& path) {
  const auto start = std::chrono::steady_clock::now();
  const io::SafetensorsFile file = io::read_safetensors(path);
  const auto& t = file.tensors;
  FixtureCaseResult r;
  r.encoder = file.metadata.at("encoder");
  r.decoder = file.metadata.at("decoder");
  auto& out = r.comparisons;

  ModelOptions options;
  options.encoder = r.encoder;
  options.decoder = r.decoder;
  options.fc_dim = static_cast<int64_t>(meta(file.metadata, "fc_dim"));
  options.num_class = static_cast<int64_t>(meta(file.metadata, "num_class"));
  options.bn_momentum = 0.001;
  options.bn_eps = 1e-5;
  options.dropout = 0;
  SegmentationModel model(options);
  apply_procedural_weights(model);
  out.push_back(compare_scalar("output_stride", model.output_stride(), meta(file.metadata, "output_stride"), 0));

  // The fixture's inputs are the procedural ones.
  const at::Tensor& eval_input = find(t, "eval.input");
  const at::Tensor& train_input = find(t, "train.input");
  const at::Tensor& train_label = find(t, "train.label");
  out.push_back(compare_abs("inputs procedural",
                            at::cat({procedural_input("input.eval", eval_input.sizes().vec()).flatten(),
                                     procedural_input("input.train", train_input.sizes().vec()).flatten()}),
                            at::cat({eval_input.flatten(), train_input.flatten()}), 0));
  out.push_back(compare_abs("label procedural", procedural_label("label.train", train_label.sizes().vec()),
                            train_label, 0));

  // Eval: feature-resolution log-probabilities, then the full-size inference path.
  model.set_training(false);
  const auto features = model.forward_features(eval_input);
  out.push_back(compare_logprob("eval.logprob", features.logprob, find(t, "eval.logprob")));
  if (has(t, "eval.logprob_deepsup"))
    out.push_back(compare_logprob("eval.logprob_deepsup", features.logprob_deepsup, find(t, "eval.logprob_deepsup")));
  {
    const at::Tensor probs = model.forward_probs(eval_input, eval_input.size(2), eval_input.size(3));
    const auto [prob, pred] = probs.max(1);
    out.push_back(compare_pred(pred, find(t, "eval.pred"), find(t, "eval.pred_margin")));
    out.push_back(compare_abs("eval.pred_prob", prob, find(t, "eval.pred_prob"), 1e-4));
  }

  // Train: three steps on the same batch; losses/accuracies are measured before each update.
  model.set_training(true);
  TrainStepOptions step;
  step.lr_encoder = step.lr_decoder = 0.02;
  step.momentum = 0.9;
  step.weight_decay = 1e-4;
  step.deep_sup_scale = 0.4;
  for (int i = 1; i <= 3; ++i) {
    const TrainStepResult s = model.train_step(train_input, train_label, step);
    const std::string n = std::to_string(i);
    out.push_back(compare_scalar("train.loss" + n, s.loss, meta(file.metadata, "train.loss" + n), 1e-4));
    out.push_back(compare_scalar("train.acc" + n, s.accuracy, meta(file.metadata, "train.acc" + n), 1e-4));
    if (i == 1) {
      out.push_back(compare_scalar("train.grad_norm_encoder1", s.grad_norm_encoder,
                                   meta(file.metadata, "train.grad_norm_encoder1"), 1e-3));
      out.push_back(compare_scalar("train.grad_norm_decoder1", s.grad_norm_decoder,
                                   meta(file.metadata, "train.grad_norm_decoder1"), 1e-3));
    }
  }
  double running_mean_sum = 0;
  for (const auto& [name, value] : model.state_dict()) {
    const std::string suffix = ".running_mean";
    if (name.rfind("encoder.", 0) == 0 && name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        name.find("._tmp_running_mean") == std::string::npos)
      running_mean_sum += value.to(at::kDouble).sum().item<double>();
  }
  out.push_back(compare_scalar("train.encoder_running_mean_sum", running_mean_sum,
                               meta(file.metadata, "train.encoder_running_mean_sum"), 1e-4));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace segtool::nn
