#pragma once
#include <napi.h>

#include <memory>

namespace segtool::dist {
class Communicator;
}

namespace segtool::binding {

// The communicator behind a JS CommunicatorHandle, shared: whoever keeps it (e.g. a model whose
// SyncBN layers and gradient all-reduce use it) keeps it alive after the handle's destroy().
// Throws ERR_INVALID_ARG for other values, ERR_DISPOSED after destroy().
std::shared_ptr<dist::Communicator> communicator_from_js(Napi::Value value, const char* what);

// Adds CommunicatorHandle, createCommunicator, distBackends, syncBatchNorm and atenBatchNorm
// (declared in lib/native.ts) to `exports`.
void register_dist_exports(Napi::Env env, Napi::Object exports);

}  // namespace segtool::binding
