// Harness of native/ops: the synchronized-BatchNorm kernels (statistics, grad sums, the two
// elementwise passes, the whole op with autograd) and the one-pass pyramid pooling (forward and
// backward), compared with plain ATen (at::batch_norm, at::adaptive_avg_pool2d, their autograd,
// and direct formulas in float64) on uneven sizes, contiguous and channels-last inputs, and
// float/double/bf16/half.
//
// Usage: ops_test [--cuda]
//   default: the CPU kernels against ATen on CPU (CI, every machine).
//   --cuda:  the same checks with the tensors on CUDA (the CUDA kernels, or ATen where a dtype has
//            no kernel), against the CPU math; exits 77 ("skipped") without a CUDA device.
// Prints one line per check and a summary; exit 0 when every check passed.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "ops/batch_norm_ops.h"
#include "ops/cpu/batch_norm_kernels.h"
#include "ops/ppm_pool.h"
#include "ops/sync_batch_norm.h"

using namespace segtool;

namespace {

int passed = 0, failed = 0;
at::Device device = at::kCPU;

// max |a - b| over max(1, max |b|): a relative error against the reference's scale.
double scaled_error(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor ad = a.detach().to(at::kCPU, at::kDouble), bd = b.detach().to(at::kCPU, at::kDouble);
  if (ad.sizes() != bd.sizes()) return INFINITY;
  if (ad.numel() == 0) return 0;
  const double scale = std::max(1.0, bd.abs().max().item<double>());
  return (ad - bd).abs().max().item<double>() / scale;
}

void check(const std::string& name, const at::Tensor& got, const at::Tensor& want, double tol) {
  const double err = scaled_error(got, want);
  if (err <= tol) {
    ++passed;
    std::printf("PASS %s (err %.3g <= %.3g)\n", name.c_str(), err, tol);
  } else {
    ++failed;
    std::printf("FAIL %s: err %.3g > %.3g (shape got %s want %s)\n", name.c_str(), err, tol,
                c10::str(got.sizes()).c_str(), c10::str(want.sizes()).c_str());
  }
}

void check_true(const std::string& name, bool ok, const std::string& detail = "") {
  if (ok) {
    ++passed;
    std::printf("PASS %s\n", name.c_str());
  } else {
    ++failed;
    std::printf("FAIL %s %s\n", name.c_str(), detail.c_str());
  }
}

// Tolerance of a result in `dtype` (one or two roundings of that type, relative).
double tol_for(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return 1e-10;
    case at::kFloat: return device.is_cuda() ? 2e-5 : 2e-6;
    case at::kBFloat16: return 2e-2;
    case at::kHalf: return 4e-3;
    default: return 1e-6;
  }
}

std::string describe(const std::vector<int64_t>& shape, at::ScalarType t, bool cl) {
  return c10::str(at::IntArrayRef(shape)) + " " + c10::toString(t) + (cl ? " channels_last" : "");
}

// A test input on `device`: values N(0.5, 2) so sums of squares and means both matter.
at::Tensor input(const std::vector<int64_t>& shape, at::ScalarType t, bool cl) {
  at::Tensor x = (at::randn(shape, at::kDouble) * 2 + 0.5).to(t);
  if (cl) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  return x.to(device);
}

std::vector<int64_t> reduced_dims(const at::Tensor& x) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

at::Tensor per_channel(const at::Tensor& v, const at::Tensor& x) {
  std::vector<int64_t> shape(x.dim(), 1);
  shape[1] = v.numel();
  return v.to(at::kCPU, at::kDouble).reshape(shape);
}

void batch_norm_kernels(const std::vector<int64_t>& shape, at::ScalarType t, bool cl) {
  const std::string what = describe(shape, t, cl);
  const at::Tensor x = input(shape, t, cl), dy = input(shape, t, cl);
  const at::Tensor xd = x.to(at::kCPU, at::kDouble), gd = dy.to(at::kCPU, at::kDouble);
  const auto dims = reduced_dims(xd);
  const int64_t c = shape[1];
  // Reductions against float64 sums of the same (rounded) values. Float accumulation on CUDA.
  const double red_tol = t == at::kDouble ? 1e-10 : (device.is_cuda() ? 5e-5 : 1e-10);
  const at::Tensor sums = ops::bn_channel_sums(x);
  check("bn_channel_sums " + what, sums, at::stack({xd.sum(dims), (xd * xd).sum(dims)}), red_tol);
  const at::Tensor mean = at::randn({c}, at::kDouble);
  check("bn_grad_sums " + what, ops::bn_grad_sums(dy, x, mean.to(device)),
        at::stack({gd.sum(dims), (gd * (xd - per_channel(mean, xd))).sum(dims)}), red_tol);
  // Elementwise: float math rounded to the dtype.
  const at::Tensor scale = at::randn({c}, at::kDouble), shift = at::randn({c}, at::kDouble);
  const at::Tensor y = ops::bn_affine(x, scale.to(device), shift.to(device));
  check("bn_affine " + what, y, (xd * per_channel(scale, xd) + per_channel(shift, xd)), tol_for(t) * 4);
  check_true("bn_affine keeps memory format " + what,
             !cl || y.is_contiguous(at::MemoryFormat::ChannelsLast));
  const at::Tensor k1 = at::randn({c}, at::kDouble), k2 = at::randn({c}, at::kDouble), k3 = at::randn({c}, at::kDouble);
  const at::Tensor dx = ops::bn_input_grad(dy, x, mean.to(device), k1.to(device), k2.to(device), k3.to(device));
  check("bn_input_grad " + what, dx,
        gd * per_channel(k1, xd) + (xd - per_channel(mean, xd)) * per_channel(k2, xd) + per_channel(k3, xd),
        tol_for(t) * 8);
  check_true("bn_input_grad keeps memory format " + what, !cl || dx.is_contiguous(at::MemoryFormat::ChannelsLast));
}

// The whole op without a communicator against at::batch_norm in training mode: output, running
// statistics, and the gradients of input, weight and bias (autograd of both).
void sync_batch_norm_op(const std::vector<int64_t>& shape, at::ScalarType t, bool cl) {
  const std::string what = describe(shape, t, cl);
  const int64_t c = shape[1];
  const auto pt = t == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor x0 = input(shape, t, cl);
  const at::Tensor w0 = at::rand({c}, at::kDouble).add(0.5).to(device, pt), b0 = at::randn({c}, at::kDouble).to(device, pt);
  const at::Tensor g = input(shape, t, cl);
  // Reference in float64 on CPU.
  at::Tensor xr = x0.to(at::kCPU, at::kDouble).contiguous().clone().requires_grad_(true);
  at::Tensor wr = w0.to(at::kCPU, at::kDouble).clone().requires_grad_(true);
  at::Tensor br = b0.to(at::kCPU, at::kDouble).clone().requires_grad_(true);
  at::Tensor rm_r = at::zeros({c}, at::kDouble), rv_r = at::ones({c}, at::kDouble);
  at::Tensor yr = at::batch_norm(xr, wr, br, rm_r, rv_r, true, 0.1, 1e-5, false);
  yr.backward(g.to(at::kCPU, at::kDouble));

  at::Tensor x = x0.clone().requires_grad_(true);
  at::Tensor w = w0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
  at::Tensor rm = at::zeros({c}, x0.options().dtype(pt)), rv = at::ones({c}, x0.options().dtype(pt));
  at::Tensor y = ops::sync_batch_norm(x, w, b, rm, rv, 0.1, 1e-5, nullptr, ops::SyncBatchNormMode::Exact, nullptr);
  y.backward(g);
  const double tol = tol_for(t) * 16;
  check("sync_batch_norm output " + what, y, yr, tol);
  check_true("sync_batch_norm output memory format " + what, !cl || y.is_contiguous(at::MemoryFormat::ChannelsLast));
  check("sync_batch_norm running_mean " + what, rm, rm_r, tol);
  check("sync_batch_norm running_var " + what, rv, rv_r, tol);
  check("sync_batch_norm grad input " + what, x.grad(), xr.grad(), tol * 4);
  check("sync_batch_norm grad weight " + what, w.grad(), wr.grad(), tol * 4);
  check("sync_batch_norm grad bias " + what, b.grad(), br.grad(), tol * 4);
}

// ATen's adaptive_avg_pool2d for one bin size, in float64 (the exact average of the values).
at::Tensor reference_pool(const at::Tensor& x, int64_t b) {
  return at::adaptive_avg_pool2d(x.to(at::kCPU, at::kDouble).contiguous(), {b, b});
}

void pyramid_pool(const std::vector<int64_t>& shape, at::ScalarType t, bool cl) {
  const std::string what = describe(shape, t, cl);
  const std::vector<int64_t> bins = {1, 2, 3, 6};
  const at::Tensor x = input(shape, t, cl);
  std::vector<at::Tensor> got;
  {
    c10::InferenceMode guard;
    got = ops::pyramid_pool(x, bins);
  }
  for (size_t i = 0; i < bins.size(); ++i) {
    const std::string name = "pyramid_pool bin " + std::to_string(bins[i]) + " " + what;
    check(name + " vs exact average", got[i], reference_pool(x, bins[i]), tol_for(t));
    // Against ATen in the same dtype, where ATen's CPU kernel supports it.
    if (!device.is_cuda() && (t == at::kFloat || t == at::kDouble || t == at::kBFloat16)) {
      try {
        const at::Tensor aten = at::adaptive_avg_pool2d(x, {bins[i], bins[i]});
        // float: ATen sums in float (our sum is float64, rounded once): within 1e-6 of it.
        check(name + " vs at::adaptive_avg_pool2d", got[i], aten, t == at::kFloat ? 1e-6 : tol_for(t) * 2);
      } catch (const c10::Error&) {
        std::printf("SKIP %s vs at::adaptive_avg_pool2d (ATen has no %s kernel here)\n", name.c_str(),
                    c10::toString(t));
      }
    }
    // Channels-last views of the packed cells: channels innermost (what convolutions look at).
    check_true(name + " memory format", !cl || x.is_contiguous() || got[i].is_contiguous(at::MemoryFormat::ChannelsLast) ||
                                            got[i].suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
                                            bins[i] == 1 || shape[1] == 1);
  }
  // Backward through autograd against autograd of the per-bin ATen pooling (float64).
  at::Tensor xg = x.detach().clone().requires_grad_(true);
  const std::vector<at::Tensor> outs = ops::pyramid_pool(xg, bins);
  at::Tensor xr = x.detach().to(at::kCPU, at::kDouble).contiguous().clone().requires_grad_(true);
  at::Tensor loss = at::zeros({}, x.options().dtype(at::kDouble)), loss_r = at::zeros({}, at::kDouble);
  for (size_t i = 0; i < bins.size(); ++i) {
    const at::Tensor weights = at::randn(outs[i].sizes(), at::kDouble);
    loss = loss + (outs[i].to(at::kDouble) * weights.to(device)).sum();
    loss_r = loss_r + (at::adaptive_avg_pool2d(xr, {bins[i], bins[i]}) * weights).sum();
  }
  loss.backward();
  loss_r.backward();
  check("pyramid_pool backward " + what, xg.grad(), xr.grad(), tol_for(t) * 8);
  check_true("pyramid_pool backward memory format " + what,
             !cl || x.is_contiguous() || xg.grad().is_contiguous(at::MemoryFormat::ChannelsLast));
}

// --bench: the one-pass pyramid pooling against four at::adaptive_avg_pool2d calls (forward, and
// forward + backward through autograd), on the PPM's input at ADE20K size (conv5 of a dilated
// ResNet-50 for a 450 x 600 image: [2, 2048, 57, 75]), contiguous and channels-last.
double median_ms(const std::function<void()>& body, int reps) {
  std::vector<double> ms;
  body();  // warm-up
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    body();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void bench() {
  const std::vector<int64_t> bins = {1, 2, 3, 6};
  for (bool cl : {false, true}) {
    at::Tensor x = input({2, 2048, 57, 75}, at::kFloat, cl);
    const double fused = median_ms([&] { c10::InferenceMode g; (void)ops::pyramid_pool(x, bins); }, 9);
    const double aten = median_ms([&] {
      c10::InferenceMode g;
      for (int64_t b : bins) (void)at::adaptive_avg_pool2d(x, {b, b});
    }, 9);
    auto train_step = [&](bool use_fused) {
      at::Tensor xg = x.detach().requires_grad_(true);
      at::Tensor loss = at::zeros({});
      if (use_fused) {
        for (const auto& p : ops::pyramid_pool(xg, bins)) loss = loss + p.sum();
      } else {
        for (int64_t b : bins) loss = loss + at::adaptive_avg_pool2d(xg, {b, b}).sum();
      }
      loss.backward();
    };
    const double fused_fb = median_ms([&] { train_step(true); }, 5);
    const double aten_fb = median_ms([&] { train_step(false); }, 5);
    std::printf("BENCH pyramid pooling [2, 2048, 57, 75]%s, %d thread(s): forward one-pass %.2f ms, 4x ATen %.2f ms; "
                "forward+backward one-pass %.2f ms, 4x ATen %.2f ms\n",
                cl ? " channels_last" : "", at::get_num_threads(), fused, aten, fused_fb, aten_fb);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) {
    at::manual_seed(7);
    bench();
    return 0;
  }
  const bool cuda = argc > 1 && std::strcmp(argv[1], "--cuda") == 0;
  if (cuda) {
    if (!at::hasCUDA()) {
      std::printf("SKIP ops_test --cuda: this LibTorch has no CUDA device available\n");
      return 77;
    }
    device = at::Device(at::kCUDA, 0);
  }
  at::manual_seed(7);
  const std::vector<std::vector<int64_t>> bn_shapes = {{3, 5, 7, 9}, {2, 3, 1, 1}, {1, 4, 13, 5}, {4, 6}, {2, 16, 33, 17}};
  const std::vector<at::ScalarType> types = {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf};
  // An exception in a check is a failure of that check, not the end of the run.
  auto guarded = [](const std::string& name, const std::function<void()>& body) {
    try {
      body();
    } catch (const std::exception& e) {
      ++failed;
      std::printf("FAIL %s: exception %s\n", name.c_str(), e.what());
    }
  };
  for (const auto& shape : bn_shapes)
    for (auto t : types)
      for (bool cl : {false, true}) {
        if (cl && shape.size() != 4) continue;
        guarded("batch norm kernels " + describe(shape, t, cl), [&] { batch_norm_kernels(shape, t, cl); });
        if (t == at::kFloat || t == at::kDouble)
          guarded("sync_batch_norm " + describe(shape, t, cl), [&] { sync_batch_norm_op(shape, t, cl); });
      }
  const std::vector<std::vector<int64_t>> pool_shapes = {{2, 3, 1, 1}, {1, 2, 5, 7}, {2, 4, 13, 17}, {1, 3, 7, 3}, {2, 5, 60, 80},
                                                         {1, 8, 6, 6},  {1, 3, 2, 11}};
  for (const auto& shape : pool_shapes)
    for (auto t : types)
      for (bool cl : {false, true})
        guarded("pyramid_pool " + describe(shape, t, cl), [&] { pyramid_pool(shape, t, cl); });
  std::printf("%d passed, %d failed (%s)\n", passed, failed, cuda ? "CUDA vs CPU math" : "CPU");
  return failed == 0 ? 0 : 1;
}
