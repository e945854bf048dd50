#pragma once
#include <napi.h>

namespace segtool::binding {

Napi::Function define_model_class(Napi::Env env);
Napi::Value create_model(const Napi::CallbackInfo& info);
Napi::Value architectures(const Napi::CallbackInfo& info);
Napi::Value create_cancel_token(const Napi::CallbackInfo& info);
Napi::Value cancel_token(const Napi::CallbackInfo& info);
Napi::Value slide_tiles(const Napi::CallbackInfo& info);

}  // namespace segtool::binding
