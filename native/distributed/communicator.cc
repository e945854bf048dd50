#include "distributed/communicator.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/api/include/torch/version.h>

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <utility>

// c10d's process-group headers compile only when their USE_C10D_* macro is set; LibTorch's
// CMake config does not pass them to consumers, so they are set here where the headers of the
// library underneath (Gloo, NCCL) are present.
#if __has_include(<gloo/algorithm.h>)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#define SEGTOOL_HAS_GLOO 1
#endif
#if defined(SEGTOOL_WITH_CUDA) && __has_include(<nccl.h>) && \
    __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#define SEGTOOL_HAS_NCCL 1
#endif

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#ifdef SEGTOOL_HAS_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef SEGTOOL_HAS_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

// LibTorch 2.0 split process groups into a ProcessGroup front and per-device Backends;
// ProcessGroupGloo/NCCL became Backends. Both expose the same collective calls.
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif

namespace segtool::dist {
namespace {

#if TORCH_VERSION_MAJOR >= 2
using Collectives = c10d::Backend;
#else
using Collectives = c10d::ProcessGroup;
#endif

// Gloo enforces the timeout itself; waiting a little longer is a backstop for a backend that
// does not, so a wait never outlives the timeout by much.
constexpr std::chrono::milliseconds kWaitGrace{2000};

void wait_for(const c10::intrusive_ptr<c10d::Work>& work, const CommunicatorOptions& o) {
  work->wait(o.timeout + kWaitGrace);
}

std::string error_text(const std::exception& e) {
  std::string text;
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) {
    text = c10_error->what_without_backtrace();
  } else {
    text = e.what();
  }
  auto cut = text.find("\nException raised from");
  if (cut != std::string::npos) text.resize(cut);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

bool contains_nocase(std::string text, std::string part) {
  auto lower = [](std::string& s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  };
  lower(text);
  lower(part);
  return text.find(part) != std::string::npos;
}

// 1.13 reports "errno: 98 - Address already in use"; 2.x's libuv store "EADDRINUSE".
bool is_address_in_use(const std::string& detail) {
  return contains_nocase(detail, "address already in use") || contains_nocase(detail, "EADDRINUSE") ||
         contains_nocase(detail, "errno: 98");
}

std::string who(const CommunicatorOptions& o) {
  return "rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size);
}

std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// The local address this machine uses to reach `host`: connecting a UDP socket picks the
// route without sending anything. Empty when it cannot be found.
std::string local_address_towards(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return "";
  std::string address;
  for (addrinfo* p = found; p && address.empty(); p = p->ai_next) {
    int fd = socket(p->ai_family, SOCK_DGRAM, 0);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t length = sizeof(local);
    char text[NI_MAXHOST];
    if (connect(fd, p->ai_addr, p->ai_addrlen) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0 &&
        getnameinfo(reinterpret_cast<sockaddr*>(&local), length, text, sizeof(text), nullptr, 0, NI_NUMERICHOST) == 0) {
      address = text;
    }
    close(fd);
  }
  freeaddrinfo(found);
  return address;
}

// Rank 0 serves the store; the others connect to it. waitWorkers is off: LibTorch 1.13's
// server-side wait ends silently on timeout, join_all below names the ranks that are missing.
c10::intrusive_ptr<c10d::Store> open_store(const CommunicatorOptions& o) {
  if (!o.store_file.empty()) {
    // A single-machine job: every rank opens the launcher's file; nothing listens on a port.
    try {
      auto store = c10::make_intrusive<c10d::FileStore>(o.store_file, o.world_size);
      store->setTimeout(o.timeout);
      return store;
    } catch (const std::exception& e) {
      throw DistError(who(o) + ": could not open the rendezvous file " + o.store_file + ": " + error_text(e));
    }
  }
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(o.master_port);
  store_options.isServer = o.rank == 0;
  store_options.numWorkers = static_cast<std::size_t>(o.world_size);
  store_options.waitWorkers = false;
  store_options.timeout = o.timeout;
  const std::string where = o.master_addr + ":" + std::to_string(o.master_port);
  try {
    return c10::make_intrusive<c10d::TCPStore>(o.master_addr, store_options);
  } catch (const std::exception& e) {
    const std::string detail = error_text(e);
    if (o.rank == 0 && is_address_in_use(detail)) {
      throw DistError(who(o) + ": MASTER_PORT " + std::to_string(o.master_port) +
                      " is already in use on this machine, so rank 0 cannot serve the rendezvous there. "
                      "Choose a free port (--master-port or MASTER_PORT) or stop the process that holds it.");
    }
    if (o.rank == 0) throw DistError(who(o) + ": could not serve the rendezvous at " + where + ": " + detail);
    throw DistError(who(o) + ": could not reach the rendezvous server at " + where + " within " + ms(o.timeout) +
                    " (is rank 0 running, and do all ranks use the same MASTER_ADDR and MASTER_PORT?): " + detail);
  }
}

// Every rank announces itself, then waits for all the others: a missing rank is named
// instead of surfacing later as an opaque connect timeout.
void join_all(c10d::Store& store, const CommunicatorOptions& o) {
  auto key = [](int rank) { return "segtool/joined/" + std::to_string(rank); };
  if (store.add(key(o.rank), 1) > 1) {
    throw DistError(who(o) + ": another process already joined as rank " + std::to_string(o.rank) +
                    "; every process needs its own RANK");
  }
  std::vector<std::string> keys;
  for (int r = 0; r < o.world_size; ++r) keys.push_back(key(r));
  try {
    store.wait(keys, o.timeout);
  } catch (const std::exception& e) {
    std::string missing;
    try {
      for (int r = 0; r < o.world_size; ++r) {
        if (!store.check({keys[r]})) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      }
    } catch (const std::exception&) {
      // The store itself is gone (rank 0 exited): the wait's own message says so.
    }
    if (missing.empty()) throw DistError(who(o) + ": the rendezvous failed: " + error_text(e));
    throw DistError(who(o) + ": the rendezvous timed out after " + ms(o.timeout) + ": rank(s) " + missing +
                    " did not join (not started, crashed, or given another MASTER_ADDR/MASTER_PORT)");
  }
}

#ifdef SEGTOOL_HAS_GLOO
// The interface Gloo listens on: GLOO_SOCKET_IFNAME when set (as in PyTorch), loopback for a
// single-machine job, else the address that routes to the master (a hostname can resolve to
// 127.0.1.1 on Debian, which other machines cannot reach).
std::shared_ptr<::gloo::transport::Device> gloo_device(const CommunicatorOptions& o) {
  const char* interface_name = std::getenv("GLOO_SOCKET_IFNAME");
  if (interface_name && *interface_name) return c10d::ProcessGroupGloo::createDeviceForInterface(interface_name);
  if (is_loopback(o.master_addr)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  std::string local = local_address_towards(o.master_addr, o.master_port);
  if (!local.empty()) return c10d::ProcessGroupGloo::createDeviceForHostname(local);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}
#endif

c10::intrusive_ptr<Collectives> create_group(const c10::intrusive_ptr<c10d::Store>& store,
                                             const CommunicatorOptions& o) {
  if (o.backend == Backend::Gloo) {
#ifdef SEGTOOL_HAS_GLOO
    auto options = c10d::ProcessGroupGloo::Options::create(o.timeout);
    options->devices.push_back(gloo_device(o));
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, o.rank, o.world_size, options);
#endif
  } else {
#ifdef SEGTOOL_HAS_NCCL
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = o.timeout;
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, o.rank, o.world_size, options);
#endif
  }
  throw DistError(who(o) + ": this LibTorch was built without " + backend_name(o.backend) + " support");
}

// Tensors of one dtype and device, flattened into one buffer for a single collective.
struct Bucket {
  std::vector<size_t> members;  // indices into the caller's list, in order
  int64_t bytes = 0;
  at::Tensor flat;

  void pack(const std::vector<at::Tensor>& tensors) {
    const at::Tensor& first = tensors[members[0]];
    if (members.size() == 1 && first.is_contiguous()) {
      flat = first;  // reduced in place, nothing to copy back
      return;
    }
    std::vector<at::Tensor> pieces;
    pieces.reserve(members.size());
    for (size_t i : members) pieces.push_back(tensors[i].reshape({-1}));
    flat = at::cat(pieces);
  }

  void unpack(const std::vector<at::Tensor>& tensors) {
    if (members.size() == 1 && flat.is_same(tensors[members[0]])) return;
    int64_t offset = 0;
    for (size_t i : members) {
      const at::Tensor& t = tensors[i];
      t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
};

// Greedy, in list order, one open bucket per (dtype, device): the same list gives the same
// buckets on every rank.
std::vector<Bucket> make_buckets(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  std::vector<Bucket> buckets;
  std::vector<std::pair<std::pair<at::ScalarType, at::Device>, size_t>> open;  // key -> bucket index
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    if (t.numel() == 0) continue;
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    const auto key = std::make_pair(t.scalar_type(), t.device());
    size_t* slot = nullptr;
    for (auto& entry : open) {
      if (entry.first == key) slot = &entry.second;
    }
    if (!slot || buckets[*slot].bytes + bytes > bucket_bytes) {
      buckets.emplace_back();
      if (slot) {
        *slot = buckets.size() - 1;
      } else {
        open.emplace_back(key, buckets.size() - 1);
        slot = &open.back().second;
      }
    }
    Bucket& bucket = buckets[*slot];
    bucket.members.push_back(i);
    bucket.bytes += bytes;
  }
  return buckets;
}

}  // namespace

const char* backend_name(Backend backend) { return backend == Backend::Gloo ? "Gloo" : "NCCL"; }

bool backend_available(Backend backend) {
#ifdef SEGTOOL_HAS_GLOO
  if (backend == Backend::Gloo) return true;
#endif
#ifdef SEGTOOL_HAS_NCCL
  if (backend == Backend::Nccl) return true;
#endif
  return false;
}

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Collectives> group;
  std::mutex mutex;
  std::string failure;  // the first failed collective; the group is unusable after it

  ~Impl() {
    if (!failure.empty()) {
      // A failed group can have a Gloo thread still blocked on a dead peer: destroying it would
      // join that thread. The process is about to report the failure and exit; leak instead.
      (void)group.release();
      (void)store.release();
    }
  }

  // Runs one collective step with the lock held; any failure poisons the communicator.
  template <typename Body>
  void run(const CommunicatorOptions& o, const char* what, Body&& body) {
    if (!failure.empty()) throw DistError(failure);
    try {
      body();
    } catch (const std::exception& e) {
      failure = who(o) + ": " + what + " failed: " + error_text(e) +
                ". A rank exited, crashed or did not take part within " + ms(o.timeout) +
                "; see the other ranks' output.";
      throw DistError(failure);
    }
  }
};

Communicator::Communicator(const CommunicatorOptions& options) : options_(options), impl_(std::make_unique<Impl>()) {
  if (options_.world_size < 1 || options_.rank < 0 || options_.rank >= options_.world_size) {
    throw std::invalid_argument("rank " + std::to_string(options_.rank) + " is outside world size " +
                                std::to_string(options_.world_size));
  }
  impl_->store = open_store(options_);
  join_all(*impl_->store, options_);
  // Gloo's and NCCL's own rendezvous keys live under their own prefix, apart from ours.
  auto group_store = c10::make_intrusive<c10d::PrefixStore>("segtool/group", impl_->store);
  try {
    impl_->group = create_group(group_store, options_);
  } catch (const DistError&) {
    throw;
  } catch (const std::exception& e) {
    throw DistError(who(options_) + ": connecting the " + backend_name(options_.backend) +
                    " group failed: " + error_text(e));
  }
}

Communicator::~Communicator() = default;

bool Communicator::failed() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return !impl_->failure.empty();
}

namespace {

// Packs `tensors` into buckets and runs one collective per bucket (all queued before the first
// wait, so the backend can overlap them), then copies the results back.
void run_bucketed(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes, const CommunicatorOptions& o,
                  const std::function<c10::intrusive_ptr<c10d::Work>(std::vector<at::Tensor>&)>& start) {
  std::vector<Bucket> buckets = make_buckets(tensors, bucket_bytes);
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  works.reserve(buckets.size());
  for (Bucket& bucket : buckets) {
    bucket.pack(tensors);
    std::vector<at::Tensor> one{bucket.flat};
    works.push_back(start(one));
  }
  for (size_t i = 0; i < buckets.size(); ++i) {
    wait_for(works[i], o);
    buckets[i].unpack(tensors);
  }
}

}  // namespace

void Communicator::all_reduce_sum(const std::vector<at::Tensor>& tensors) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->run(options_, "all-reduce", [&] {
    c10d::AllreduceOptions reduce;
    reduce.reduceOp = c10d::ReduceOp::SUM;
    reduce.timeout = options_.timeout;
    run_bucketed(tensors, options_.bucket_bytes, options_,
                 [&](std::vector<at::Tensor>& one) { return impl_->group->allreduce(one, reduce); });
  });
}

void Communicator::all_reduce_mean(const std::vector<at::Tensor>& tensors) {
  for (const at::Tensor& t : tensors) {
    if (!t.is_floating_point()) {
      throw std::invalid_argument(std::string("all_reduce_mean needs floating-point tensors, got ") +
                                  c10::toString(t.scalar_type()));
    }
  }
  all_reduce_sum(tensors);
  for (const at::Tensor& t : tensors) t.div_(options_.world_size);
}

void Communicator::broadcast(const std::vector<at::Tensor>& tensors, int root) {
  if (root < 0 || root >= options_.world_size) {
    throw std::invalid_argument("broadcast root " + std::to_string(root) + " is outside world size " +
                                std::to_string(options_.world_size));
  }
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->run(options_, "broadcast", [&] {
    c10d::BroadcastOptions cast;
    cast.rootRank = root;
    cast.timeout = options_.timeout;
    run_bucketed(tensors, options_.bucket_bytes, options_,
                 [&](std::vector<at::Tensor>& one) { return impl_->group->broadcast(one, cast); });
  });
}

at::Tensor Communicator::all_gather(const at::Tensor& value) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  at::Tensor input = value.contiguous();
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < options_.world_size; ++r) outputs[0].push_back(at::empty_like(input));
  impl_->run(options_, "all-gather", [&] {
    std::vector<at::Tensor> inputs{input};
    c10d::AllgatherOptions gather;
    gather.timeout = options_.timeout;
    wait_for(impl_->group->allgather(outputs, inputs, gather), options_);
  });
  return at::stack(outputs[0]);
}

void Communicator::barrier() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->run(options_, "barrier", [&] {
    c10d::BarrierOptions options;
    options.timeout = options_.timeout;
    wait_for(impl_->group->barrier(options), options_);
  });
}

}  // namespace segtool::dist
