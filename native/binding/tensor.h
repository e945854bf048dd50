// TensorHandle: one JS object owns one at::Tensor. dispose() drops the reference; the
// finalizer is only a safety net. The live count lets tests prove there is no leak.
#pragma once
#include <ATen/ATen.h>
#include <napi.h>

#include <atomic>

namespace segtool::binding {

class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  // A new JS handle owning `tensor`.
  static Napi::Object wrap(Napi::Env env, at::Tensor tensor);
  // The tensor behind a JS handle; throws ERR_INVALID_ARG for other values, ERR_DISPOSED
  // after dispose(). `what` names the argument in the message.
  static at::Tensor unwrap(Napi::Value value, const char* what);
  static int64_t live_count() { return live_.load(); }

  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;

 private:
  Napi::Value shape(const Napi::CallbackInfo& info);
  Napi::Value dtype(const Napi::CallbackInfo& info);
  Napi::Value data(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  void release();

  at::Tensor tensor_;
  bool owns_ = false;  // counted in live_ until disposed or finalized
  static std::atomic<int64_t> live_;
};

// JS-side dtype names.
const char* dtype_name(at::ScalarType type);

// Napi entry points (exported by addon.cc).
Napi::Value tensor_from_typed_array(const Napi::CallbackInfo& info);
Napi::Value live_tensor_count(const Napi::CallbackInfo& info);

// A zero-copy typed array over a CPU tensor's memory; keeps the storage alive.
Napi::Value typed_array_view(Napi::Env env, const at::Tensor& tensor);

}  // namespace segtool::binding
