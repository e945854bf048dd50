// Tensor files: safetensors (and, through native/io, PyTorch .pth) read and written off the
// main thread.
#include "binding/io.h"

#include "binding/async.h"
#include "binding/tensor.h"
#include "io/pth.h"
#include "io/safetensors.h"

namespace segtool::binding {

namespace {
struct LoadedFile {
  io::NamedTensors tensors;
  std::map<std::string, std::string> metadata;
};

Napi::Object string_map_to_js(Napi::Env env, const std::map<std::string, std::string>& map) {
  Napi::Object out = Napi::Object::New(env);
  for (const auto& [k, v] : map) out.Set(k, v);
  return out;
}
}  // namespace

Napi::Value named_tensors_to_js(Napi::Env env, io::NamedTensors& tensors) {
  Napi::Array out = Napi::Array::New(env, tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, Napi::String::New(env, tensors[i].first));
    pair.Set(1u, TensorHandle::wrap(env, std::move(tensors[i].second)));
    out.Set(static_cast<uint32_t>(i), pair);
  }
  return out;
}

// {tensors: [name, TensorHandle][], metadata: {...}}
static Napi::Value loaded_file_to_js(Napi::Env env, LoadedFile& file) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("tensors", named_tensors_to_js(env, file.tensors));
  out.Set("metadata", string_map_to_js(env, file.metadata));
  return out;
}

io::NamedTensors named_tensors_from_js(Napi::Value value, const char* what) {
  Napi::Env env = value.Env();
  if (!value.IsArray()) throw_error(env, "ERR_INVALID_ARG", std::string("Expected an array of [name, Tensor] for ") + what);
  auto array = value.As<Napi::Array>();
  io::NamedTensors out;
  out.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value entry = array.Get(i);
    if (!entry.IsArray() || entry.As<Napi::Array>().Length() != 2 || !entry.As<Napi::Array>().Get(0u).IsString())
      throw_error(env, "ERR_INVALID_ARG", std::string("Expected [name, Tensor] pairs in ") + what);
    auto pair = entry.As<Napi::Array>();
    out.emplace_back(pair.Get(0u).As<Napi::String>().Utf8Value(), TensorHandle::unwrap(pair.Get(1u), what));
  }
  return out;
}

std::map<std::string, std::string> string_map_from_js(Napi::Value value) {
  std::map<std::string, std::string> out;
  if (!value.IsObject()) return out;
  Napi::Object object = value.As<Napi::Object>();
  Napi::Array keys = object.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    std::string key = keys.Get(i).As<Napi::String>().Utf8Value();
    out[key] = object.Get(key).ToString().Utf8Value();
  }
  return out;
}

// readSafetensors(path) -> Promise<{tensors: [name, TensorHandle][], metadata}>
Napi::Value read_safetensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  return run_async<LoadedFile>(
      env,
      [path] {
        io::SafetensorsFile file = io::read_safetensors(path);
        return LoadedFile{std::move(file.tensors), std::move(file.metadata)};
      },
      loaded_file_to_js);
}

// writeSafetensors(path, [name, TensorHandle][], metadata) -> Promise<void>
Napi::Value write_safetensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  io::NamedTensors tensors = named_tensors_from_js(info[1], "tensors");
  auto metadata = string_map_from_js(info[2]);
  return run_async<bool>(
      env,
      [path, tensors = std::move(tensors), metadata] {
        io::write_safetensors(path, tensors, metadata);
        return true;
      },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

// readPth(path, key) -> Promise<{tensors, metadata: {format, statePath}}>: the state dict of a
// PyTorch checkpoint (zip or legacy format), "module." prefixes stripped.
Napi::Value read_pth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string key = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  return run_async<LoadedFile>(
      env,
      [path, key] {
        io::PthFile file = io::read_pth(path);
        std::string where;
        const io::PyValue* dict = io::find_state_dict(file.root, key, &where);
        if (!dict) {
          // read_state_dict explains what the file holds instead.
          io::read_state_dict(path, key);
          throw io::FormatError(path + ": no state dict found");
        }
        LoadedFile out{io::named_tensors_of(*dict, path), {}};
        out.metadata["format"] = file.format == io::PthFormat::Zip ? "zip" : "legacy";
        out.metadata["statePath"] = where;
        return out;
      },
      loaded_file_to_js);
}

// writePth(path, [name, TensorHandle][]) -> Promise<void>: torch.save(OrderedDict) format, atomic.
Napi::Value write_pth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  io::NamedTensors tensors = named_tensors_from_js(info[1], "tensors");
  return run_async<bool>(
      env,
      [path, tensors = std::move(tensors)] {
        io::write_pth(path, tensors);
        return true;
      },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

}  // namespace segtool::binding
