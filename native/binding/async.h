// The one pattern for heavy native work: the caller copies inputs into plain C++ values on the
// main thread, `work` runs on the libuv pool and never touches Napi, `finish` builds the JS
// result on the main thread. Returns a Promise; C++ exceptions reject it with a SegtoolError.
#pragma once
#include <napi.h>

#include <functional>
#include <optional>

#include "binding/errors.h"

namespace segtool::binding {

// OpenMP thread counts are per thread: a libuv worker keeps the count it first saw. Every
// worker re-applies the count last set through setNumThreads before it runs work.
void apply_thread_setting();

template <typename Result>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<Result()>;
  using Finish = std::function<Napi::Value(Napi::Env, Result&)>;
  using Cleanup = std::function<void()>;

  PromiseWorker(Napi::Env env, Work work, Finish finish, Cleanup cleanup)
      : Napi::AsyncWorker(env, "segtool"),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        finish_(std::move(finish)),
        cleanup_(std::move(cleanup)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      apply_thread_setting();
      result_.emplace(work_());
    } catch (...) {
      failure_ = capture_current_exception();
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (cleanup_) cleanup_();
    if (failure_) {
      deferred_.Reject(make_error(env, *failure_).Value());
      return;
    }
    try {
      deferred_.Resolve(finish_(env, *result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      deferred_.Reject(make_error(env, capture_current_exception()).Value());
    }
  }

  void OnError(const Napi::Error& e) override {
    if (cleanup_) cleanup_();
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Finish finish_;
  Cleanup cleanup_;
  std::optional<Result> result_;
  std::optional<Failure> failure_;
};

// Queues `work` and returns its Promise. `cleanup` runs on the main thread before settling
// (used to unpin objects the work used).
template <typename Result>
Napi::Promise run_async(Napi::Env env, typename PromiseWorker<Result>::Work work,
                        typename PromiseWorker<Result>::Finish finish,
                        typename PromiseWorker<Result>::Cleanup cleanup = nullptr) {
  auto* worker = new PromiseWorker<Result>(env, std::move(work), std::move(finish), std::move(cleanup));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

}  // namespace segtool::binding
