// Per-environment addon state (main thread and each worker_thread get their own), freed by
// Node when the environment is torn down.
#pragma once
#include <napi.h>

namespace segtool::binding {

struct AddonState {
  Napi::FunctionReference error_class;   // lib/errors.ts SegtoolError
  Napi::FunctionReference tensor_class;  // TensorHandle constructor
  Napi::FunctionReference model_class;   // ModelHandle constructor

  static AddonState* get(Napi::Env env) { return env.GetInstanceData<AddonState>(); }
};

}  // namespace segtool::binding
