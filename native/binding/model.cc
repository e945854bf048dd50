// ModelHandle: the JS face of one nn::SegmentationModel. Heavy calls run on the libuv pool and
// pin the model (an in-flight count); a per-model mutex serialises native calls, and dispose()
// while work is in flight is ERR_BUSY, never a crash.
#include "binding/model.h"

#include <memory>
#include <mutex>

#include "binding/async.h"
#include "binding/dist.h"
#include "binding/errors.h"
#include "binding/io.h"
#include "binding/state.h"
#include "binding/tensor.h"
#include "nn/arch.h"
#include "nn/cancel.h"
#include "nn/model.h"
#include "nn/predict.h"
#include "nn/procedural.h"
#include "nn/slide.h"

namespace segtool::binding {
namespace {

constexpr napi_type_tag kModelTag = {0x3d1e55a0c0ffee01ULL, 0x9a7b5c3d2e1f0a11ULL};

// What in-flight work shares with the handle: the model and its lock.
struct ModelCore {
  explicit ModelCore(std::unique_ptr<nn::SegmentationModel> m) : model(std::move(m)) {}
  std::unique_ptr<nn::SegmentationModel> model;
  std::mutex mutex;
};
using CorePtr = std::shared_ptr<ModelCore>;

double number_or(Napi::Object o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}

// The outputs predict and predictSliding are asked for: {confidence, probabilities, counts, palette}.
nn::PredictOptions predict_options_of(Napi::Object o) {
  nn::PredictOptions options;
  options.confidence = !o.Get("confidence").IsBoolean() || o.Get("confidence").ToBoolean();
  options.probabilities = o.Get("probabilities").ToBoolean();
  options.counts = o.Get("counts").ToBoolean();
  if (!o.Get("palette").IsUndefined()) options.palette = TensorHandle::unwrap(o.Get("palette"), "palette");
  return options;
}

// A cancel token made by createCancelToken(), or none.
nn::CancelFlag cancel_flag_of(Napi::Value value) {
  if (!value.IsExternal()) return nullptr;
  return *value.As<Napi::External<nn::CancelFlag>>().Data();
}

Napi::Array strings_to_js(Napi::Env env, const std::vector<std::string>& list) {
  Napi::Array out = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); ++i) out.Set(static_cast<uint32_t>(i), list[i]);
  return out;
}

// Results of a model on another device, copied to the CPU on the worker thread (JS reads CPU
// memory only). Other result types carry no tensors.
void to_host(at::Tensor& t) {
  if (t.defined() && !t.is_cpu()) t = t.to(at::kCPU);
}
void to_host(nn::SegmentationModel::Features& f) {
  to_host(f.logprob);
  to_host(f.logprob_deepsup);
}
void to_host(nn::Prediction& p) {
  to_host(p.pred);
  to_host(p.prob);
  to_host(p.probabilities);
  to_host(p.logits);
}
void to_host(io::NamedTensors& tensors) {
  for (auto& entry : tensors) to_host(entry.second);
}
template <typename T>
void to_host(T&) {}

// runtime({precision, channelsLast, cudnnBenchmark}) over `base`: absent keys keep base's.
nn::RuntimeOptions runtime_from_js(Napi::Object o, nn::RuntimeOptions base) {
  if (o.Get("precision").IsString())
    base.precision = o.Get("precision").As<Napi::String>().Utf8Value() == "bf16" ? nn::Precision::Bf16 : nn::Precision::Fp32;
  if (o.Get("channelsLast").IsBoolean()) base.channels_last = o.Get("channelsLast").As<Napi::Boolean>();
  if (o.Get("cudnnBenchmark").IsBoolean()) base.cudnn_benchmark = o.Get("cudnnBenchmark").As<Napi::Boolean>();
  if (o.Get("fuse").IsBoolean()) base.fuse = o.Get("fuse").As<Napi::Boolean>();
  return base;
}

// {crop: [h, w]}-style option: element `i` of the array `key`, or `fallback`.
int64_t pair_or(Napi::Object o, const char* key, uint32_t i, int64_t fallback) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) return fallback;
  Napi::Value e = v.As<Napi::Array>().Get(i);
  return e.IsNumber() ? e.As<Napi::Number>().Int64Value() : fallback;
}

// {labels, confidence?, probabilities?, counts?, logits?} of a prediction.
Napi::Value prediction_to_js(Napi::Env env, nn::Prediction& p) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("labels", TensorHandle::wrap(env, p.pred));
  if (p.prob.defined()) out.Set("confidence", TensorHandle::wrap(env, p.prob));
  if (p.probabilities.defined()) out.Set("probabilities", TensorHandle::wrap(env, p.probabilities));
  if (p.counts.defined()) out.Set("counts", TensorHandle::wrap(env, p.counts));
  if (p.logits.defined()) out.Set("logits", TensorHandle::wrap(env, p.logits));
  if (p.colors.defined()) out.Set("colors", TensorHandle::wrap(env, p.colors));
  return out;
}

io::NamedTensors cloned(const io::NamedTensors& tensors) {
  io::NamedTensors out;
  out.reserve(tensors.size());
  for (const auto& [name, t] : tensors) out.emplace_back(name, t.detach().clone());
  return out;
}

}  // namespace

class ModelHandle : public Napi::ObjectWrap<ModelHandle> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "ModelHandle",
                       {
                           InstanceMethod<&ModelHandle::info>("info"),
                           InstanceMethod<&ModelHandle::keys>("keys"),
                           InstanceMethod<&ModelHandle::shapes>("shapes"),
                           InstanceMethod<&ModelHandle::get_tensor>("getTensor"),
                           InstanceMethod<&ModelHandle::set_tensor>("setTensor"),
                           InstanceMethod<&ModelHandle::state_dict>("stateDict"),
                           InstanceMethod<&ModelHandle::load_state_dict>("loadStateDict"),
                           InstanceMethod<&ModelHandle::set_mode>("setMode"),
                           InstanceMethod<&ModelHandle::forward_features>("forwardFeatures"),
                           InstanceMethod<&ModelHandle::forward_probs>("forwardProbs"),
                           InstanceMethod<&ModelHandle::predict>("predict"),
                           InstanceMethod<&ModelHandle::predict_sliding>("predictSliding"),
                           InstanceMethod<&ModelHandle::train_step>("trainStep"),
                           InstanceMethod<&ModelHandle::optimizer_state>("optimizerState"),
                           InstanceMethod<&ModelHandle::set_optimizer_state>("setOptimizerState"),
                           InstanceMethod<&ModelHandle::set_communicator>("setCommunicator"),
                           InstanceMethod<&ModelHandle::to_device>("to"),
                           InstanceMethod<&ModelHandle::set_runtime>("setRuntime"),
                           InstanceMethod<&ModelHandle::dispose>("dispose"),
                           InstanceAccessor<&ModelHandle::in_flight>("inFlight"),
                           InstanceAccessor<&ModelHandle::disposed>("disposed"),
                       });
  }

  explicit ModelHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelHandle>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw_error(info.Env(), "ERR_INVALID_ARG", "ModelHandle cannot be constructed from JS; use SegmentationModel.create()");
    core_ = *info[0].As<Napi::External<CorePtr>>().Data();
    info.This().As<Napi::Object>().TypeTag(&kModelTag);
  }

 private:
  // The model for a synchronous call: refused while async work holds it.
  nn::SegmentationModel& idle_model(Napi::Env env) {
    if (!core_) throw_error(env, "ERR_DISPOSED", "The model was disposed");
    if (in_flight_ > 0)
      throw_error(env, "ERR_BUSY", "The model is running " + std::to_string(in_flight_) + " call(s); await them first");
    return *core_->model;
  }

  CorePtr pinned_core(Napi::Env env) {
    if (!core_) throw_error(env, "ERR_DISPOSED", "The model was disposed");
    return core_;
  }

  // Queues `work` on the model with the lock held, pinning the model until it settles.
  template <typename Result>
  Napi::Value run(Napi::Env env, std::function<Result(nn::SegmentationModel&)> work,
                  typename PromiseWorker<Result>::Finish finish,
                  typename PromiseWorker<Result>::Cleanup cleanup = nullptr) {
    return run_pinned<Result>(env, *this, in_flight_, pinned_core(env),
                              std::function<Result(ModelCore&)>([work = std::move(work)](ModelCore& core) {
                                std::lock_guard<std::mutex> lock(core.mutex);
                                Result result = work(*core.model);
                                to_host(result);  // a CUDA model's outputs come back on the CPU
                                return result;
                              }),
                              std::move(finish), std::move(cleanup));
  }

  Napi::Value info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    nn::SegmentationModel& m = idle_model(env);
    Napi::Object out = Napi::Object::New(env);
    out.Set("encoder", m.options().encoder);
    out.Set("decoder", m.options().decoder);
    out.Set("fcDim", static_cast<double>(m.options().fc_dim));
    out.Set("numClass", static_cast<double>(m.options().num_class));
    out.Set("outputStride", static_cast<double>(m.output_stride()));
    out.Set("deepSupervision", m.has_deepsup());
    out.Set("training", m.training());
    out.Set("fixBn", m.fix_bn());
    out.Set("bnMomentum", m.options().bn_momentum);
    out.Set("bnEps", m.options().bn_eps);
    out.Set("dropout", m.options().dropout);
    out.Set("device", nn::device_name(m.device()));
    out.Set("precision", m.runtime().precision == nn::Precision::Bf16 ? "bf16" : "fp32");
    out.Set("channelsLast", m.runtime().channels_last);
    out.Set("cudnnBenchmark", m.runtime().cudnn_benchmark);
    out.Set("fuse", m.runtime().fuse);
    out.Set("fusedBuilds", static_cast<double>(m.fused_builds()));
    return out;
  }

  Napi::Value keys(const Napi::CallbackInfo& info) {
    return strings_to_js(info.Env(), idle_model(info.Env()).keys());
  }

  // shapes() -> [name, number[], dtype][] in state-dict order, without copying any data.
  Napi::Value shapes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    io::NamedTensors tensors = idle_model(env).state_dict();
    Napi::Array out = Napi::Array::New(env, tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const at::Tensor& t = tensors[i].second;
      Napi::Array dims = Napi::Array::New(env, t.dim());
      for (int64_t d = 0; d < t.dim(); ++d) dims.Set(static_cast<uint32_t>(d), static_cast<double>(t.size(d)));
      Napi::Array entry = Napi::Array::New(env, 3);
      entry.Set(0u, tensors[i].first);
      entry.Set(1u, dims);
      entry.Set(2u, dtype_name(t.scalar_type()));
      out.Set(static_cast<uint32_t>(i), entry);
    }
    return out;
  }

  Napi::Value get_tensor(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    nn::SegmentationModel& m = idle_model(env);
    std::string name = info[0].As<Napi::String>().Utf8Value();
    return guarded(env, [&]() -> Napi::Value { return TensorHandle::wrap(env, m.get_tensor(name).clone()); });
  }

  Napi::Value set_tensor(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    nn::SegmentationModel& m = idle_model(env);
    std::string name = info[0].As<Napi::String>().Utf8Value();
    at::Tensor value = TensorHandle::unwrap(info[1], "value");
    guarded(env, [&] { m.set_tensor(name, value); });
    return env.Undefined();
  }

  Napi::Value state_dict(const Napi::CallbackInfo& info) {
    return run<io::NamedTensors>(
        info.Env(), [](nn::SegmentationModel& m) { return cloned(m.state_dict()); }, named_tensors_to_js);
  }

  // loadStateDict(entries, prefix) -> Promise<{missing, unexpected}>
  Napi::Value load_state_dict(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    io::NamedTensors tensors = named_tensors_from_js(info[0], "state dict");
    std::string prefix = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    return run<nn::SegmentationModel::LoadReport>(
        env, [tensors = std::move(tensors), prefix](nn::SegmentationModel& m) { return m.load_state_dict(tensors, prefix); },
        [](Napi::Env env, nn::SegmentationModel::LoadReport& report) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("missing", strings_to_js(env, report.missing));
          out.Set("unexpected", strings_to_js(env, report.unexpected));
          return out;
        });
  }

  // setMode({training?, fixBn?, bnMomentum?, dropout?})
  Napi::Value set_mode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    nn::SegmentationModel& m = idle_model(env);
    Napi::Object o = info[0].As<Napi::Object>();
    if (o.Get("training").IsBoolean()) m.set_training(o.Get("training").As<Napi::Boolean>());
    if (o.Get("fixBn").IsBoolean()) m.set_fix_bn(o.Get("fixBn").As<Napi::Boolean>());
    if (o.Get("bnMomentum").IsNumber()) {
      double momentum = o.Get("bnMomentum").As<Napi::Number>().DoubleValue();
      m.set_bn_momentum(momentum);  // an explicit momentum applies to HRNet's encoder too
      m.set_hrnet_bn_momentum(momentum);
    }
    if (o.Get("dropout").IsNumber()) m.set_dropout(o.Get("dropout").As<Napi::Number>().DoubleValue());
    return env.Undefined();
  }

  Napi::Value forward_features(const Napi::CallbackInfo& info) {
    at::Tensor input = TensorHandle::unwrap(info[0], "input");
    return run<nn::SegmentationModel::Features>(
        info.Env(), [input](nn::SegmentationModel& m) { return m.forward_features(input); },
        [](Napi::Env env, nn::SegmentationModel::Features& f) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("logprob", TensorHandle::wrap(env, f.logprob));
          if (f.logprob_deepsup.defined()) out.Set("logprobDeepsup", TensorHandle::wrap(env, f.logprob_deepsup));
          return out;
        });
  }

  Napi::Value forward_probs(const Napi::CallbackInfo& info) {
    at::Tensor input = TensorHandle::unwrap(info[0], "input");
    int64_t h = info[1].As<Napi::Number>().Int64Value();
    int64_t w = info[2].As<Napi::Number>().Int64Value();
    return run<at::Tensor>(
        info.Env(), [input, h, w](nn::SegmentationModel& m) { return m.forward_probs(input, h, w); },
        [](Napi::Env env, at::Tensor& probs) -> Napi::Value { return TensorHandle::wrap(env, probs); });
  }

  // predict(inputs[], height, width, {flip, confidence, probabilities}) ->
  //   Promise<{labels: int32 [B, H, W], confidence?: float32 [B, H, W], probabilities?: [B, C, H, W]}>
  Napi::Value predict(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) throw_error(env, "ERR_INVALID_ARG", "predict: inputs must be an array of tensors");
    Napi::Array list = info[0].As<Napi::Array>();
    std::vector<at::Tensor> inputs;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      const std::string what = "inputs[" + std::to_string(i) + "]";
      inputs.push_back(TensorHandle::unwrap(list.Get(i), what.c_str()));
    }
    int64_t h = info[1].As<Napi::Number>().Int64Value();
    int64_t w = info[2].As<Napi::Number>().Int64Value();
    Napi::Object o = info[3].IsObject() ? info[3].As<Napi::Object>() : Napi::Object::New(env);
    const bool flip = o.Get("flip").ToBoolean();
    const nn::PredictOptions options = predict_options_of(o);
    nn::CancelFlag cancel = cancel_flag_of(o.Get("cancel"));  // kept alive by the work
    return run<nn::Prediction>(
        env,
        [inputs, h, w, flip, options, cancel](nn::SegmentationModel& m) {
          nn::PredictOptions with_flag = options;
          with_flag.cancel = cancel.get();
          return m.predict(inputs, h, w, flip, with_flag);
        },
        prediction_to_js);
  }

  // predictSliding(input, {crop: [h, w], stride: [h, w], flip, confidence, probabilities, counts, logits, cancel, onTile})
  //   -> Promise<{labels, confidence?, probabilities?, counts?, logits?: float32 [B, C, ceil(H/s), ceil(W/s)]}>
  Napi::Value predict_sliding(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    at::Tensor input = TensorHandle::unwrap(info[0], "input");
    Napi::Object o = info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
    nn::SlideOptions slide;
    slide.crop_h = pair_or(o, "crop", 0, slide.crop_h);
    slide.crop_w = pair_or(o, "crop", 1, slide.crop_w);
    slide.stride_h = pair_or(o, "stride", 0, slide.stride_h);
    slide.stride_w = pair_or(o, "stride", 1, slide.stride_w);
    slide.flip = o.Get("flip").ToBoolean();
    slide.logits = o.Get("logits").ToBoolean();
    const nn::PredictOptions options = predict_options_of(o);
    nn::CancelFlag cancel = cancel_flag_of(o.Get("cancel"));  // kept alive by the work
    // onTile(done, total): called on the main thread after each crop (never throws: TS wraps it).
    // Released on the main thread when the call settles; calls still queued then are dropped.
    std::shared_ptr<Napi::ThreadSafeFunction> on_tile;
    if (o.Get("onTile").IsFunction())
      on_tile = std::make_shared<Napi::ThreadSafeFunction>(
          Napi::ThreadSafeFunction::New(env, o.Get("onTile").As<Napi::Function>(), "segtool-slide", 0, 1));
    return run<nn::Prediction>(
        env,
        [input, slide, options, cancel, on_tile](nn::SegmentationModel& m) {
          nn::PredictOptions with_flag = options;
          with_flag.cancel = cancel.get();
          nn::TileProgress progress;
          if (on_tile) {
            progress = [on_tile](int64_t done, int64_t total) {
              on_tile->NonBlockingCall([done, total](Napi::Env env, Napi::Function f) {
                f.Call({Napi::Number::New(env, static_cast<double>(done)), Napi::Number::New(env, static_cast<double>(total))});
              });
            };
          }
          return m.predict_sliding(input, slide, with_flag, progress);
        },
        prediction_to_js,
        [on_tile] {
          if (on_tile) on_tile->Release();
        });
  }

  // trainStep(input, label, {lrEncoder, lrDecoder, momentum, weightDecay, deepSupScale})
  Napi::Value train_step(const Napi::CallbackInfo& info) {
    at::Tensor input = TensorHandle::unwrap(info[0], "input");
    at::Tensor label = TensorHandle::unwrap(info[1], "label");
    Napi::Object o = info[2].As<Napi::Object>();
    nn::TrainStepOptions options;
    options.lr_encoder = number_or(o, "lrEncoder", options.lr_encoder);
    options.lr_decoder = number_or(o, "lrDecoder", options.lr_decoder);
    options.momentum = number_or(o, "momentum", options.momentum);
    options.weight_decay = number_or(o, "weightDecay", options.weight_decay);
    options.deep_sup_scale = number_or(o, "deepSupScale", options.deep_sup_scale);
    return run<nn::TrainStepResult>(
        info.Env(),
        [input, label, options](nn::SegmentationModel& m) {
          return m.train_step(input, label.scalar_type() == at::kLong ? label : label.to(at::kLong), options);
        },
        [](Napi::Env env, nn::TrainStepResult& r) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("loss", r.loss);
          out.Set("accuracy", r.accuracy);
          out.Set("lossMain", r.loss_main);
          out.Set("lossDeepsup", r.loss_deepsup);
          out.Set("gradNormEncoder", r.grad_norm_encoder);
          out.Set("gradNormDecoder", r.grad_norm_decoder);
          return out;
        });
  }

  Napi::Value optimizer_state(const Napi::CallbackInfo& info) {
    return run<io::NamedTensors>(
        info.Env(), [](nn::SegmentationModel& m) { return cloned(m.optimizer_state()); }, named_tensors_to_js);
  }

  Napi::Value set_optimizer_state(const Napi::CallbackInfo& info) {
    io::NamedTensors state = named_tensors_from_js(info[0], "optimizer state");
    return run<bool>(
        info.Env(),
        [state = std::move(state)](nn::SegmentationModel& m) {
          m.set_optimizer_state(cloned(state));
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  }

  // setCommunicator(communicator | null, {syncBatchNorm: 'exact' | 'reference' | false}) ->
  // Promise<void>: attaches the communicator (gradient averaging, SyncBN) and copies rank 0's
  // parameters and buffers to every rank (a collective: every rank calls it). null detaches.
  Napi::Value set_communicator(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::shared_ptr<dist::Communicator> comm;
    if (!info[0].IsNull() && !info[0].IsUndefined()) comm = communicator_from_js(info[0], "setCommunicator communicator");
    Napi::Object o = info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
    const std::string sync = o.Get("syncBatchNorm").IsString() ? o.Get("syncBatchNorm").As<Napi::String>().Utf8Value() : "";
    const bool sync_bn = sync == "exact" || sync == "reference";
    const auto mode = sync == "reference" ? ops::SyncBatchNormMode::Reference : ops::SyncBatchNormMode::Exact;
    return run<bool>(
        env,
        [comm, sync_bn, mode](nn::SegmentationModel& m) {
          m.set_communicator(comm, sync_bn, mode);
          m.broadcast_state(0);
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  }

  // to(device) -> Promise<void>: parameters, buffers and momentum moved (device parsed and
  // checked here: ERR_DEVICE when this LibTorch or machine has no such device).
  Napi::Value to_device(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string spec = info[0].ToString().Utf8Value();
    const at::Device device = guarded(env, [&] { return nn::parse_device(spec); });
    return run<bool>(
        env,
        [device](nn::SegmentationModel& m) {
          nn::check_runtime(m.runtime(), device);
          m.to(device);
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  }

  // setRuntime({precision?, channelsLast?, cudnnBenchmark?}): checked against the model's device.
  Napi::Value set_runtime(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    nn::SegmentationModel& m = idle_model(env);
    const nn::RuntimeOptions runtime = runtime_from_js(info[0].As<Napi::Object>(), m.runtime());
    guarded(env, [&] { nn::check_runtime(runtime, m.device()); });
    m.set_runtime(runtime);
    return env.Undefined();
  }

  Napi::Value dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (in_flight_ > 0)
      throw_error(env, "ERR_BUSY", "Cannot dispose the model while " + std::to_string(in_flight_) + " call(s) run; await them first");
    core_.reset();
    return env.Undefined();
  }

  Napi::Value in_flight(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), in_flight_); }
  Napi::Value disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !core_); }

  CorePtr core_;
  int in_flight_ = 0;
};

Napi::Function define_model_class(Napi::Env env) { return ModelHandle::define(env); }

// createModel({encoder, decoder, fcDim, numClass, bnMomentum, bnEps, dropout, init}) -> Promise<ModelHandle>
Napi::Value create_model(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  nn::ModelOptions options;
  options.encoder = o.Get("encoder").ToString().Utf8Value();
  options.decoder = o.Get("decoder").ToString().Utf8Value();
  options.fc_dim = static_cast<int64_t>(number_or(o, "fcDim", 0));
  options.num_class = static_cast<int64_t>(number_or(o, "numClass", 150));
  if (o.Get("bnMomentum").IsNumber()) {
    // Given explicitly, it applies everywhere; by default HRNet's encoder keeps its own 0.1.
    options.bn_momentum = options.hrnet_bn_momentum = o.Get("bnMomentum").As<Napi::Number>().DoubleValue();
  }
  options.bn_eps = number_or(o, "bnEps", options.bn_eps);
  options.dropout = number_or(o, "dropout", options.dropout);
  bool procedural = o.Get("init").IsString() && o.Get("init").As<Napi::String>().Utf8Value() == "procedural";
  // Device and runtime options: checked here, so a missing CUDA rejects before any work.
  const std::string device_spec = o.Get("device").IsString() ? o.Get("device").As<Napi::String>().Utf8Value() : "cpu";
  const nn::RuntimeOptions runtime = runtime_from_js(o, nn::RuntimeOptions());
  const at::Device device = guarded(env, [&] {
    const at::Device d = nn::parse_device(device_spec);
    nn::check_runtime(runtime, d);
    return d;
  });
  return run_async<CorePtr>(
      env,
      [options, procedural, device, runtime] {
        auto model = std::make_unique<nn::SegmentationModel>(options);
        if (procedural) nn::apply_procedural_weights(*model);
        model->set_runtime(runtime);
        if (!device.is_cpu()) model->to(device);
        return std::make_shared<ModelCore>(std::move(model));
      },
      [](Napi::Env env, CorePtr& core) -> Napi::Value {
        return AddonState::get(env)->model_class.New({Napi::External<CorePtr>::New(env, &core)});
      });
}

// createCancelToken() -> an opaque token; pass it as `cancel` to predict, set it with cancelToken().
Napi::Value create_cancel_token(const Napi::CallbackInfo& info) {
  auto* flag = new nn::CancelFlag(std::make_shared<std::atomic<bool>>(false));
  return Napi::External<nn::CancelFlag>::New(info.Env(), flag, [](Napi::Env, nn::CancelFlag* f) { delete f; });
}

// cancelToken(token): work using it stops at its next check (between scales, bands and rows).
Napi::Value cancel_token(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) throw_error(info.Env(), "ERR_INVALID_ARG", "cancelToken: expected a token from createCancelToken()");
  (*info[0].As<Napi::External<nn::CancelFlag>>().Data())->store(true);
  return info.Env().Undefined();
}

// slideTiles(height, width, [cropH, cropW], [strideH, strideW], outputStride) ->
//   [y0, y1, x0, x1][]: the crops predictSliding runs (nn::slide_tiles), for compute budgets.
Napi::Value slide_tiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto num = [&](size_t i) { return info[i].As<Napi::Number>().Int64Value(); };
  const auto elem = [&](size_t i, uint32_t j) { return info[i].As<Napi::Array>().Get(j).As<Napi::Number>().Int64Value(); };
  nn::SlideOptions o;
  o.crop_h = elem(2, 0);
  o.crop_w = elem(2, 1);
  o.stride_h = elem(3, 0);
  o.stride_w = elem(3, 1);
  const std::vector<nn::SlideTile> tiles = guarded(env, [&] { return nn::slide_tiles(num(0), num(1), o, num(4)); });
  Napi::Array out = Napi::Array::New(env, tiles.size());
  for (size_t i = 0; i < tiles.size(); ++i) {
    Napi::Array t = Napi::Array::New(env, 4);
    t.Set(0u, static_cast<double>(tiles[i].y0));
    t.Set(1u, static_cast<double>(tiles[i].y1));
    t.Set(2u, static_cast<double>(tiles[i].x0));
    t.Set(3u, static_cast<double>(tiles[i].x1));
    out.Set(static_cast<uint32_t>(i), t);
  }
  return out;
}

// architectures() -> {encoders, decoders, defaultFcDim: {encoder: n}}
Napi::Value architectures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("encoders", strings_to_js(env, nn::encoder_names()));
  out.Set("decoders", strings_to_js(env, nn::decoder_names()));
  Napi::Object fc = Napi::Object::New(env);
  for (const auto& name : nn::encoder_names()) fc.Set(name, static_cast<double>(nn::default_fc_dim(name)));
  out.Set("defaultFcDim", fc);
  return out;
}

}  // namespace segtool::binding
