// A communicator between the ranks of one job, over PyTorch's c10d: rendezvous through a
// TCPStore served by rank 0 (or a FileStore for a single-machine job, see store_file), collectives through ProcessGroupGloo (CPU tensors) or
// ProcessGroupNCCL (CUDA tensors, CUDA builds only). c10d headers stay in communicator.cc:
// their API differs between LibTorch 1.13 and 2.x.
//
// Every rank must issue the same collectives in the same order with tensors of the same
// shapes and dtypes. Calls are serialised by a mutex (the model's SyncBN layers and the
// gradient all-reduce may share one communicator) but not ordered: the caller orders them.
#pragma once
#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace segtool::dist {

// A failure of the job rather than of the caller's arguments: the rendezvous failed, a rank
// exited or did not take part within the timeout, the port is taken. The message names the
// rank that reports it and what to check.
class DistError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Backend { Gloo, Nccl };

struct CommunicatorOptions {
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // When set (single-machine jobs, by the launcher): rendezvous through a c10d FileStore at this
  // path instead of a TCPStore, so no port is opened at all. LibTorch 1.13's TCPStore server
  // listens on every interface and cannot be bound to loopback; a file in a private folder is
  // reachable only by this user on this machine.
  std::string store_file;
  // Bounds the rendezvous and every collective: a rank that is gone or hung makes the others
  // fail with a DistError within about this long, never hang.
  std::chrono::milliseconds timeout{300000};
  Backend backend = Backend::Gloo;
  // All-reduce packs tensors of one dtype and device into buckets of about this many bytes.
  int64_t bucket_bytes = 25 << 20;
};

class Communicator {
 public:
  // Joins the job: blocks until every rank has joined (DistError after `timeout`).
  explicit Communicator(const CommunicatorOptions& options);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }
  const CommunicatorOptions& options() const { return options_; }

  // Sums every tensor over all ranks, in place. Dense tensors of any shape; tensors of one
  // dtype and device are flattened into buckets of about bucket_bytes, one collective each.
  void all_reduce_sum(const std::vector<at::Tensor>& tensors);
  // all_reduce_sum divided by the world size: gradient averaging. Floating-point tensors only.
  void all_reduce_mean(const std::vector<at::Tensor>& tensors);
  // Rank `root`'s values of every tensor copied, in place, to every rank (bucketed the same
  // way): identical parameters on every rank before training.
  void broadcast(const std::vector<at::Tensor>& tensors, int root);
  // Every rank's `value` (same shape and dtype on every rank), stacked: [world_size, ...].
  at::Tensor all_gather(const at::Tensor& value);
  void barrier();

  // After a failed collective the group is unusable: later calls throw the first failure.
  bool failed() const;

 private:
  struct Impl;
  CommunicatorOptions options_;
  std::unique_ptr<Impl> impl_;
};

const char* backend_name(Backend backend);

// Whether this build can create `backend` (NCCL needs a CUDA LibTorch built with it).
bool backend_available(Backend backend);

}  // namespace segtool::dist
