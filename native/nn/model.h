// SegmentationModel: encoder + decoder of the reference (CSAIL semantic-segmentation-pytorch),
// its state dict, inference, and one SGD training step.
//
// Threading: a model is not thread-safe; run one call at a time per model (the binding
// serialises them). Different models may run concurrently. Grad mode / InferenceMode are
// thread-local and set inside each call, so any worker thread works.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/named_tensors.h"
#include "nn/arch.h"
#include "nn/fuse.h"
#include "nn/layers.h"
#include "nn/predict.h"
#include "nn/runtime.h"
#include "nn/slide.h"

namespace segtool::nn {

class Encoder;
class Decoder;

struct ModelOptions {
  std::string encoder, decoder;  // names or aliases (arch.h)
  int64_t fc_dim = 0;            // 0 = default_fc_dim(encoder)
  int64_t num_class = 150;
  double bn_momentum = 0.001;    // the reference's SyncBN default; short runs want ~0.1
  double hrnet_bn_momentum = 0.1;  // hrnetv2's encoder: hrnet.py builds its BNs with BN_MOMENTUM 0.1
  double bn_eps = 1e-5;
  double dropout = 0.1;          // Dropout2d of the PPM heads (training only)
};

struct TrainStepOptions {
  double lr_encoder = 0.02, lr_decoder = 0.02;
  double momentum = 0.9;
  double weight_decay = 1e-4;  // conv weights only (ndim > 1), as the reference's group_weight
  double deep_sup_scale = 0.4;
};

struct TrainStepResult {
  double loss = 0;          // loss + deep_sup_scale * loss_deepsup, before the update
  double accuracy = 0;      // pixel accuracy of the main head: correct / (labeled + 1e-10)
  double loss_main = 0;
  double loss_deepsup = 0;  // 0 without a deep-supervision head
  double grad_norm_encoder = 0;  // L2 norm of all encoder gradients of this step
  double grad_norm_decoder = 0;  // (gradients are freed after the update)
};

class SegmentationModel {
 public:
  // Throws std::invalid_argument for unknown names and incompatible pairs (the message says why).
  // Weights start as the reference initialises them (conv Kaiming-normal, BN 1/0 (decoder
  // bias 1e-4), running stats 0/1), drawn from ATen's default generator.
  explicit SegmentationModel(const ModelOptions& options);
  ~SegmentationModel();
  SegmentationModel(const SegmentationModel&) = delete;
  SegmentationModel& operator=(const SegmentationModel&) = delete;

  const ModelOptions& options() const { return options_; }  // names canonical, fc_dim resolved
  // Moves every parameter, buffer and momentum buffer (CPU <-> CUDA); inputs must follow.
  void to(const at::Device& device);
  at::Device device() const;
  int64_t output_stride() const { return output_stride_; }
  bool has_deepsup() const;

  // Ordered "encoder.*" then "decoder.*", exactly the reference's keys, shapes and dtypes.
  // The tensors alias the model's (detached): writing into them writes the model.
  io::NamedTensors state_dict() const;
  std::vector<std::string> keys() const;
  bool has_tensor(const std::string& name) const;
  at::Tensor get_tensor(const std::string& name) const;  // aliasing, detached; throws std::out_of_range
  // Copies `value` in (dtype converted, e.g. a float64 or a float16 file). Throws
  // std::out_of_range for an unknown key and std::invalid_argument naming the key and both
  // shapes on a shape mismatch.
  void set_tensor(const std::string& name, const at::Tensor& value);
  // Sets every tensor of `tensors` whose key, prefixed with `prefix` (e.g. "encoder." for the
  // reference's encoder_epoch_N.pth), is a model key. Returns the model keys not set and the
  // given keys not used; the caller decides whether that is an error (the reference loads
  // with strict=False). Shape mismatches throw as set_tensor.
  struct LoadReport {
    std::vector<std::string> missing, unexpected;
  };
  LoadReport load_state_dict(const io::NamedTensors& tensors, const std::string& prefix = "");

  // train(true)/eval(false) for forward_features / forward_probs. train_step always runs the
  // network in training mode unless fix_bn is set (then: whole model in eval mode).
  void set_training(bool training) { training_ = training; }
  bool training() const { return training_; }
  void set_fix_bn(bool fix_bn) { fix_bn_ = fix_bn; }
  bool fix_bn() const { return fix_bn_; }
  // Momentum of every BN layer except hrnetv2's encoder ones, which have their own (the
  // reference builds those with 0.1): set both when a user asks for one momentum everywhere.
  void set_bn_momentum(double m) { options_.bn_momentum = m; }
  void set_hrnet_bn_momentum(double m) { options_.hrnet_bn_momentum = m; }
  void set_dropout(double p) { options_.dropout = p; }
  // How forward passes run (runtime.h): inputs copied to the model's device (and channels-last
  // memory format), bf16 autocast on CUDA, cuDNN benchmark mode. check_runtime() first.
  void set_runtime(const RuntimeOptions& runtime) {
    runtime_ = runtime;
    fuse_.clear();
  }
  const RuntimeOptions& runtime() const { return runtime_; }

  // Distributed training, one process per rank (as PyTorch's DistributedDataParallel +
  // SyncBatchNorm). With a communicator attached:
  // - train_step averages the gradients over ranks (bucketed all-reduce, before the update),
  //   and the loss and accuracy it reports are averaged over ranks too (the reference's
  //   loss.mean() / acc.mean() over its GPUs);
  // - with `sync_bn`, every training-mode forward normalises with the statistics of all ranks'
  //   batches (ops::sync_batch_norm in `mode`); each BN layer is then a collective, so every
  //   rank must make the same training calls in the same order.
  // World size 1 with Exact mode is the single-process path unchanged; Reference mode applies
  // the reference's formula and buffers at any world size. nullptr detaches (with `sync_bn`:
  // the SyncBN op in this process alone). The model keeps the communicator alive while attached.
  void set_communicator(std::shared_ptr<dist::Communicator> communicator, bool sync_bn,
                        ops::SyncBatchNormMode mode = ops::SyncBatchNormMode::Exact);
  dist::Communicator* communicator() const { return communicator_.get(); }
  // Rank `root`'s parameters and buffers copied in place to every rank (a collective; a no-op
  // without a communicator): every rank starts identical.
  void broadcast_state(int root = 0);

  struct Features {
    at::Tensor logprob;          // B x num_class x h x w, log_softmax at feature resolution
    at::Tensor logprob_deepsup;  // the deep-supervision head's (in eval mode too, as the
                                 // fixtures have it); undefined for decoders without one
  };
  // input: float32 B x 3 x H x W (normalised). Runs under InferenceMode, so the outputs are
  // inference tensors (read-only outside InferenceMode). In training mode the BN running
  // statistics are updated as a training forward would.
  Features forward_features(const at::Tensor& input);
  // Logits upsampled bilinearly (align_corners=false) to out_h x out_w, then softmax over
  // classes, computed in place: one B x num_class x out_h x out_w buffer at peak.
  at::Tensor forward_probs(const at::Tensor& input, int64_t out_h, int64_t out_w);

  // Raw main-head logits at feature resolution (for multi-scale: predict_from_logits).
  at::Tensor forward_logits(const at::Tensor& input);
  // Argmax and max probability at out_h x out_w without a full-size score tensor (predict.h):
  // every input (the same image(s) at one scale each) through the network, with `flip` also
  // mirrored left-right (its logits mirrored back), the probabilities averaged over all.
  Prediction predict(const std::vector<at::Tensor>& inputs, int64_t out_h, int64_t out_w, bool flip = false,
                     const PredictOptions& options = {});
  // The same at the input's own size by sliding window (slide.h): crops of the input through
  // the network, their logits stitched at output resolution, then predict_from_logits. Memory
  // is bounded by one crop plus the C x H/s x W/s canvas; `options.cancel` is checked between
  // crops (and rows), `progress` called after each crop. With `slide.logits` the stitched
  // canvas comes back as `logits`.
  Prediction predict_sliding(const at::Tensor& input, const SlideOptions& slide, const PredictOptions& options = {},
                             const TileProgress& progress = nullptr);

  // One step: forward (training mode unless fix_bn), NLL (ignore -1) + deep_sup_scale x the
  // deep-supervision NLL, pixel accuracy, backward, SGD with momentum (PyTorch semantics).
  // label: int64 B x h x w at the decoder's output resolution, h = ceil(H / output_stride())
  // (every stride-2 layer rounds up), values in [-1, num_class) (others make ATen throw
  // c10::Error). Dropout draws from ATen's default generator (at::manual_seed seeds it).
  TrainStepResult train_step(const at::Tensor& input, const at::Tensor& label,
                             const TrainStepOptions& options);

  // SGD momentum buffers keyed by parameter name (only parameters that have one), for resume.
  io::NamedTensors optimizer_state() const;
  // Replaces all buffers; unknown names or shape mismatches throw std::invalid_argument.
  void set_optimizer_state(const io::NamedTensors& state);

 private:
  const RegistryEntry& entry(const std::string& name) const;
  // Encoder + decoder forward (raw logits) in training or eval mode.
  struct DecoderOutputs {
    at::Tensor logits, deepsup_logits;
  };
  DecoderOutputs run(const at::Tensor& input, bool training, bool with_deepsup);

  ModelOptions options_;
  int64_t output_stride_ = 0;
  bool training_ = false;
  bool fix_bn_ = false;
  Registry registry_;
  std::map<std::string, size_t> index_;  // name -> registry position
  std::unique_ptr<Encoder> encoder_;
  std::unique_ptr<Decoder> decoder_;
  std::map<std::string, at::Tensor> momentum_;  // parameter name -> SGD momentum buffer
  RuntimeOptions runtime_;
  // Folded conv weights of the fused inference graph (fuse.h), eval-mode inference only.
  FuseCache fuse_;

 public:
  // Folds computed so far (tests: the cache is built once and rebuilt after weights change).
  int64_t fused_builds() const { return fuse_.builds(); }

 private:
  // Distributed training (set_communicator).
  std::shared_ptr<dist::Communicator> communicator_;
  bool sync_bn_ = false;
  ops::SyncBatchNormMode sync_mode_ = ops::SyncBatchNormMode::Exact;
  // Gradients (and the values train_step reports) averaged over ranks.
  void average_over_ranks(TrainStepResult& result);
};

// Pixel accuracy as the reference's pixel_acc: argmax over classes equal to label, among
// label >= 0, divided by (count + 1e-10).
double pixel_accuracy(const at::Tensor& logprob, const at::Tensor& label);

}  // namespace segtool::nn
