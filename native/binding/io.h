#pragma once
#include <napi.h>

#include <map>
#include <string>

#include "io/named_tensors.h"

namespace segtool::binding {

io::NamedTensors named_tensors_from_js(Napi::Value value, const char* what);
// [name, TensorHandle][]; the handles take over the tensors.
Napi::Value named_tensors_to_js(Napi::Env env, io::NamedTensors& tensors);
std::map<std::string, std::string> string_map_from_js(Napi::Value value);

Napi::Value read_safetensors(const Napi::CallbackInfo& info);
Napi::Value write_safetensors(const Napi::CallbackInfo& info);
Napi::Value read_pth(const Napi::CallbackInfo& info);
Napi::Value write_pth(const Napi::CallbackInfo& info);

}  // namespace segtool::binding
