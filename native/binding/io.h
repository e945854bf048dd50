#pragma once
#include <napi.h>

#include <map>
#include <string>

#include "io/named_tensors.h"

namespace segtool::binding {

io::NamedTensors named_tensors_from_js(Napi::Value value, const char* what);
std::map<std::string, std::string> string_map_from_js(Napi::Value value);

Napi::Value read_safetensors(const Napi::CallbackInfo& info);
Napi::Value write_safetensors(const Napi::CallbackInfo& info);

}  // namespace segtool::binding
