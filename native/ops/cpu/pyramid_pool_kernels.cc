#include "ops/cpu/pyramid_pool_kernels.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "ops/pool_bins.h"

namespace segtool::ops::cpu {
namespace {

PoolBins make_bins(c10::ArrayRef<int64_t> sizes) {
  if (sizes.empty() || sizes.size() > static_cast<size_t>(kMaxPoolBins))
    throw std::invalid_argument("pyramid_pool: expected 1 to " + std::to_string(kMaxPoolBins) + " bin sizes, got " +
                                std::to_string(sizes.size()));
  PoolBins bins;
  for (int64_t b : sizes) {
    if (b < 1 || b > kMaxBinSize)
      throw std::invalid_argument("pyramid_pool: bin sizes must be in [1, " + std::to_string(kMaxBinSize) + "], got " +
                                  std::to_string(b));
    bins.add(static_cast<int>(b));
  }
  return bins;
}

bool is_channels_last(const at::Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

void check_input(const at::Tensor& x) {
  if (x.dim() != 4) throw std::invalid_argument("pyramid_pool: expected [N, C, H, W], got " + std::to_string(x.dim()) + " dimension(s)");
  if (x.size(2) < 1 || x.size(3) < 1) throw std::invalid_argument("pyramid_pool: empty spatial size");
}

// One packed cell: rows [h0, h1), columns [w0, w1).
struct Cell {
  int64_t h0, h1, w0, w1;
  int64_t area() const { return (h1 - h0) * (w1 - w0); }
};

std::vector<Cell> cells_of(const PoolBins& bins, int64_t height, int64_t width) {
  std::vector<Cell> cells;
  cells.reserve(bins.cells);
  for (int s = 0; s < bins.count; ++s) {
    const int64_t b = bins.size[s];
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < b; ++j)
        cells.push_back({bin_start(i, b, height), bin_end(i, b, height), bin_start(j, b, width), bin_end(j, b, width)});
  }
  return cells;
}

// For each position along one axis, the packed cells' row (or column) indices covering it:
// per bin size s, the first and last bin index i with start(i) <= p < end(i).
struct Cover {
  std::vector<int32_t> first, last;  // [count * size]
};

Cover cover_of(const PoolBins& bins, int64_t size) {
  Cover c;
  c.first.resize(bins.count * size);
  c.last.resize(bins.count * size);
  for (int s = 0; s < bins.count; ++s) {
    const int64_t b = bins.size[s];
    for (int64_t p = 0; p < size; ++p) {
      int32_t lo = -1, hi = -1;
      for (int64_t i = 0; i < b; ++i) {
        if (bin_start(i, b, size) <= p && p < bin_end(i, b, size)) {
          if (lo < 0) lo = static_cast<int32_t>(i);
          hi = static_cast<int32_t>(i);
        }
      }
      c.first[s * size + p] = lo;
      c.last[s * size + p] = hi;
    }
  }
  return c;
}

}  // namespace

at::Tensor pyramid_pool_forward(const at::Tensor& input, c10::ArrayRef<int64_t> bin_sizes) {
  check_input(input);
  const PoolBins bins = make_bins(bin_sizes);
  const bool cl = is_channels_last(input);
  const at::Tensor x = cl ? input : input.contiguous();
  const int64_t n = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
  const std::vector<Cell> cells = cells_of(bins, height, width);
  const int64_t ncells = bins.cells;
  at::Tensor out = cl ? at::empty({n, ncells, channels}, x.options()).permute({0, 2, 1})
                      : at::empty({n, channels, ncells}, x.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pyramid_pool_forward", [&] {
    const scalar_t* xd = x.data_ptr<scalar_t>();
    scalar_t* od = out.data_ptr<scalar_t>();
    if (!cl) {
      // One plane per task (it stays in cache): per bin row, the column sums over its rows
      // (independent accumulators, so the loop vectorises), then the cells as sums of those.
      at::parallel_for(0, n * channels, 1, [&](int64_t begin, int64_t end) {
        std::vector<double> colsum(width);
        for (int64_t plane = begin; plane < end; ++plane) {
          const scalar_t* p = xd + plane * height * width;
          scalar_t* o = od + plane * ncells;
          for (int s = 0; s < bins.count; ++s) {
            const int64_t b = bins.size[s];
            for (int64_t i = 0; i < b; ++i) {
              const int64_t h0 = bin_start(i, b, height), h1 = bin_end(i, b, height);
              std::fill(colsum.begin(), colsum.end(), 0.0);
              for (int64_t h = h0; h < h1; ++h) {
                const scalar_t* row = p + h * width;
                for (int64_t w = 0; w < width; ++w) colsum[w] += static_cast<double>(row[w]);
              }
              for (int64_t j = 0; j < b; ++j) {
                const int64_t w0 = bin_start(j, b, width), w1 = bin_end(j, b, width);
                double sum = 0;
                for (int64_t w = w0; w < w1; ++w) sum += colsum[w];
                o[bins.offset[s] + i * b + j] = static_cast<scalar_t>(sum / static_cast<double>((h1 - h0) * (w1 - w0)));
              }
            }
          }
        }
      });
    } else {
      // Channels-last: one (image, cell) per task, summing C-long pixel vectors.
      at::parallel_for(0, n * ncells, 1, [&](int64_t begin, int64_t end) {
        std::vector<double> acc(channels);
        for (int64_t task = begin; task < end; ++task) {
          const int64_t img = task / ncells, k = task % ncells;
          const Cell& cell = cells[k];
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t h = cell.h0; h < cell.h1; ++h) {
            for (int64_t w = cell.w0; w < cell.w1; ++w) {
              const scalar_t* px = xd + ((img * height + h) * width + w) * channels;
              for (int64_t c = 0; c < channels; ++c) acc[c] += static_cast<double>(px[c]);
            }
          }
          const double area = static_cast<double>(cell.area());
          scalar_t* o = od + (img * ncells + k) * channels;
          for (int64_t c = 0; c < channels; ++c) o[c] = static_cast<scalar_t>(acc[c] / area);
        }
      });
    }
  });
  return out;
}

at::Tensor pyramid_pool_backward(const at::Tensor& grad, const at::Tensor& like, c10::ArrayRef<int64_t> bin_sizes) {
  check_input(like);
  const PoolBins bins = make_bins(bin_sizes);
  const bool cl = is_channels_last(like);
  const int64_t n = like.size(0), channels = like.size(1), height = like.size(2), width = like.size(3);
  const int64_t ncells = bins.cells;
  if (grad.dim() != 3 || grad.size(0) != n || grad.size(1) != channels || grad.size(2) != ncells)
    throw std::invalid_argument("pyramid_pool_backward: expected a gradient of shape [" + std::to_string(n) + ", " +
                                std::to_string(channels) + ", " + std::to_string(ncells) + "]");
  const std::vector<Cell> cells = cells_of(bins, height, width);
  const Cover rows = cover_of(bins, height), cols = cover_of(bins, width);
  at::Tensor dx = at::empty(like.sizes(), like.options().memory_format(cl ? at::MemoryFormat::ChannelsLast
                                                                           : at::MemoryFormat::Contiguous));
  if (dx.numel() == 0) return dx;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, like.scalar_type(), "pyramid_pool_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto acc_type = c10::CppTypeToScalarType<acc_t>::value;
    // grad / area per cell, in the accumulation type, laid out as dx's planes or pixels want it.
    at::Tensor area = at::empty({ncells}, at::kDouble);
    for (int64_t k = 0; k < ncells; ++k) area.data_ptr<double>()[k] = static_cast<double>(cells[k].area());
    at::Tensor delta = (grad.to(acc_type) / area.to(acc_type));
    delta = cl ? delta.transpose(1, 2).contiguous() : delta.contiguous();  // [N, cells, C] or [N, C, cells]
    const acc_t* dd = delta.data_ptr<acc_t>();
    scalar_t* out = dx.data_ptr<scalar_t>();
    if (!cl) {
      // One plane per task: each cell adds its delta to its rectangle of a plane-sized buffer
      // (cells in packed order: every pixel sums its cells in the same order as the channels-last path).
      at::parallel_for(0, n * channels, 1, [&](int64_t begin, int64_t end) {
        std::vector<acc_t> buf(height * width);
        for (int64_t plane = begin; plane < end; ++plane) {
          const acc_t* d = dd + plane * ncells;
          std::fill(buf.begin(), buf.end(), acc_t(0));
          for (int64_t k = 0; k < ncells; ++k) {
            const Cell& cell = cells[k];
            const acc_t v = d[k];
            for (int64_t h = cell.h0; h < cell.h1; ++h) {
              acc_t* row = buf.data() + h * width;
              for (int64_t w = cell.w0; w < cell.w1; ++w) row[w] += v;
            }
          }
          scalar_t* o = out + plane * height * width;
          for (int64_t e = 0; e < height * width; ++e) o[e] = static_cast<scalar_t>(buf[e]);
        }
      });
    } else {
      at::parallel_for(0, n * height, 1, [&](int64_t begin, int64_t end) {
        std::vector<acc_t> acc(channels);
        for (int64_t task = begin; task < end; ++task) {
          const int64_t img = task / height, h = task % height;
          const acc_t* d = dd + img * ncells * channels;
          for (int64_t w = 0; w < width; ++w) {
            // The cells covering (h, w) in packed order, each adding a C-long delta vector.
            std::fill(acc.begin(), acc.end(), acc_t(0));
            for (int s = 0; s < bins.count; ++s) {
              const int64_t b = bins.size[s];
              const int32_t i0 = rows.first[s * height + h], i1 = rows.last[s * height + h];
              const int32_t j0 = cols.first[s * width + w], j1 = cols.last[s * width + w];
              for (int32_t i = i0; i <= i1; ++i)
                for (int32_t j = j0; j <= j1; ++j) {
                  const acc_t* dk = d + (bins.offset[s] + i * b + j) * channels;
                  for (int64_t c = 0; c < channels; ++c) acc[c] += dk[c];
                }
            }
            scalar_t* o = out + ((img * height + h) * width + w) * channels;
            for (int64_t c = 0; c < channels; ++c) o[c] = static_cast<scalar_t>(acc[c]);
          }
        }
      });
    }
  });
  return dx;
}

}  // namespace segtool::ops::cpu
