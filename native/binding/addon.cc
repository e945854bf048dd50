// Module init: the exports declared, one for one, in lib/native.ts.
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/Context.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/api/include/torch/version.h>
#include <napi.h>

#include <atomic>
#include <chrono>
#include <mutex>

#include "binding/async.h"
#include "binding/dist.h"
#include "binding/errors.h"
#include "binding/io.h"
#include "binding/model.h"
#include "binding/state.h"
#include "binding/tensor.h"
#include "nn/runtime.h"

namespace segtool::binding {

namespace {
std::atomic<int> desired_threads{0};  // 0 = LibTorch's default
}  // namespace

void apply_thread_setting() {
  int n = desired_threads.load();
  if (n > 0 && at::get_num_threads() != n) at::set_num_threads(n);
}

namespace {

Napi::Value set_error_class(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) throw_error(info.Env(), "ERR_INVALID_ARG", "setErrorClass expects a constructor");
  AddonState::get(info.Env())->error_class = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Value set_num_threads(const Napi::CallbackInfo& info) {
  int n = info[0].As<Napi::Number>().Int32Value();
  guarded(info.Env(), [n] {
    at::set_num_threads(n);
    desired_threads.store(n);
  });
  return info.Env().Undefined();
}

Napi::Value get_num_threads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

Napi::Value build_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("torchVersion", TORCH_VERSION);
  out.Set("cuda", at::hasCUDA());
#ifdef SEGTOOL_WITH_CUDA
  out.Set("cudaKernels", true);
#else
  out.Set("cudaKernels", false);
#endif
  out.Set("cudaDevices", static_cast<double>(segtool::nn::cuda_info().device_count));
  const segtool::nn::CpuInfo cpu = segtool::nn::cpu_info();
  out.Set("cpuAvx512", cpu.avx512);
  out.Set("cpuAvx512Bf16", cpu.avx512_bf16);
  out.Set("cpuAmxBf16", cpu.amx_bf16);
  out.Set("cpuBf16Unsupported", segtool::nn::cpu_bf16_unsupported_reason());
  const segtool::nn::MallocSetting& malloc_setting = segtool::nn::configure_malloc();
  if (malloc_setting.mmap_threshold > 0)
    out.Set("mallocMmapThreshold", static_cast<double>(malloc_setting.mmap_threshold));
  else
    out.Set("mallocMmapThreshold", env.Null());
  out.Set("mallocSetting", malloc_setting.source);
  out.Set("mkldnn", at::hasMKLDNN());
  out.Set("openmp", at::hasOpenMP());
  out.Set("parallel", at::get_parallel_info());
  return out;
}

// The CPU generator drives dropout and random initialisation; its state goes into training
// checkpoints so a resumed run draws what an uninterrupted one would.
Napi::Value manual_seed(const Napi::CallbackInfo& info) {
  uint64_t seed = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
  return info.Env().Undefined();
}

Napi::Value get_rng_state(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    return TensorHandle::wrap(env, at::Tensor(gen.get_state()));
  });
}

Napi::Value set_rng_state(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Tensor state = TensorHandle::unwrap(info[0], "state");
  guarded(env, [&] {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state.to(at::kByte).contiguous());
  });
  return env.Undefined();
}

struct MatmulTiming {
  double seconds;
  double gflops;
  int64_t iterations;
};

// matmulBenchmark(n, iterations, minSeconds = 0) -> Promise<{seconds, gflops, iterations}>: a
// quick measure of what this machine's LibTorch delivers (`segtool info`), and the long native
// op the event-loop test uses: at least `iterations` products, and more until `minSeconds` have
// passed, so the op is long on a fast BLAS as on a slow one.
Napi::Value matmul_benchmark(const Napi::CallbackInfo& info) {
  int64_t n = info[0].As<Napi::Number>().Int64Value();
  int64_t iterations = info[1].As<Napi::Number>().Int64Value();
  double min_seconds = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 0.0;
  return run_async<MatmulTiming>(
      info.Env(),
      [n, iterations, min_seconds] {
        at::Tensor a = at::rand({n, n});
        at::Tensor b = at::rand({n, n});
        at::Tensor c = at::mm(a, b);  // warm-up
        auto start = std::chrono::steady_clock::now();
        auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
        int64_t done = 0;
        while (done < iterations || elapsed() < min_seconds) {
          c = at::mm(a, b);
          ++done;
        }
        double seconds = elapsed();
        return MatmulTiming{seconds, 2.0 * n * n * n * done / seconds / 1e9, done};
      },
      [](Napi::Env env, MatmulTiming& t) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("seconds", t.seconds);
        out.Set("gflops", t.gflops);
        out.Set("iterations", static_cast<double>(t.iterations));
        return out;
      });
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  segtool::nn::configure_malloc();
  auto* state = new AddonState();
  env.SetInstanceData<AddonState>(state);  // deleted by Node when this environment exits
  state->tensor_class = Napi::Persistent(TensorHandle::define(env));
  state->model_class = Napi::Persistent(define_model_class(env));

  exports.Set("TensorHandle", state->tensor_class.Value());
  exports.Set("setErrorClass", Napi::Function::New<set_error_class>(env, "setErrorClass"));
  exports.Set("fromTypedArray", Napi::Function::New<tensor_from_typed_array>(env, "fromTypedArray"));
  exports.Set("liveTensorCount", Napi::Function::New<live_tensor_count>(env, "liveTensorCount"));
  exports.Set("setNumThreads", Napi::Function::New<set_num_threads>(env, "setNumThreads"));
  exports.Set("getNumThreads", Napi::Function::New<get_num_threads>(env, "getNumThreads"));
  exports.Set("buildInfo", Napi::Function::New<build_info>(env, "buildInfo"));
  exports.Set("matmulBenchmark", Napi::Function::New<matmul_benchmark>(env, "matmulBenchmark"));
  exports.Set("readSafetensors", Napi::Function::New<read_safetensors>(env, "readSafetensors"));
  exports.Set("writeSafetensors", Napi::Function::New<write_safetensors>(env, "writeSafetensors"));
  exports.Set("manualSeed", Napi::Function::New<manual_seed>(env, "manualSeed"));
  exports.Set("getRngState", Napi::Function::New<get_rng_state>(env, "getRngState"));
  exports.Set("setRngState", Napi::Function::New<set_rng_state>(env, "setRngState"));
  exports.Set("readPth", Napi::Function::New<read_pth>(env, "readPth"));
  exports.Set("writePth", Napi::Function::New<write_pth>(env, "writePth"));
  exports.Set("ModelHandle", state->model_class.Value());
  exports.Set("createModel", Napi::Function::New<create_model>(env, "createModel"));
  exports.Set("architectures", Napi::Function::New<architectures>(env, "architectures"));
  exports.Set("createCancelToken", Napi::Function::New<create_cancel_token>(env, "createCancelToken"));
  exports.Set("cancelToken", Napi::Function::New<cancel_token>(env, "cancelToken"));
  exports.Set("slideTiles", Napi::Function::New<slide_tiles>(env, "slideTiles"));
  register_dist_exports(env, exports);
  return exports;
}

}  // namespace
}  // namespace segtool::binding

// NODE_API_MODULE pastes its second argument into an identifier: it must be unqualified.
static Napi::Object InitSegtool(Napi::Env env, Napi::Object exports) {
  return segtool::binding::init(env, exports);
}
NODE_API_MODULE(segtool, InitSegtool)
