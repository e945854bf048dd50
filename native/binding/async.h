// The one pattern for heavy native work: the caller copies inputs into plain C++ values on the
// main thread, `work` runs on the compute thread (post_compute) and never touches Napi,
// `finish` builds the JS result on the main thread. Returns a Promise; C++ exceptions reject
// it with a SegtoolError.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <optional>

#include "binding/errors.h"

namespace segtool::binding {

// OpenMP thread counts are per thread: the compute thread re-applies the count last set
// through setNumThreads before it runs work.
void apply_thread_setting();

// Runs `job` on the process's compute thread, after every job posted before it. All LibTorch
// work of the addon runs there, not on the libuv pool: one OpenMP team, warm oneDNN caches,
// and one malloc arena instead of one per pool thread, each keeping freed tensors cached
// (training-loop RSS, 2 x 3 x 256 x 320: resnet18dilated-c1_deepsup 1557 -> 711 MiB,
// mobilenetv2dilated-c1_deepsup 2300 -> 1090 MiB, half the page faults; PyTorch: 780, 1108). Work of one call
// never blocks the event loop or libuv's pool (file system, DNS), and intra-op parallelism
// comes from LibTorch's threads anyway. The thread starts at the first job and lives as long
// as the process. Shared by every Node environment (worker_threads) of the process.
void post_compute(std::function<void()> job);

// A Promise settled on the main thread with the result of work run by post_compute.
template <typename Result>
class PromiseWorker : public std::enable_shared_from_this<PromiseWorker<Result>> {
 public:
  using Work = std::function<Result()>;
  using Finish = std::function<Napi::Value(Napi::Env, Result&)>;
  using Cleanup = std::function<void()>;

  PromiseWorker(Napi::Env env, Work work, Finish finish, Cleanup cleanup)
      : deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        finish_(std::move(finish)),
        cleanup_(std::move(cleanup)) {
    // Keeps the event loop alive until the result is delivered, like queued async work.
    settle_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "segtool", 0, 1);
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Queue() {
    post_compute([self = this->shared_from_this()] {
      try {
        apply_thread_setting();
        self->result_.emplace(self->work_());
      } catch (...) {
        self->failure_ = capture_current_exception();
      }
      // The compute thread never touches the thread-safe function after queueing the call: the
      // call's own main-thread side releases it. Releasing it here raced with the environment's
      // teardown (a worker thread that got its result and was terminated frees the function with
      // its mutex): napi_release_threadsafe_function on freed memory aborted the process (seen
      // in 2-9 of 30 runs of a worker that used the addon, on a loaded machine).
      // napi_closing (the environment is exiting) drops the result: nobody awaits it.
      self->settle_.BlockingCall([self](Napi::Env env, Napi::Function) {
        self->settle(env);
        self->settle_.Release();
      });
    });
  }

 private:
  void settle(Napi::Env env) {
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

  Napi::Promise::Deferred deferred_;
  Napi::ThreadSafeFunction settle_;
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
  auto worker = std::make_shared<PromiseWorker<Result>>(env, std::move(work), std::move(finish), std::move(cleanup));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

// Queues `work(*pinned)` for a JS handle (an ObjectWrap) whose native object async work must
// not outlive: `pinned` (a shared_ptr) keeps the object alive, Ref() keeps the handle alive,
// and `in_flight` counts the calls running so the handle can refuse dispose() with ERR_BUSY.
// Both are released on the main thread before the Promise settles (then `cleanup`, if any).
template <typename Result, typename Wrap, typename Object>
Napi::Promise run_pinned(Napi::Env env, Napi::ObjectWrap<Wrap>& handle, int& in_flight, std::shared_ptr<Object> pinned,
                         std::function<Result(Object&)> work, typename PromiseWorker<Result>::Finish finish,
                         typename PromiseWorker<Result>::Cleanup cleanup = nullptr) {
  ++in_flight;
  handle.Ref();
  Napi::ObjectWrap<Wrap>* h = &handle;
  int* count = &in_flight;  // a member of the handle, alive while the handle is referenced
  return run_async<Result>(
      env, [pinned = std::move(pinned), work = std::move(work)] { return work(*pinned); }, std::move(finish),
      [h, count, cleanup = std::move(cleanup)] {
        --*count;
        h->Unref();
        if (cleanup) cleanup();
      });
}

}  // namespace segtool::binding
