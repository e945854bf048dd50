#include "binding/tensor.h"

#include <cstring>

#include "binding/errors.h"
#include "binding/state.h"

namespace segtool::binding {

std::atomic<int64_t> TensorHandle::live_{0};

namespace {
// Tags every wrapped tensor so unwrap() never misreads another object's native pointer.
constexpr napi_type_tag kTensorTag = {0x5e97001a2b3c4d5eULL, 0x7e4504a1b2c3d4e5ULL};

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
  napi_typedarray_type array;
};
constexpr DtypeInfo kDtypes[] = {
    {"float32", at::kFloat, napi_float32_array}, {"float64", at::kDouble, napi_float64_array},
    {"int32", at::kInt, napi_int32_array},       {"int64", at::kLong, napi_bigint64_array},
    {"uint8", at::kByte, napi_uint8_array},      {"int16", at::kShort, napi_int16_array},
};

const DtypeInfo* find_dtype(at::ScalarType type) {
  for (const auto& d : kDtypes)
    if (d.type == type) return &d;
  return nullptr;
}
const DtypeInfo* find_dtype(napi_typedarray_type array) {
  for (const auto& d : kDtypes)
    if (d.array == array) return &d;
  if (array == napi_uint8_clamped_array) return find_dtype(at::kByte);
  return nullptr;
}
const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}
}  // namespace

const char* dtype_name(at::ScalarType type) {
  const DtypeInfo* d = find_dtype(type);
  return d ? d->name : c10::toString(type);
}

Napi::Function TensorHandle::define(Napi::Env env) {
  return DefineClass(env, "TensorHandle",
                     {
                         InstanceAccessor<&TensorHandle::shape>("shape"),
                         InstanceAccessor<&TensorHandle::dtype>("dtype"),
                         InstanceAccessor<&TensorHandle::disposed>("disposed"),
                         InstanceMethod<&TensorHandle::data>("data"),
                         InstanceMethod<&TensorHandle::dispose>("dispose"),
                     });
}

TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw_error(info.Env(), "ERR_INVALID_ARG", "TensorHandle cannot be constructed from JS; use Tensor.from()");
  tensor_ = std::move(*info[0].As<Napi::External<at::Tensor>>().Data());
  owns_ = true;
  ++live_;
  info.This().As<Napi::Object>().TypeTag(&kTensorTag);
}

TensorHandle::~TensorHandle() { release(); }

void TensorHandle::release() {
  tensor_ = at::Tensor();  // drop our reference; views and in-flight work keep their own
  if (owns_) {
    owns_ = false;
    --live_;
  }
}

Napi::Object TensorHandle::wrap(Napi::Env env, at::Tensor tensor) {
  AddonState* state = AddonState::get(env);
  return state->tensor_class.New({Napi::External<at::Tensor>::New(env, &tensor)});
}

at::Tensor TensorHandle::unwrap(Napi::Value value, const char* what) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().CheckTypeTag(&kTensorTag))
    throw_error(env, "ERR_INVALID_ARG", std::string("Expected a Tensor for ") + what);
  TensorHandle* handle = TensorHandle::Unwrap(value.As<Napi::Object>());
  if (!handle->tensor_.defined())
    throw_error(env, "ERR_DISPOSED", std::string("The Tensor given for ") + what + " was disposed");
  return handle->tensor_;
}

Napi::Value TensorHandle::shape(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!tensor_.defined()) throw_error(env, "ERR_DISPOSED", "Tensor was disposed");
  Napi::Array out = Napi::Array::New(env, tensor_.dim());
  for (int64_t i = 0; i < tensor_.dim(); ++i) out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, tensor_.size(i)));
  return out;
}

Napi::Value TensorHandle::dtype(const Napi::CallbackInfo& info) {
  if (!tensor_.defined()) throw_error(info.Env(), "ERR_DISPOSED", "Tensor was disposed");
  return Napi::String::New(info.Env(), dtype_name(tensor_.scalar_type()));
}

Napi::Value TensorHandle::disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !tensor_.defined());
}

Napi::Value TensorHandle::data(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!tensor_.defined()) throw_error(env, "ERR_DISPOSED", "Tensor was disposed");
  return guarded(env, [&] { return typed_array_view(env, tensor_); });
}

Napi::Value TensorHandle::dispose(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

Napi::Value typed_array_view(Napi::Env env, const at::Tensor& tensor) {
  at::Tensor t = tensor.detach();
  if (t.scalar_type() == at::kBool) t = t.to(at::kByte);
  const DtypeInfo* d = find_dtype(t.scalar_type());
  if (!d) throw_error(env, "ERR_INVALID_ARG", std::string("Tensor dtype ") + c10::toString(t.scalar_type()) + " has no typed array");
  t = t.to(at::kCPU).contiguous();
  size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
  Napi::ArrayBuffer buffer;
  if (bytes == 0) {
    buffer = Napi::ArrayBuffer::New(env, 0);  // an external buffer over no memory reads as detached
  } else {
    auto* keep = new at::Tensor(t);  // the ArrayBuffer owns one reference to the storage
    buffer = Napi::ArrayBuffer::New(
        env, t.data_ptr(), bytes, [](Napi::Env, void*, at::Tensor* held) { delete held; }, keep);
  }
  napi_value out;
  napi_status status = napi_create_typedarray(env, d->array, static_cast<size_t>(t.numel()), buffer, 0, &out);
  NAPI_THROW_IF_FAILED(env, status, Napi::Value());
  return Napi::Value(env, out);
}

// fromTypedArray(array, shape: number[], dtype?: string) -> TensorHandle. Copies the data: the
// JS buffer may be reused by the caller as soon as this returns.
Napi::Value tensor_from_typed_array(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsArray())
    throw_error(env, "ERR_INVALID_ARG", "fromTypedArray(array, shape[, dtype]) expects a TypedArray and a shape array");
  auto array = info[0].As<Napi::TypedArray>();
  const DtypeInfo* source = find_dtype(array.TypedArrayType());
  if (!source) throw_error(env, "ERR_INVALID_ARG", "Unsupported TypedArray type for a tensor");
  auto shape_js = info[1].As<Napi::Array>();
  std::vector<int64_t> shape(shape_js.Length());
  int64_t numel = 1;
  for (uint32_t i = 0; i < shape_js.Length(); ++i) {
    shape[i] = shape_js.Get(i).As<Napi::Number>().Int64Value();
    numel *= shape[i];
  }
  if (numel != static_cast<int64_t>(array.ElementLength()))
    throw_error(env, "ERR_INVALID_ARG", "Shape holds " + std::to_string(numel) + " elements but the array has " +
                                            std::to_string(array.ElementLength()));
  return guarded(env, [&]() -> Napi::Value {
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(source->type));
    auto* base = static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
    if (array.ByteLength()) std::memcpy(t.data_ptr(), base, array.ByteLength());
    if (info.Length() > 2 && info[2].IsString()) {
      const DtypeInfo* target = find_dtype(info[2].As<Napi::String>().Utf8Value());
      if (!target) throw_error(env, "ERR_INVALID_ARG", "Unknown dtype " + info[2].As<Napi::String>().Utf8Value());
      t = t.to(target->type);
    }
    return TensorHandle::wrap(env, std::move(t));
  });
}

Napi::Value live_tensor_count(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(TensorHandle::live_count()));
}

}  // namespace segtool::binding
