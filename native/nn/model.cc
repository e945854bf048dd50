#include "nn/model.h"

#include <ATen/core/Reduction.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "distributed/communicator.h"
#include "nn/cancel.h"
#include "nn/decoders.h"
#include "nn/encoders.h"
#include "nn/predict.h"
#include "nn/sgd.h"

namespace segtool::nn {
namespace {

std::string shape_string(at::IntArrayRef sizes) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < sizes.size(); ++i) s << (i ? ", " : "") << sizes[i];
  s << "]";
  return s.str();
}

std::unique_ptr<Encoder> make_encoder(const std::string& name, const Scope& scope) {
  if (name == "mobilenetv2dilated") return make_mobilenet_encoder(scope);
  if (name == "hrnetv2") return make_hrnet_encoder(scope);
  return make_resnet_encoder(name, scope);
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// The reference's initialisation: its encoders' own (conv normal(0, sqrt(2 / (k*k*out))),
// BN 1/0) and ModelBuilder.weights_init for decoders (Kaiming-normal convs, BN 1/1e-4);
// conv biases as nn.Conv2d's default. Released weights replace all of it.
void init_reference(Registry& registry) {
  at::NoGradGuard no_grad;
  for (auto& e : registry.entries()) {
    const bool decoder = starts_with(e.name, "decoder.");
    at::Tensor& t = e.tensor;
    switch (e.role) {
      case TensorRole::ConvWeight: {
        const double fan = decoder ? e.fan_in : t.size(0) * t.size(2) * t.size(3);
        t.normal_(0.0, std::sqrt(2.0 / fan));
        break;
      }
      case TensorRole::ConvBias: {
        const double bound = 1.0 / std::sqrt(static_cast<double>(e.fan_in));
        t.uniform_(-bound, bound);
        break;
      }
      case TensorRole::BnWeight: t.fill_(1.0); break;
      case TensorRole::BnBias: t.fill_(decoder ? 1e-4 : 0.0); break;
      case TensorRole::RunningMean:
      case TensorRole::TmpRunningMean:
      case TensorRole::NumBatchesTracked: t.zero_(); break;
      case TensorRole::RunningVar:
      case TensorRole::TmpRunningVar:
      case TensorRole::RunningIter: t.fill_(1.0); break;
    }
  }
}

}  // namespace

SegmentationModel::SegmentationModel(const ModelOptions& options) : options_(options) {
  options_.encoder = canonical_encoder(options.encoder);
  options_.decoder = canonical_decoder(options.decoder);
  if (options_.fc_dim == 0) options_.fc_dim = default_fc_dim(options_.encoder);
  if (options_.num_class < 1)
    throw std::invalid_argument("num_class must be >= 1, got " + std::to_string(options_.num_class));
  const std::string why = incompatibility(options_.encoder, options_.decoder, options_.fc_dim);
  if (!why.empty()) throw std::invalid_argument(why);
  output_stride_ = nn::output_stride(options_.encoder, options_.decoder);

  encoder_ = make_encoder(options_.encoder, Scope(&registry_, "encoder."));
  decoder_ = make_decoder(options_.decoder, Scope(&registry_, "decoder."), options_.fc_dim, options_.num_class);
  for (size_t i = 0; i < registry_.entries().size(); ++i) index_[registry_.entries()[i].name] = i;
  init_reference(registry_);
}

SegmentationModel::~SegmentationModel() = default;

void SegmentationModel::to(const at::Device& device) {
  fuse_.clear();
  at::NoGradGuard no_grad;
  // set_data keeps each tensor's identity, so the layers (which share these tensors) follow.
  for (auto& e : registry_.entries()) {
    if (is_parameter(e.role)) e.tensor.mutable_grad().reset();
    e.tensor.set_data(e.tensor.to(device));
  }
  for (auto& [name, buffer] : momentum_) buffer = buffer.to(device);
}

at::Device SegmentationModel::device() const { return registry_.entries().front().tensor.device(); }

bool SegmentationModel::has_deepsup() const { return decoder_->has_deepsup(); }

const RegistryEntry& SegmentationModel::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw std::out_of_range("no tensor '" + name + "' in " + options_.encoder + " + " + options_.decoder);
  return registry_.entries()[it->second];
}

io::NamedTensors SegmentationModel::state_dict() const {
  io::NamedTensors out;
  out.reserve(registry_.entries().size());
  for (const auto& e : registry_.entries()) out.emplace_back(e.name, e.tensor.detach());
  return out;
}

std::vector<std::string> SegmentationModel::keys() const {
  std::vector<std::string> out;
  for (const auto& e : registry_.entries()) out.push_back(e.name);
  return out;
}

bool SegmentationModel::has_tensor(const std::string& name) const { return index_.count(name) != 0; }

at::Tensor SegmentationModel::get_tensor(const std::string& name) const { return entry(name).tensor.detach(); }

void SegmentationModel::set_tensor(const std::string& name, const at::Tensor& value) {
  const RegistryEntry& e = entry(name);
  if (!value.defined() || value.sizes() != e.tensor.sizes())
    throw std::invalid_argument("tensor '" + name + "': expected shape " + shape_string(e.tensor.sizes()) +
                                ", got " + (value.defined() ? shape_string(value.sizes()) : "undefined"));
  at::NoGradGuard no_grad;  // copy_ into a leaf that requires grad
  e.tensor.copy_(value);
  fuse_.clear();
}

SegmentationModel::LoadReport SegmentationModel::load_state_dict(const io::NamedTensors& tensors,
                                                                 const std::string& prefix) {
  LoadReport report;
  std::map<std::string, bool> seen;
  for (const auto& [key, value] : tensors) {
    const std::string name = prefix + key;
    if (!has_tensor(name)) {
      report.unexpected.push_back(key);
      continue;
    }
    set_tensor(name, value);
    seen[name] = true;
  }
  for (const auto& e : registry_.entries())
    if (starts_with(e.name, prefix.c_str()) && !seen.count(e.name)) report.missing.push_back(e.name);
  return report;
}

SegmentationModel::DecoderOutputs SegmentationModel::run(const at::Tensor& input, bool training,
                                                         bool with_deepsup) {
  ForwardContext decoder_ctx{training, options_.bn_momentum, options_.bn_eps, options_.dropout};
  if (sync_bn_) {
    decoder_ctx.sync_bn = true;
    decoder_ctx.communicator = communicator_.get();
    decoder_ctx.sync_mode = sync_mode_;
  }
  // The fused graph for eval-mode inference only (never with gradients: fix_bn training steps
  // run BN in eval mode but need the unfused graph). A training forward updates the BN running
  // statistics, which the folded weights depend on.
  if (training) fuse_.clear();
  else if (runtime_.fuse && fuse_default() && c10::InferenceMode::is_enabled()) decoder_ctx.fuse = &fuse_;
  // Inputs to the model's device and memory format; bf16 autocast for this forward only.
  const ForwardScope scope(runtime_, device());
  decoder_ctx.fuse_dtype = scope.compute_dtype();
  ForwardContext encoder_ctx = decoder_ctx;
  if (options_.encoder == "hrnetv2") encoder_ctx.bn_momentum = options_.hrnet_bn_momentum;
  // Channels-last where it measured faster on the CPU (docs/performance.md): the fused inference
  // graph (1.04-1.3x), and MobileNetV2 with gradients, whose depthwise convolutions' NCHW
  // backward is a slow non-oneDNN path (training step 2.4x); ResNet/HRNet training gains
  // nothing and UPerNet's loses, so they stay as they are.
  const bool cpu = device().is_cpu();
  const bool prefer_channels_last =
      cpu && (decoder_ctx.fuse != nullptr || (at::GradMode::is_enabled() && options_.encoder == "mobilenetv2dilated"));
  DecoderOutput out = decoder_->forward(encoder_->forward(scope.input(input, prefer_channels_last), encoder_ctx),
                                        decoder_ctx, with_deepsup);
  return {scope.output(out.logits), scope.output(out.deepsup_logits)};
}

SegmentationModel::Features SegmentationModel::forward_features(const at::Tensor& input) {
  c10::InferenceMode inference;
  const DecoderOutputs out = run(input, training_, /*with_deepsup=*/true);
  Features f;
  f.logprob = at::log_softmax(out.logits, 1);
  if (out.deepsup_logits.defined()) f.logprob_deepsup = at::log_softmax(out.deepsup_logits, 1);
  return f;
}

at::Tensor SegmentationModel::forward_probs(const at::Tensor& input, int64_t out_h, int64_t out_w) {
  c10::InferenceMode inference;
  at::Tensor logits = run(input, training_, /*with_deepsup=*/false).logits;
  at::Tensor x = upsample_bilinear(logits, out_h, out_w);
  logits.reset();
  // softmax over classes in place (the same math as at::softmax) so that only one full-size
  // buffer exists.
  x.sub_(std::get<0>(x.max(1, /*keepdim=*/true)));
  x.exp_();
  x.div_(x.sum(1, /*keepdim=*/true));
  return x;
}

at::Tensor SegmentationModel::forward_logits(const at::Tensor& input) {
  c10::InferenceMode inference;
  return run(input, training_, /*with_deepsup=*/false).logits;
}

Prediction SegmentationModel::predict(const std::vector<at::Tensor>& inputs, int64_t out_h, int64_t out_w, bool flip,
                                       const PredictOptions& options) {
  c10::InferenceMode inference;
  std::vector<at::Tensor> logits;
  for (const auto& input : inputs) {
    throw_if_cancelled(options.cancel);
    logits.push_back(forward_logits(input));
    if (flip) {
      throw_if_cancelled(options.cancel);
      logits.push_back(forward_logits(input.flip({3})).flip({3}));
    }
  }
  Prediction p = predict_from_logits(logits, out_h, out_w, options);
  if (options.counts) p.counts = class_counts(p.pred, logits[0].size(1));
  // Coloured in the same job: a separate one would wait behind the next request's inference.
  if (options.palette.defined()) p.colors = colorize_labels(p.pred, options.palette);
  return p;
}

Prediction SegmentationModel::predict_sliding(const at::Tensor& input, const SlideOptions& slide,
                                               const PredictOptions& options, const TileProgress& progress) {
  c10::InferenceMode inference;
  StitchedLogits stitched = stitch_tiles(
      input, slide, output_stride_, [this](const at::Tensor& crop) { return forward_logits(crop); }, options.cancel,
      progress);
  Prediction p = predict_from_logits(stitched.canvases, input.size(2), input.size(3), options);
  if (options.counts) p.counts = class_counts(p.pred, stitched.canvases[0].size(1));
  if (slide.logits) p.logits = stitched.canvases[0];
  if (options.palette.defined()) p.colors = colorize_labels(p.pred, options.palette);
  return p;
}

double pixel_accuracy(const at::Tensor& logprob, const at::Tensor& label) {
  const at::Tensor preds = logprob.argmax(1);
  const at::Tensor valid = label.ge(0);
  const double correct = static_cast<double>(preds.eq(label).logical_and_(valid).sum().item<int64_t>());
  const double labeled = static_cast<double>(valid.sum().item<int64_t>());
  return correct / (labeled + 1e-10);
}

TrainStepResult SegmentationModel::train_step(const at::Tensor& input, const at::Tensor& label_in,
                                              const TrainStepOptions& opt) {
  const at::Tensor label = label_in.device() == device() ? label_in : label_in.to(device());
  at::AutoGradMode grad_mode(true);
  TrainStepResult result;
  fuse_.clear();  // the update changes the weights (versions would tell too)

  for (auto& e : registry_.entries())
    if (is_parameter(e.role)) e.tensor.mutable_grad().reset();  // zero_grad(set_to_none=True)

  at::Tensor loss;
  {
    const DecoderOutputs out = run(input, /*training=*/!fix_bn_, /*with_deepsup=*/true);
    const at::Tensor logprob = at::log_softmax(out.logits, 1);
    loss = at::nll_loss_nd(logprob, label, {}, at::Reduction::Mean, /*ignore_index=*/-1);
    result.loss_main = loss.item<double>();
    if (out.deepsup_logits.defined()) {
      const at::Tensor deepsup = at::log_softmax(out.deepsup_logits, 1);
      const at::Tensor loss_deepsup = at::nll_loss_nd(deepsup, label, {}, at::Reduction::Mean, -1);
      result.loss_deepsup = loss_deepsup.item<double>();
      loss = loss + loss_deepsup * opt.deep_sup_scale;
    }
    result.loss = loss.item<double>();
    result.accuracy = pixel_accuracy(logprob.detach(), label);
  }
  loss.backward();
  loss.reset();

  at::NoGradGuard no_grad;
  if (communicator_ && communicator_->world_size() > 1) average_over_ranks(result);
  double norm2_encoder = 0, norm2_decoder = 0;
  for (auto& e : registry_.entries()) {
    if (!is_parameter(e.role)) continue;
    const at::Tensor& grad = e.tensor.grad();
    if (!grad.defined()) continue;  // a parameter the graph did not reach: no update (as PyTorch)
    const double g2 = grad.pow(2).sum().item<double>();
    const bool encoder = starts_with(e.name, "encoder.");
    (encoder ? norm2_encoder : norm2_decoder) += g2;

    // Weight decay only on conv weights, as the reference's group_weight.
    const double weight_decay = e.role == TensorRole::ConvWeight ? opt.weight_decay : 0.0;
    at::Tensor& buffer = momentum_[e.name];  // undefined on the first step
    sgd_update(e.tensor, grad, buffer, encoder ? opt.lr_encoder : opt.lr_decoder, opt.momentum, weight_decay);
    if (!buffer.defined()) momentum_.erase(e.name);  // momentum 0 keeps no state
    e.tensor.mutable_grad().reset();  // free the gradient now rather than at the next step
  }
  result.grad_norm_encoder = std::sqrt(norm2_encoder);
  result.grad_norm_decoder = std::sqrt(norm2_decoder);
  return result;
}

void SegmentationModel::set_communicator(std::shared_ptr<dist::Communicator> communicator, bool sync_bn,
                                         ops::SyncBatchNormMode mode) {
  communicator_ = std::move(communicator);
  sync_mode_ = mode;
  // Exact SyncBN over a world of one is BatchNorm: the plain path stays. Without a
  // communicator, `sync_bn` asks for the op itself in this process alone (the reference's
  // formula, or the exact op's own arithmetic to compare distributed runs with).
  sync_bn_ = sync_bn && (!communicator_ || communicator_->world_size() > 1 || mode == ops::SyncBatchNormMode::Reference);
}

void SegmentationModel::broadcast_state(int root) {
  if (!communicator_ || communicator_->world_size() == 1) return;
  fuse_.clear();
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> tensors;
  tensors.reserve(registry_.entries().size());
  for (const auto& e : registry_.entries()) tensors.push_back(e.tensor.detach());
  communicator_->broadcast(tensors, root);
}

void SegmentationModel::average_over_ranks(TrainStepResult& result) {
  // Every rank's graph reaches the same parameters, so the lists (and buckets) match.
  std::vector<at::Tensor> grads;
  for (auto& e : registry_.entries()) {
    if (is_parameter(e.role) && e.tensor.grad().defined()) grads.push_back(e.tensor.mutable_grad());
  }
  communicator_->all_reduce_mean(grads);
  // On the model's device: NCCL reduces CUDA tensors only.
  at::Tensor values = at::tensor(std::vector<double>{result.loss, result.accuracy, result.loss_main, result.loss_deepsup},
                                 at::TensorOptions().dtype(at::kDouble))
                          .to(device());
  communicator_->all_reduce_mean({values});
  values = values.cpu();
  const double* v = values.data_ptr<double>();
  result.loss = v[0];
  result.accuracy = v[1];
  result.loss_main = v[2];
  result.loss_deepsup = v[3];
}

io::NamedTensors SegmentationModel::optimizer_state() const {
  io::NamedTensors out;
  for (const auto& e : registry_.entries()) {
    auto it = momentum_.find(e.name);
    if (it != momentum_.end()) out.emplace_back(e.name, it->second);
  }
  return out;
}

void SegmentationModel::set_optimizer_state(const io::NamedTensors& state) {
  std::map<std::string, at::Tensor> buffers;
  for (const auto& [name, value] : state) {
    auto it = index_.find(name);
    if (it == index_.end() || !is_parameter(registry_.entries()[it->second].role))
      throw std::invalid_argument("optimizer state '" + name + "' is not a parameter of this model");
    const at::Tensor& p = registry_.entries()[it->second].tensor;
    if (value.sizes() != p.sizes())
      throw std::invalid_argument("optimizer state '" + name + "': expected shape " + shape_string(p.sizes()) +
                                  ", got " + shape_string(value.sizes()));
    buffers[name] = value.detach().to(p.device(), p.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
  }
  momentum_ = std::move(buffers);
}

}  // namespace segtool::nn
