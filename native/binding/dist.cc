// CommunicatorHandle: the JS face of one dist::Communicator, plus syncBatchNorm/atenBatchNorm
// (SyncBN forward and backward in one call, for tests). Collectives block the compute thread
// (binding/async.h) until every rank has taken part; lib/distributed orders the calls of one communicator (every rank
// must issue the same sequence). A dist::DistError rejects with ERR_DISTRIBUTED (errors.cc).
#include "binding/dist.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <chrono>
#include <functional>
#include <memory>

#include "binding/async.h"
#include "binding/errors.h"
#include "binding/tensor.h"
#include "distributed/communicator.h"
#include "ops/sync_batch_norm.h"

namespace segtool::binding {
namespace {

constexpr napi_type_tag kCommunicatorTag = {0x6c0d3a91d15c0a11ULL, 0x2b5e8f0417c6d9e3ULL};

using CommPtr = std::shared_ptr<dist::Communicator>;

Napi::Value undefined_result(Napi::Env env, bool&) { return env.Undefined(); }

std::vector<at::Tensor> tensor_list(Napi::Value value, const char* what) {
  if (!value.IsArray()) throw_error(value.Env(), "ERR_INVALID_ARG", std::string("Expected an array of tensors for ") + what);
  auto list = value.As<Napi::Array>();
  std::vector<at::Tensor> tensors;
  for (uint32_t i = 0; i < list.Length(); ++i) tensors.push_back(TensorHandle::unwrap(list.Get(i), what));
  return tensors;
}

class CommunicatorHandle : public Napi::ObjectWrap<CommunicatorHandle> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "CommunicatorHandle",
                       {
                           InstanceMethod<&CommunicatorHandle::all_reduce>("allReduce"),
                           InstanceMethod<&CommunicatorHandle::broadcast>("broadcast"),
                           InstanceMethod<&CommunicatorHandle::all_gather>("allGather"),
                           InstanceMethod<&CommunicatorHandle::barrier>("barrier"),
                           InstanceMethod<&CommunicatorHandle::destroy>("destroy"),
                           InstanceAccessor<&CommunicatorHandle::rank>("rank"),
                           InstanceAccessor<&CommunicatorHandle::world_size>("worldSize"),
                           InstanceAccessor<&CommunicatorHandle::backend>("backend"),
                           InstanceAccessor<&CommunicatorHandle::in_flight>("inFlight"),
                           InstanceAccessor<&CommunicatorHandle::destroyed>("destroyed"),
                       });
  }

  explicit CommunicatorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CommunicatorHandle>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw_error(info.Env(), "ERR_INVALID_ARG", "CommunicatorHandle cannot be constructed from JS; use createCommunicator()");
    comm_ = *info[0].As<Napi::External<CommPtr>>().Data();
    rank_ = comm_->rank();
    world_size_ = comm_->world_size();
    backend_ = dist::backend_name(comm_->options().backend);
    info.This().As<Napi::Object>().TypeTag(&kCommunicatorTag);
  }

  static CommunicatorHandle* unwrap(Napi::Value value, const char* what) {
    if (!value.IsObject() || !value.As<Napi::Object>().CheckTypeTag(&kCommunicatorTag))
      throw_error(value.Env(), "ERR_INVALID_ARG", std::string("Expected a communicator for ") + what);
    return CommunicatorHandle::Unwrap(value.As<Napi::Object>());
  }

  CommPtr shared(Napi::Env env) const {
    if (!comm_) throw_error(env, "ERR_DISPOSED", "The communicator was destroyed");
    return comm_;
  }

  // Queues `work` on the communicator, pinning it (and this handle) until it settles.
  template <typename Result>
  Napi::Value run(Napi::Env env, std::function<Result(dist::Communicator&)> work,
                  typename PromiseWorker<Result>::Finish finish) {
    return run_pinned<Result>(env, *this, in_flight_, shared(env), std::move(work), std::move(finish));
  }

 private:
  // allReduce(tensors) -> Promise<void>: sums in place over all ranks.
  Napi::Value all_reduce(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<at::Tensor> tensors = tensor_list(info[0], "allReduce tensors");
    return run<bool>(
        env,
        [tensors = std::move(tensors)](dist::Communicator& c) {
          c.all_reduce_sum(tensors);
          return true;
        },
        undefined_result);
  }

  // broadcast(tensors, root) -> Promise<void>: rank root's values, in place on every rank.
  Napi::Value broadcast(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<at::Tensor> tensors = tensor_list(info[0], "broadcast tensors");
    const int root = info[1].As<Napi::Number>().Int32Value();
    return run<bool>(
        env,
        [tensors = std::move(tensors), root](dist::Communicator& c) {
          c.broadcast(tensors, root);
          return true;
        },
        undefined_result);
  }

  // allGather(tensor) -> Promise<Tensor> of shape [worldSize, ...tensor.shape].
  Napi::Value all_gather(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    at::Tensor value = TensorHandle::unwrap(info[0], "allGather value");
    return run<at::Tensor>(
        env, [value](dist::Communicator& c) { return c.all_gather(value); },
        [](Napi::Env env, at::Tensor& t) -> Napi::Value { return TensorHandle::wrap(env, std::move(t)); });
  }

  Napi::Value barrier(const Napi::CallbackInfo& info) {
    return run<bool>(
        info.Env(),
        [](dist::Communicator& c) {
          c.barrier();
          return true;
        },
        undefined_result);
  }

  // destroy() -> Promise<void>: a last barrier (so no rank tears down while another still
  // talks to it), then the group and store close off the main thread. Idempotent.
  Napi::Value destroy(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (in_flight_ > 0)
      throw_error(env, "ERR_BUSY",
                  "Cannot destroy the communicator while " + std::to_string(in_flight_) + " call(s) run; await them first");
    CommPtr comm = std::move(comm_);
    return run_async<bool>(
        env,
        [comm]() mutable {
          if (comm && !comm->failed()) {
            try {
              comm->barrier();
            } catch (const std::exception&) {
              // A rank already gone: nothing left to synchronise with.
            }
          }
          comm.reset();
          return true;
        },
        undefined_result);
  }

  Napi::Value rank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), rank_); }
  Napi::Value world_size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), world_size_); }
  Napi::Value backend(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), backend_); }
  Napi::Value in_flight(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), in_flight_); }
  Napi::Value destroyed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !comm_); }

  CommPtr comm_;
  int rank_ = 0, world_size_ = 1;
  std::string backend_;
  int in_flight_ = 0;
};

// createCommunicator({rank, worldSize, masterAddr, masterPort, storeFile?, timeoutMs, backend, bucketBytes})
// -> Promise<CommunicatorHandle>, settled once every rank has joined.
Napi::Value create_communicator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* constructor = static_cast<Napi::FunctionReference*>(info.Data());
  Napi::Object o = info[0].As<Napi::Object>();
  dist::CommunicatorOptions options;
  options.rank = o.Get("rank").As<Napi::Number>().Int32Value();
  options.world_size = o.Get("worldSize").As<Napi::Number>().Int32Value();
  options.master_addr = o.Get("masterAddr").As<Napi::String>().Utf8Value();
  options.master_port = o.Get("masterPort").As<Napi::Number>().Int32Value();
  if (o.Get("storeFile").IsString()) options.store_file = o.Get("storeFile").As<Napi::String>().Utf8Value();
  options.timeout = std::chrono::milliseconds(o.Get("timeoutMs").As<Napi::Number>().Int64Value());
  options.backend = o.Get("backend").As<Napi::String>().Utf8Value() == "nccl" ? dist::Backend::Nccl : dist::Backend::Gloo;
  if (o.Get("bucketBytes").IsNumber()) options.bucket_bytes = o.Get("bucketBytes").As<Napi::Number>().Int64Value();
  return run_async<CommPtr>(
      env, [options] { return std::make_shared<dist::Communicator>(options); },
      [constructor](Napi::Env env, CommPtr& comm) -> Napi::Value {
        return constructor->New({Napi::External<CommPtr>::New(env, &comm)});
      });
}

// distBackends() -> the backends this build can create ("gloo", "nccl").
Napi::Value dist_backends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  if (dist::backend_available(dist::Backend::Gloo)) out.Set(n++, "gloo");
  if (dist::backend_available(dist::Backend::Nccl)) out.Set(n++, "nccl");
  return out;
}

enum class BatchNormImpl { Exact, Reference, Aten };

struct BatchNormArgs {
  at::Tensor input, weight, bias, running_mean, running_var, grad_output;
  ops::ReferenceBuffers reference;
  double momentum = 0.1, eps = 1e-5;
  BatchNormImpl impl = BatchNormImpl::Exact;
};

struct BatchNormResult {
  at::Tensor output, grad_input, grad_weight, grad_bias;
};

at::Tensor optional_tensor(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsUndefined() || v.IsNull() ? at::Tensor() : TensorHandle::unwrap(v, key);
}

BatchNormArgs batch_norm_args(Napi::Object o, BatchNormImpl impl) {
  BatchNormArgs a;
  a.impl = impl;
  a.input = TensorHandle::unwrap(o.Get("input"), "input");
  a.grad_output = TensorHandle::unwrap(o.Get("gradOutput"), "gradOutput");
  a.weight = optional_tensor(o, "weight");
  a.bias = optional_tensor(o, "bias");
  a.running_mean = optional_tensor(o, "runningMean");
  a.running_var = optional_tensor(o, "runningVar");
  a.reference = {optional_tensor(o, "tmpRunningMean"), optional_tensor(o, "tmpRunningVar"), optional_tensor(o, "runningIter")};
  a.momentum = o.Get("momentum").As<Napi::Number>().DoubleValue();
  a.eps = o.Get("eps").As<Napi::Number>().DoubleValue();
  return a;
}

// Forward in training mode, then the backward of sum(output * gradOutput). The running
// buffers given are updated in place; input, weight and bias are not touched.
BatchNormResult batch_norm_forward_backward(const BatchNormArgs& a, dist::Communicator* comm) {
  auto leaf = [](const at::Tensor& t) { return t.defined() ? t.detach().clone().requires_grad_(true) : at::Tensor(); };
  at::Tensor x = leaf(a.input), w = leaf(a.weight), b = leaf(a.bias);
  at::Tensor y;
  if (a.impl == BatchNormImpl::Aten) {
    y = at::batch_norm(x, w, b, a.running_mean, a.running_var, /*training=*/true, a.momentum, a.eps,
                       /*cudnn_enabled=*/false);
  } else {
    const bool reference = a.impl == BatchNormImpl::Reference;
    y = ops::sync_batch_norm(x, w, b, a.running_mean, a.running_var, a.momentum, a.eps, comm,
                             reference ? ops::SyncBatchNormMode::Reference : ops::SyncBatchNormMode::Exact,
                             reference ? &a.reference : nullptr);
  }
  std::vector<at::Tensor> inputs{x};
  if (w.defined()) inputs.push_back(w);
  if (b.defined()) inputs.push_back(b);
  auto grads = torch::autograd::grad({y}, inputs, {a.grad_output}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
  BatchNormResult r{y.detach(), grads[0], at::Tensor(), at::Tensor()};
  size_t next = 1;
  if (w.defined()) r.grad_weight = grads[next++];
  if (b.defined()) r.grad_bias = grads[next++];
  return r;
}

Napi::Value batch_norm_result_to_js(Napi::Env env, BatchNormResult& r) {
  Napi::Object out = Napi::Object::New(env);
  auto put = [&](const char* key, at::Tensor& t) {
    if (t.defined()) out.Set(key, TensorHandle::wrap(env, std::move(t)));
  };
  put("output", r.output);
  put("gradInput", r.grad_input);
  put("gradWeight", r.grad_weight);
  put("gradBias", r.grad_bias);
  return out;
}

// syncBatchNorm(communicator | null, {input, weight, bias, runningMean, runningVar, gradOutput,
//   momentum, eps, mode: 'exact' | 'reference', tmpRunningMean, tmpRunningVar, runningIter})
// -> Promise<{output, gradInput, gradWeight, gradBias}>
Napi::Value sync_batch_norm_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[1].As<Napi::Object>();
  const bool reference = o.Get("mode").IsString() && o.Get("mode").As<Napi::String>().Utf8Value() == "reference";
  BatchNormArgs args = batch_norm_args(o, reference ? BatchNormImpl::Reference : BatchNormImpl::Exact);
  if (info[0].IsNull() || info[0].IsUndefined()) {
    return run_async<BatchNormResult>(
        env, [args] { return batch_norm_forward_backward(args, nullptr); }, batch_norm_result_to_js);
  }
  return CommunicatorHandle::unwrap(info[0], "syncBatchNorm communicator")
      ->run<BatchNormResult>(
          env, [args](dist::Communicator& c) { return batch_norm_forward_backward(args, &c); }, batch_norm_result_to_js);
}

// atenBatchNorm({...same fields}) -> the same result from at::batch_norm: the ground truth
// SyncBN is compared with.
Napi::Value aten_batch_norm_js(const Napi::CallbackInfo& info) {
  BatchNormArgs args = batch_norm_args(info[0].As<Napi::Object>(), BatchNormImpl::Aten);
  return run_async<BatchNormResult>(
      info.Env(), [args] { return batch_norm_forward_backward(args, nullptr); }, batch_norm_result_to_js);
}

}  // namespace

std::shared_ptr<dist::Communicator> communicator_from_js(Napi::Value value, const char* what) {
  return CommunicatorHandle::unwrap(value, what)->shared(value.Env());
}

void register_dist_exports(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor = CommunicatorHandle::define(env);
  // Per environment (main thread, each worker thread): freed when that environment exits.
  auto* constructor_ref = new Napi::FunctionReference(Napi::Persistent(constructor));
  env.AddCleanupHook([constructor_ref] { delete constructor_ref; });
  exports.Set("CommunicatorHandle", constructor);
  exports.Set("createCommunicator", Napi::Function::New<create_communicator>(env, "createCommunicator", constructor_ref));
  exports.Set("distBackends", Napi::Function::New<dist_backends>(env, "distBackends"));
  exports.Set("syncBatchNorm", Napi::Function::New<sync_batch_norm_js>(env, "syncBatchNorm"));
  exports.Set("atenBatchNorm", Napi::Function::New<aten_batch_norm_js>(env, "atenBatchNorm"));
}

}  // namespace segtool::binding
