#include "ops/cpu/batch_norm_kernels.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace segtool::ops::cpu {
namespace {

// The [N, C, inner] view of a BatchNorm input.
struct Layout {
  int64_t batch, channels, inner;
  int64_t rows() const { return batch * channels; }
};

Layout layout_of(const at::Tensor& x) {
  Layout l{x.size(0), x.size(1), 1};
  for (int64_t d = 2; d < x.dim(); ++d) l.inner *= x.size(d);
  return l;
}

// Rows per task so that a task touches about 32K elements.
int64_t grain(const Layout& l) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, l.inner)); }

// Runs `row(r, c)` for every (n, c) row r = n * C + c in parallel.
template <typename Row>
void for_each_row(const Layout& l, Row&& row) {
  at::parallel_for(0, l.rows(), grain(l), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) row(r, r % l.channels);
  });
}

// Per-row partial sums, then per-channel sums in batch order: the result does not depend on
// how rows were split between threads.
at::Tensor sum_rows_per_channel(const Layout& l, const std::vector<double>& first, const std::vector<double>& second) {
  at::Tensor out = at::zeros({2, l.channels}, at::kDouble);
  double* a = out.data_ptr<double>();
  double* b = a + l.channels;
  for (int64_t n = 0; n < l.batch; ++n) {
    for (int64_t c = 0; c < l.channels; ++c) {
      a[c] += first[n * l.channels + c];
      b[c] += second[n * l.channels + c];
    }
  }
  return out;
}

// Four independent accumulators break the dependency chain of a serial sum.
template <typename Term>
void row_pair_sums(int64_t count, Term&& term, double& first, double& second) {
  double a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= count; i += 4) {
    for (int k = 0; k < 4; ++k) term(i + k, a[k], b[k]);
  }
  for (; i < count; ++i) term(i, a[0], b[0]);
  first = (a[0] + a[1]) + (a[2] + a[3]);
  second = (b[0] + b[1]) + (b[2] + b[3]);
}

// A 4-D channels-last input (and not also contiguous, e.g. C == 1 or 1x1 images): its memory is
// [N*H*W, C], handled by the *_channels_last paths below without a layout copy.
bool is_channels_last(const at::Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// Channels-last reductions: per-channel partial sums over fixed chunks of pixels (the chunking
// depends on the size only), then the chunks summed in order: deterministic for any thread count.
constexpr int64_t kPixelChunk = 64;

template <typename Term>
at::Tensor channels_last_pair_sums(int64_t pixels, int64_t channels, Term&& term) {
  const int64_t chunks = (pixels + kPixelChunk - 1) / kPixelChunk;
  std::vector<double> partial(static_cast<size_t>(chunks * 2 * channels), 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      double* a = partial.data() + k * 2 * channels;
      double* b = a + channels;
      const int64_t p1 = std::min(pixels, (k + 1) * kPixelChunk);
      for (int64_t p = k * kPixelChunk; p < p1; ++p) term(p, a, b);
    }
  });
  at::Tensor out = at::zeros({2, channels}, at::kDouble);
  double* a = out.data_ptr<double>();
  double* b = a + channels;
  for (int64_t k = 0; k < chunks; ++k) {
    const double* pa = partial.data() + k * 2 * channels;
    for (int64_t c = 0; c < channels; ++c) {
      a[c] += pa[c];
      b[c] += pa[channels + c];
    }
  }
  return out;
}

std::vector<double> channel_values(const at::Tensor& values) {
  at::Tensor v = values.to(at::kDouble).contiguous();
  return std::vector<double>(v.data_ptr<double>(), v.data_ptr<double>() + v.numel());
}

}  // namespace

at::Tensor channel_sums(const at::Tensor& input) {
  if (is_channels_last(input)) {
    const int64_t channels = input.size(1), pixels = input.numel() / std::max<int64_t>(1, channels);
    at::Tensor out;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "channel_sums_cl", [&] {
      const scalar_t* data = input.data_ptr<scalar_t>();
      out = channels_last_pair_sums(pixels, channels, [&](int64_t p, double* s, double* q) {
        const scalar_t* px = data + p * channels;
        for (int64_t c = 0; c < channels; ++c) {
          const double v = static_cast<double>(px[c]);
          s[c] += v;
          q[c] += v * v;
        }
      });
    });
    return out;
  }
  at::Tensor x = input.contiguous();
  const Layout l = layout_of(x);
  std::vector<double> sums(l.rows()), squares(l.rows());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "channel_sums", [&] {
    const scalar_t* data = x.data_ptr<scalar_t>();
    for_each_row(l, [&](int64_t r, int64_t) {
      const scalar_t* row = data + r * l.inner;
      row_pair_sums(
          l.inner,
          [&](int64_t i, double& s, double& q) {
            const double v = static_cast<double>(row[i]);
            s += v;
            q += v * v;
          },
          sums[r], squares[r]);
    });
  });
  return sum_rows_per_channel(l, sums, squares);
}

at::Tensor channel_grad_sums(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& mean) {
  if (is_channels_last(input)) {
    const at::Tensor dy = grad_output.contiguous(at::MemoryFormat::ChannelsLast);
    const int64_t channels = input.size(1), pixels = input.numel() / std::max<int64_t>(1, channels);
    const std::vector<double> m = channel_values(mean);
    at::Tensor out;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "channel_grad_sums_cl", [&] {
      const scalar_t* xd = input.data_ptr<scalar_t>();
      const scalar_t* gd = dy.data_ptr<scalar_t>();
      out = channels_last_pair_sums(pixels, channels, [&](int64_t p, double* s, double* d) {
        const scalar_t* xp = xd + p * channels;
        const scalar_t* gp = gd + p * channels;
        for (int64_t c = 0; c < channels; ++c) {
          const double g = static_cast<double>(gp[c]);
          s[c] += g;
          d[c] += g * (static_cast<double>(xp[c]) - m[c]);
        }
      });
    });
    return out;
  }
  at::Tensor dy = grad_output.contiguous();
  at::Tensor x = input.contiguous();
  const Layout l = layout_of(x);
  const std::vector<double> m = channel_values(mean);
  std::vector<double> sums(l.rows()), dots(l.rows());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "channel_grad_sums", [&] {
    const scalar_t* xd = x.data_ptr<scalar_t>();
    const scalar_t* gd = dy.data_ptr<scalar_t>();
    for_each_row(l, [&](int64_t r, int64_t c) {
      const scalar_t* xr = xd + r * l.inner;
      const scalar_t* gr = gd + r * l.inner;
      const double mc = m[c];
      row_pair_sums(
          l.inner,
          [&](int64_t i, double& s, double& d) {
            const double g = static_cast<double>(gr[i]);
            s += g;
            d += g * (static_cast<double>(xr[i]) - mc);
          },
          sums[r], dots[r]);
    });
  });
  return sum_rows_per_channel(l, sums, dots);
}

at::Tensor channel_affine(const at::Tensor& input, const at::Tensor& scale, const at::Tensor& shift) {
  if (is_channels_last(input)) {
    at::Tensor out = at::empty_like(input, at::MemoryFormat::ChannelsLast);
    const int64_t channels = input.size(1), pixels = input.numel() / std::max<int64_t>(1, channels);
    const std::vector<double> a = channel_values(scale), b = channel_values(shift);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "channel_affine_cl", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const std::vector<acc_t> ac(a.begin(), a.end()), bc(b.begin(), b.end());
      const scalar_t* xd = input.data_ptr<scalar_t>();
      scalar_t* od = out.data_ptr<scalar_t>();
      at::parallel_for(0, pixels, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, channels)), [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
          const scalar_t* xp = xd + p * channels;
          scalar_t* op = od + p * channels;
          for (int64_t c = 0; c < channels; ++c) op[c] = static_cast<scalar_t>(static_cast<acc_t>(xp[c]) * ac[c] + bc[c]);
        }
      });
    });
    return out;
  }
  at::Tensor x = input.contiguous();
  at::Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
  const Layout l = layout_of(x);
  const std::vector<double> a = channel_values(scale), b = channel_values(shift);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "channel_affine", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xd = x.data_ptr<scalar_t>();
    scalar_t* od = out.data_ptr<scalar_t>();
    for_each_row(l, [&](int64_t r, int64_t c) {
      const acc_t ac = static_cast<acc_t>(a[c]), bc = static_cast<acc_t>(b[c]);
      const scalar_t* xr = xd + r * l.inner;
      scalar_t* orow = od + r * l.inner;
      for (int64_t i = 0; i < l.inner; ++i) orow[i] = static_cast<scalar_t>(static_cast<acc_t>(xr[i]) * ac + bc);
    });
  });
  return out;
}

at::Tensor batch_norm_input_grad(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& mean,
                                 const at::Tensor& dy_scale, const at::Tensor& x_scale, const at::Tensor& offset) {
  if (is_channels_last(input)) {
    const at::Tensor dy = grad_output.contiguous(at::MemoryFormat::ChannelsLast);
    at::Tensor dx = at::empty_like(input, at::MemoryFormat::ChannelsLast);
    const int64_t channels = input.size(1), pixels = input.numel() / std::max<int64_t>(1, channels);
    const std::vector<double> m = channel_values(mean), ks = channel_values(dy_scale), kx = channel_values(x_scale),
                              k0 = channel_values(offset);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "batch_norm_input_grad_cl", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const std::vector<acc_t> mc(m.begin(), m.end()), sc(ks.begin(), ks.end()), xc(kx.begin(), kx.end()),
          oc(k0.begin(), k0.end());
      const scalar_t* xd = input.data_ptr<scalar_t>();
      const scalar_t* gd = dy.data_ptr<scalar_t>();
      scalar_t* od = dx.data_ptr<scalar_t>();
      at::parallel_for(0, pixels, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, channels)), [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
          const size_t base = static_cast<size_t>(p * channels);
          for (int64_t c = 0; c < channels; ++c) {
            const acc_t g = static_cast<acc_t>(gd[base + c]);
            const acc_t v = static_cast<acc_t>(xd[base + c]);
            od[base + c] = static_cast<scalar_t>(g * sc[c] + (v - mc[c]) * xc[c] + oc[c]);
          }
        }
      });
    });
    return dx;
  }
  at::Tensor dy = grad_output.contiguous();
  at::Tensor x = input.contiguous();
  at::Tensor dx = at::empty_like(x, at::MemoryFormat::Contiguous);
  const Layout l = layout_of(x);
  const std::vector<double> m = channel_values(mean), ks = channel_values(dy_scale), kx = channel_values(x_scale),
                            k0 = channel_values(offset);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "batch_norm_input_grad", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xd = x.data_ptr<scalar_t>();
    const scalar_t* gd = dy.data_ptr<scalar_t>();
    scalar_t* out = dx.data_ptr<scalar_t>();
    for_each_row(l, [&](int64_t r, int64_t c) {
      const acc_t mc = static_cast<acc_t>(m[c]), sc = static_cast<acc_t>(ks[c]), xc = static_cast<acc_t>(kx[c]),
                  oc = static_cast<acc_t>(k0[c]);
      const size_t base = static_cast<size_t>(r * l.inner);
      for (int64_t i = 0; i < l.inner; ++i) {
        const acc_t g = static_cast<acc_t>(gd[base + i]);
        const acc_t v = static_cast<acc_t>(xd[base + i]);
        out[base + i] = static_cast<scalar_t>(g * sc + (v - mc) * xc + oc);
      }
    });
  });
  return dx;
}

}  // namespace segtool::ops::cpu
