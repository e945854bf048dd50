#include "binding/async.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace segtool::binding {
namespace {

class ComputeThread {
 public:
  void post(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.push_back(std::move(job));
      if (!started_) {
        started_ = true;
        std::thread([this] { loop(); }).detach();
      }
    }
    ready_.notify_one();
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !jobs_.empty(); });
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();  // jobs catch their own exceptions (PromiseWorker)
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
  bool started_ = false;
};

}  // namespace

void post_compute(std::function<void()> job) {
  // Never destroyed: the detached thread may still wait on it while the process exits.
  static ComputeThread* thread = new ComputeThread();
  thread->post(std::move(job));
}

}  // namespace segtool::binding
