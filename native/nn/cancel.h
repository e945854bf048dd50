// Cancellation of long native work: the JS side sets the flag (an AbortSignal fired, a time
// budget ran out); the work checks it between scales and output rows and throws Cancelled,
// which reaches JS as ERR_ABORTED. A job cancelled before it starts does nothing.
#pragma once
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>

namespace segtool::nn {

using CancelFlag = std::shared_ptr<std::atomic<bool>>;

class Cancelled : public std::runtime_error {
 public:
  Cancelled() : std::runtime_error("the computation was cancelled") {}
  explicit Cancelled(const std::string& message) : std::runtime_error(message) {}
};

inline bool cancel_requested(const std::atomic<bool>* flag) { return flag && flag->load(std::memory_order_relaxed); }

inline void throw_if_cancelled(const std::atomic<bool>* flag) {
  if (cancel_requested(flag)) throw Cancelled();
}

}  // namespace segtool::nn
