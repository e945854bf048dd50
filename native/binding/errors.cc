#include "binding/errors.h"

#include <c10/util/Exception.h>

#include <stdexcept>

#include "binding/state.h"
#include "distributed/communicator.h"
#include "io/named_tensors.h"
#include "nn/cancel.h"
#include "nn/runtime.h"

namespace segtool::binding {

namespace {
// c10 messages can still carry "Exception raised from ..." lines when built without
// what_without_backtrace support for a given error type; keep the first paragraph only.
std::string strip_backtrace(std::string message) {
  auto cut = message.find("\nException raised from");
  if (cut != std::string::npos) message.resize(cut);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return message;
}
}  // namespace

Failure capture_current_exception() {
  try {
    throw;
  } catch (const c10::Error& e) {
    return {"ERR_NATIVE", "LibTorch: " + strip_backtrace(e.what_without_backtrace())};
  } catch (const dist::DistError& e) {
    // The job failed (a rank exited or hung, the rendezvous failed), wherever it surfaced:
    // a collective call, or a SyncBN layer or gradient all-reduce inside a model's step.
    return {"ERR_DISTRIBUTED", e.what()};
  } catch (const nn::Cancelled& e) {
    return {"ERR_ABORTED", e.what()};
  } catch (const nn::DeviceError& e) {
    return {"ERR_DEVICE", e.what()};
  } catch (const io::FormatError& e) {
    return {"ERR_BAD_FILE", e.what()};
  } catch (const std::invalid_argument& e) {
    return {"ERR_INVALID_ARG", e.what()};
  } catch (const std::out_of_range& e) {
    return {"ERR_INVALID_ARG", e.what()};
  } catch (const std::bad_alloc&) {
    return {"ERR_NATIVE", "out of memory"};
  } catch (const std::exception& e) {
    return {"ERR_NATIVE", e.what()};
  } catch (...) {
    return {"ERR_NATIVE", "unknown native error"};
  }
}

Napi::Error make_error(Napi::Env env, const Failure& failure) {
  AddonState* state = AddonState::get(env);
  if (state && !state->error_class.IsEmpty()) {
    Napi::Object err = state->error_class.Value().New(
        {Napi::String::New(env, failure.code), Napi::String::New(env, failure.message)});
    return Napi::Error(env, err);
  }
  Napi::Error err = Napi::Error::New(env, failure.message);
  err.Set("code", Napi::String::New(env, failure.code));
  return err;
}

void throw_error(Napi::Env env, const std::string& code, const std::string& message) {
  throw make_error(env, Failure{code, message});
}

}  // namespace segtool::binding
