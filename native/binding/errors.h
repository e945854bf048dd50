// Maps C++ exceptions to SegtoolError. The JS class is handed to native at load (setErrorClass),
// so errors thrown here are `instanceof SegtoolError` and carry `.code`.
#pragma once
#include <napi.h>

#include <exception>
#include <string>

namespace segtool::binding {

// A captured failure: safe to build off the main thread, turned into a JS error on it.
struct Failure {
  std::string code;     // e.g. ERR_NATIVE, ERR_BAD_FILE, ERR_INVALID_ARG
  std::string message;  // never contains a C++ backtrace
};

// Classifies the exception currently being handled (call inside a catch block).
Failure capture_current_exception();

Napi::Error make_error(Napi::Env env, const Failure& failure);
[[noreturn]] void throw_error(Napi::Env env, const std::string& code, const std::string& message);

// Runs `body`; any C++ exception becomes a thrown SegtoolError (never an abort).
template <typename F>
auto guarded(Napi::Env env, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw make_error(env, capture_current_exception());
  }
}

}  // namespace segtool::binding
