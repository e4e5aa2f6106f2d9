// The per-element sums of the thin-convolution kernels (models/nn/cuda/thin_conv.cu), shared with the host so
// that tests/test_preflight.cpp checks the same index arithmetic against the double reference without a GPU.
//
// Layouts (the cuDNN backend's): activations channels-last [n, x, y, z, c]; filter [K, kx, ky, kz, C], i.e.
// w[(o * taps + t) * C + c] with the tap t = (i * ky + j) * kz + l. Cross-correlation as the reference
// defines it: input voxel = output voxel * stride - pad_lo + tap, zeros outside the input. Loads are
// callables (index -> float), so the CUDA kernels pass their storage-type loads and the host test plain
// arrays; every sum is float32 with fmaf, as on the GPU.
#pragma once

#include <cmath>
#include <cstddef>

#if defined(__CUDACC__)
#define NFMIMO_THIN_HD __host__ __device__ inline
#else
#define NFMIMO_THIN_HD inline
#endif

namespace nfmimo::nn::thin {

struct Dims {
  int n, c, x, y, z;
};

struct Geometry {
  Dims in, out;                            // in.c = C input channels, out.c = K output channels
  int kx, ky, kz, sx, sy, sz, px, py, pz;  // kernel, stride, pad_lo
};

NFMIMO_THIN_HD int taps(const Geometry& g) { return g.kx * g.ky * g.kz; }
NFMIMO_THIN_HD std::size_t rows(const Dims& d) { return static_cast<std::size_t>(d.n) * d.x * d.y * d.z; }
NFMIMO_THIN_HD int filter_weights(const Geometry& g) { return g.out.c * taps(g) * g.in.c; }

NFMIMO_THIN_HD std::size_t offset(const Dims& d, int n, int x, int y, int z, int c) {
  return (((static_cast<std::size_t>(n) * d.x + x) * d.y + y) * d.z + z) * d.c + c;
}

struct Voxel {
  int n, x, y, z;
};
// The voxel of row r (r = ((n * x + X) * y + Y) * z + Z).
NFMIMO_THIN_HD Voxel voxel_of(const Dims& d, std::size_t r) {
  Voxel v;
  v.z = static_cast<int>(r % d.z);
  r /= d.z;
  v.y = static_cast<int>(r % d.y);
  r /= d.y;
  v.x = static_cast<int>(r % d.x);
  v.n = static_cast<int>(r / d.x);
  return v;
}

// Forward, output element e = row * K + o: start + sum_{i, j, l, c} w[o, (i, j, l), c] x[n, X sx + i - px,
// ..., c].
template <class LoadX, class LoadW>
NFMIMO_THIN_HD float forward_element(const Geometry& g, std::size_t e, const LoadX& x, const LoadW& w,
                                     float start) {
  const int C = g.in.c, K = g.out.c;
  const int o = static_cast<int>(e % K);
  const Voxel v = voxel_of(g.out, e / K);
  const std::size_t w_o = static_cast<std::size_t>(o) * taps(g) * C;
  float sum = start;
  for (int i = 0; i < g.kx; ++i) {
    const int px = v.x * g.sx + i - g.px;
    if (px < 0 || px >= g.in.x) continue;
    for (int j = 0; j < g.ky; ++j) {
      const int py = v.y * g.sy + j - g.py;
      if (py < 0 || py >= g.in.y) continue;
      for (int l = 0; l < g.kz; ++l) {
        const int pz = v.z * g.sz + l - g.pz;
        if (pz < 0 || pz >= g.in.z) continue;
        const std::size_t xi = offset(g.in, v.n, px, py, pz, 0);
        const std::size_t wi = w_o + static_cast<std::size_t>((i * g.ky + j) * g.kz + l) * C;
        for (int c = 0; c < C; ++c) sum = fmaf(w(wi + c), x(xi + c), sum);
      }
    }
  }
  return sum;
}

// Backward data, input element e = row * C + c: sum over taps (i, j, l) and output channels o of
// w[o, (i, j, l), c] dy[n, X, o] for the output voxel X with X sx - px + i = P on every axis, i.e.
// X sx = P + px - i: a non-negative multiple of the stride inside the output (a gather: no atomics).
template <class LoadDy, class LoadW>
NFMIMO_THIN_HD float backward_data_element(const Geometry& g, std::size_t e, const LoadDy& dy,
                                           const LoadW& w) {
  const int C = g.in.c, K = g.out.c;
  const int c = static_cast<int>(e % C);
  const Voxel v = voxel_of(g.in, e / C);
  float sum = 0.f;
  for (int i = 0; i < g.kx; ++i) {
    const int qx = v.x + g.px - i;
    if (qx < 0 || qx % g.sx != 0 || qx / g.sx >= g.out.x) continue;
    for (int j = 0; j < g.ky; ++j) {
      const int qy = v.y + g.py - j;
      if (qy < 0 || qy % g.sy != 0 || qy / g.sy >= g.out.y) continue;
      for (int l = 0; l < g.kz; ++l) {
        const int qz = v.z + g.pz - l;
        if (qz < 0 || qz % g.sz != 0 || qz / g.sz >= g.out.z) continue;
        const std::size_t yo = offset(g.out, v.n, qx / g.sx, qy / g.sy, qz / g.sz, 0);
        const int t = (i * g.ky + j) * g.kz + l;
        for (int o = 0; o < K; ++o)
          sum = fmaf(w((static_cast<std::size_t>(o) * taps(g) + t) * C + c), dy(yo + o), sum);
      }
    }
  }
  return sum;
}

// Filter gradient of weight index `weight` (= (o * taps + t) * C + c) over the output rows r0, r0 + step, ...
// below r1: sum of dy[r, o] x[n, X sx - px + i, ..., c].
template <class LoadX, class LoadDy>
NFMIMO_THIN_HD float filter_sum(const Geometry& g, int weight, std::size_t r0, std::size_t r1,
                                std::size_t step, const LoadX& x, const LoadDy& dy) {
  const int C = g.in.c, K = g.out.c, T = taps(g);
  const int o = weight / (T * C), t = (weight / C) % T, c = weight % C;
  const int i = t / (g.ky * g.kz), j = (t / g.kz) % g.ky, l = t % g.kz;
  float sum = 0.f;
  for (std::size_t r = r0; r < r1; r += step) {
    const Voxel v = voxel_of(g.out, r);
    const int px = v.x * g.sx + i - g.px, py = v.y * g.sy + j - g.py, pz = v.z * g.sz + l - g.pz;
    if (px < 0 || px >= g.in.x || py < 0 || py >= g.in.y || pz < 0 || pz >= g.in.z) continue;
    sum = fmaf(dy(r * K + o), x(offset(g.in, v.n, px, py, pz, c)), sum);
  }
  return sum;
}

// The filter gradient's fixed partition (one block of `threads` per chunk): chunk b covers the output rows
// [chunk_begin(b), chunk_begin(b + 1)); the block takes `width` weights at a time, with `lanes` row lanes
// each (lane m sums rows r0 + m, r0 + m + lanes, ...); the lanes' sums are added in lane order, then the
// chunks' sums in chunk order. Every row falls in exactly one chunk and one lane.
constexpr int kFilterChunks = 512;   // at most this many chunks (blocks)
constexpr int kFilterThreads = 256;  // threads per block
struct FilterPartition {
  int chunks, width, lanes;
};
NFMIMO_THIN_HD FilterPartition filter_partition(const Geometry& g) {
  const int max_chunks = kFilterChunks, threads = kFilterThreads;
  const std::size_t r = rows(g.out);
  const int W = filter_weights(g);
  FilterPartition p;
  p.chunks = r < static_cast<std::size_t>(max_chunks) ? static_cast<int>(r) : max_chunks;
  if (p.chunks < 1) p.chunks = 1;
  p.width = W < threads ? W : threads;
  if (p.width < 1) p.width = 1;
  p.lanes = threads / p.width;
  return p;
}
NFMIMO_THIN_HD std::size_t chunk_begin(std::size_t rows, int chunks, int b) {
  return rows * static_cast<std::size_t>(b) / static_cast<std::size_t>(chunks);
}

}  // namespace nfmimo::nn::thin
