#include "radar/cpu_operator.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "radar/error.hpp"

namespace nfmimo {
namespace {

// GCC/Clang vector extension: 8 floats, one AVX register. Arithmetic on it is lane-wise and always
// vectorised.
using v8f = float __attribute__((vector_size(32)));
constexpr int W = CpuOperator::kLanes;
// image() reads exp(j kappa_k R) from the table at every kSeedEvery-th frequency and steps to the others by
// float complex products (uniform sweeps): each step adds about one float rounding, so at most 4 of them keep
// the phasor within ~5e-7 of the table's while reading a fifth of the table (the table is 92 MB for the paper
// grid and K = 15, and streaming it bounded batch 1).
constexpr int kSeedEvery = 5;

inline v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
// a * b + c, lane-wise, fused (one rounding) where the target has FMA.
inline v8f fma8(v8f a, float b, v8f c) {
#if defined(__FMA__)
  const v8f bv = {b, b, b, b, b, b, b, b};
  return __builtin_ia32_vfmaddps256(a, bv, c);
#else
  return a * b + c;
#endif
}
inline float hsum(v8f v) {
  float s = 0;
  for (int i = 0; i < W; ++i) s += v[i];
  return s;
}

// One frequency's contribution to NB consecutive voxel blocks (8 voxels each) of every frame:
// out[n * 2 + j] += sum_t wt[j][t] sum_r wr[j][r] y[n, t, r] (complex, lane-wise), with the transmitter
// weights w[j * A + t] and the receiver weights w[j * A + T + r]. The receiver sum of one block runs in four
// accumulators (re re, im im, re im, im re) combined after the loop, so 4 NB chains of fused multiply-adds
// are independent: with one complex accumulator per block the FMA units would mostly wait on each other's
// latency (docs/performance.md, "CPU physics operators").
template <int NB>
void accumulate_frequency(const v8f* w_re, const v8f* w_im, int A, int T, int R, const cfloat* y,
                          std::size_t frame_stride, int batch, v8f* out_re, v8f* out_im) {
  for (int n = 0; n < batch; ++n) {
    const cfloat* Y = y + std::size_t(n) * frame_stride;
    v8f o_re[NB] = {}, o_im[NB] = {};
    for (int t = 0; t < T; ++t) {
      v8f rr[NB] = {}, ii[NB] = {}, ri[NB] = {}, ir[NB] = {};
      for (int r = 0; r < R; ++r) {
        const float yr = Y[t * R + r].real(), yi = Y[t * R + r].imag();
        for (int j = 0; j < NB; ++j) {
          const v8f wr = w_re[j * A + T + r], wi = w_im[j * A + T + r];
          rr[j] = fma8(wr, yr, rr[j]);
          ii[j] = fma8(wi, yi, ii[j]);
          ri[j] = fma8(wr, yi, ri[j]);
          ir[j] = fma8(wi, yr, ir[j]);
        }
      }
      for (int j = 0; j < NB; ++j) {
        const v8f s_re = rr[j] - ii[j], s_im = ri[j] + ir[j];
        o_re[j] += w_re[j * A + t] * s_re - w_im[j * A + t] * s_im;
        o_im[j] += w_re[j * A + t] * s_im + w_im[j * A + t] * s_re;
      }
    }
    for (int j = 0; j < NB; ++j) {
      out_re[n * 2 + j] += o_re[j];
      out_im[n * 2 + j] += o_im[j];
    }
  }
}

}  // namespace

FastModeParams fast_mode_params(const RadarSystem& system, int oversampling) {
  const int K = system.frequencies();
  require(system.sweep.uniform(),
          "the fast adjoint mode needs uniformly spaced frequencies; use the exact mode for this system");
  require(oversampling >= 2, fmt::format("fast-mode oversampling must be at least 2 (got {})", oversampling));
  FastModeParams p;
  p.profile_length = static_cast<int>(std::bit_ceil(static_cast<unsigned>(std::max(oversampling * K, 4))));
  p.center_index = (K - 1) / 2;
  p.center_wavenumber = wavenumber(system.sweep[p.center_index]);
  p.samples_per_metre = p.profile_length * system.sweep.step() / kSpeedOfLight;
  return p;
}

CpuOperator::CpuOperator(RadarSystem system, ImagingGrid grid) : system_(std::move(system)), grid_(grid) {
  validate_system(system_, "system");
  validate_grid(grid_, system_, "grid");
  const int K = system_.frequencies(), T = system_.transmitters(), A = antennas();
  const std::size_t V = grid_.voxels();
  blocks_ = (V + W - 1) / W;
  range_.resize(blocks_ * A * W);
  dz_.resize(blocks_ * A * W);
  phasor_.resize(blocks_ * K * A * 2 * W);
  if (system_.sweep.uniform() && K > 1) phasor_step_.resize(blocks_ * A * 2 * W);

  std::vector<double> kappa(K);
  for (int k = 0; k < K; ++k) kappa[k] = wavenumber(system_.sweep[k]);
  const bool uniform = system_.sweep.uniform();
  const double dkappa = uniform && K > 1 ? wavenumber(system_.sweep.step()) : 0.0;

#pragma omp parallel for schedule(static)
  for (std::size_t b = 0; b < blocks_; ++b) {
    for (int lane = 0; lane < W; ++lane) {
      // Padded lanes of the last block repeat the last voxel: finite values, results discarded.
      const std::size_t v = std::min(b * W + lane, V - 1);
      const int iz = static_cast<int>(v % grid_.z().size);
      const int iy = static_cast<int>((v / grid_.z().size) % grid_.y().size);
      const int ix = static_cast<int>(v / (std::size_t(grid_.z().size) * grid_.y().size));
      const double px = grid_.x()[ix], py = grid_.y()[iy], pz = grid_.z()[iz];
      for (int a = 0; a < A; ++a) {
        const Vec3& p = a < T ? system_.array.tx()[a] : system_.array.rx()[a - T];
        const double dx = px - p.x, dy = py - p.y, dz = pz - p.z;
        const double R = std::sqrt(dx * dx + dy * dy + dz * dz);
        range_[(b * A + a) * W + lane] = R;
        dz_[(b * A + a) * W + lane] = dz;
        // Uniform sweeps: exp(j kappa_k R) by a double-precision recurrence (two sincos per antenna and
        // voxel; the error after 40 steps is ~1e-14, far below float rounding). Otherwise one sincos per
        // term.
        cdouble e = std::polar(1.0, reduce_phase(kappa[0] * R));
        const cdouble step = std::polar(1.0, reduce_phase(dkappa * R));
        if (!phasor_step_.empty()) {
          float* Q = &phasor_step_[(b * A + a) * 2 * W];
          Q[lane] = static_cast<float>(step.real());
          Q[W + lane] = static_cast<float>(step.imag());
        }
        for (int k = 0; k < K; ++k) {
          if (!uniform && k > 0) e = std::polar(1.0, reduce_phase(kappa[k] * R));
          float* P = &phasor_[((b * K + k) * A + a) * 2 * W];
          P[lane] = static_cast<float>(e.real());
          P[W + lane] = static_cast<float>(e.imag());
          if (uniform) e *= step;
        }
      }
    }
  }
}

void CpuOperator::image(Method method, const cfloat* y, cfloat* x, int batch) const {
  const int K = system_.frequencies(), T = system_.transmitters(), R = system_.receivers(), A = antennas();
  const std::size_t V = grid_.voxels();
  std::vector<float> kappa(K);
  for (int k = 0; k < K; ++k) kappa[k] = static_cast<float>(wavenumber(system_.sweep[k]));
  const std::size_t pairs = (blocks_ + 1) / 2;

#pragma omp parallel
  {
    // Per block j of the pair: gains [j * A + a], this frequency's weights, and the frames' sums [n * 2 + j].
    std::vector<v8f> c0(2 * A), c1(2 * A), e_re(2 * A), e_im(2 * A), w_re(2 * A), w_im(2 * A),
        out_re(2 * batch), out_im(2 * batch);
#pragma omp for schedule(static)
    for (std::size_t pair = 0; pair < pairs; ++pair) {
      const std::size_t first = 2 * pair;
      const int nb = static_cast<int>(std::min<std::size_t>(2, blocks_ - first));
      for (int j = 0; j < nb; ++j)
        for (int a = 0; a < A; ++a)
          for (int lane = 0; lane < W; ++lane) {
            const std::size_t i = ((first + j) * A + a) * W + lane;
            const SideGain g = side_gain(method, a < T, range_[i], dz_[i]);
            c0[j * A + a][lane] = static_cast<float>(g.c0);
            c1[j * A + a][lane] = static_cast<float>(g.c1);
          }
      std::fill(out_re.begin(), out_re.end(), v8f{});
      std::fill(out_im.begin(), out_im.end(), v8f{});
      for (int k = 0; k < K; ++k) {
        // This frequency's phasors exp(j kappa_k R): read from the table every kSeedEvery frequencies, else
        // one float step from the previous frequency's (uniform sweeps).
        const bool seed = phasor_step_.empty() || k % kSeedEvery == 0;
        for (int j = 0; j < nb; ++j) {
          const float* P = &phasor_[((first + j) * K + k) * A * 2 * W];
          const float* Q = phasor_step_.empty() ? nullptr : &phasor_step_[(first + j) * A * 2 * W];
          for (int a = 0; a < A; ++a) {
            v8f& er = e_re[j * A + a];
            v8f& ei = e_im[j * A + a];
            if (seed) {
              er = load8(P + a * 2 * W), ei = load8(P + a * 2 * W + W);
            } else {
              const v8f s_re = load8(Q + a * 2 * W), s_im = load8(Q + a * 2 * W + W);
              const v8f next_re = er * s_re - ei * s_im;
              ei = er * s_im + ei * s_re;
              er = next_re;
            }
          }
        }
        // Per-antenna weights for this frequency: (c0 + j kappa c1) exp(j kappa R).
        for (int j = 0; j < nb; ++j)
          for (int a = 0; a < A; ++a) {
            const v8f er = e_re[j * A + a], ei = e_im[j * A + a];
            const v8f g_im = kappa[k] * c1[j * A + a];
            w_re[j * A + a] = c0[j * A + a] * er - g_im * ei;
            w_im[j * A + a] = c0[j * A + a] * ei + g_im * er;
          }
        const cfloat* Yk = y + std::size_t(k) * T * R;
        const std::size_t frame = std::size_t(K) * T * R;
        if (nb == 2)
          accumulate_frequency<2>(w_re.data(), w_im.data(), A, T, R, Yk, frame, batch, out_re.data(),
                                  out_im.data());
        else
          accumulate_frequency<1>(w_re.data(), w_im.data(), A, T, R, Yk, frame, batch, out_re.data(),
                                  out_im.data());
      }
      for (int j = 0; j < nb; ++j) {
        const std::size_t b = first + j;
        const int valid = static_cast<int>(std::min<std::size_t>(W, V - b * W));
        for (int n = 0; n < batch; ++n)
          for (int lane = 0; lane < valid; ++lane)
            x[n * V + b * W + lane] = {out_re[n * 2 + j][lane], out_im[n * 2 + j][lane]};
      }
    }
  }
}

void CpuOperator::forward(const cfloat* x, cfloat* y, int batch) const {
  const int K = system_.frequencies(), T = system_.transmitters(), R = system_.receivers(), A = antennas();
  const std::size_t V = grid_.voxels();
  // Tasks are (frequency, chunk of samples): each owns its outputs, so no reduction between threads. The
  // accumulators of one task (chunk * T * R lane vectors) stay in L1/L2.
  constexpr int kChunk = 2;
  const int chunks = (batch + kChunk - 1) / kChunk;
  const int tasks = K * chunks;

#pragma omp parallel
  {
    std::vector<v8f> w_re(A), w_im(A), acc_re(std::size_t(kChunk) * T * R),
        acc_im(std::size_t(kChunk) * T * R);
#pragma omp for schedule(dynamic)
    for (int task = 0; task < tasks; ++task) {
      const int k = task % K, n0 = (task / K) * kChunk, nc = std::min(kChunk, batch - n0);
      std::fill(acc_re.begin(), acc_re.end(), v8f{});
      std::fill(acc_im.begin(), acc_im.end(), v8f{});
      for (std::size_t b = 0; b < blocks_; ++b) {
        // Load the chunk's samples first: a block that is zero in every sample adds exact zeros to the sums,
        // so it is skipped (bit-identical results; sparse volumes such as synthesized scenes run many times
        // faster).
        const int valid = static_cast<int>(std::min<std::size_t>(W, V - b * W));
        v8f xs_re[kChunk] = {}, xs_im[kChunk] = {};
        bool any = false;
        for (int j = 0; j < nc; ++j) {
          const cfloat* X = x + (n0 + j) * V + b * W;
          for (int lane = 0; lane < valid; ++lane) {
            xs_re[j][lane] = X[lane].real();
            xs_im[j][lane] = X[lane].imag();
            any |= X[lane].real() != 0.f || X[lane].imag() != 0.f;
          }
        }
        if (!any) continue;
        const float* P = &phasor_[(b * K + k) * A * 2 * W];
        // conj of the adjoint weights: A[k,t,r;v] = conj(w_t) conj(w_r).
        for (int a = 0; a < A; ++a) {
          v8f g;
          for (int lane = 0; lane < W; ++lane)
            g[lane] =
                static_cast<float>(side_gain(Method::Adjoint, a < T, range_[(b * A + a) * W + lane], 0.0).c0);
          w_re[a] = g * load8(P + a * 2 * W);
          w_im[a] = -g * load8(P + a * 2 * W + W);
        }
        for (int j = 0; j < nc; ++j) {
          const v8f x_re = xs_re[j], x_im = xs_im[j];
          v8f* ar = &acc_re[std::size_t(j) * T * R];
          v8f* ai = &acc_im[std::size_t(j) * T * R];
          for (int t = 0; t < T; ++t) {
            const v8f u_re = w_re[t] * x_re - w_im[t] * x_im;
            const v8f u_im = w_re[t] * x_im + w_im[t] * x_re;
            for (int r = 0; r < R; ++r) {
              ar[t * R + r] += w_re[T + r] * u_re - w_im[T + r] * u_im;
              ai[t * R + r] += w_re[T + r] * u_im + w_im[T + r] * u_re;
            }
          }
        }
      }
      for (int j = 0; j < nc; ++j)
        for (int tr = 0; tr < T * R; ++tr)
          y[(std::size_t(n0 + j) * K + k) * T * R + tr] = {hsum(acc_re[std::size_t(j) * T * R + tr]),
                                                           hsum(acc_im[std::size_t(j) * T * R + tr])};
    }
  }
}

void CpuOperator::image_fast(Method method, const cfloat* y, cfloat* x, int batch, int oversampling) const {
  require(method != Method::Kirchhoff,
          "the fast mode supports the adjoint and backprojection; Kirchhoff migration needs --mode exact");
  const FastModeParams p = fast_mode_params(system_, oversampling);
  const int K = system_.frequencies(), T = system_.transmitters(), R = system_.receivers(), A = antennas();
  const int M = p.profile_length, TR = T * R;
  const std::size_t V = grid_.voxels();

  // Inverse DFT table E[k][m] = exp(+j 2 pi (k - kc) m / M).
  std::vector<cfloat> E(std::size_t(K) * M);
  for (int k = 0; k < K; ++k)
    for (int m = 0; m < M; ++m) {
      const long long turns = (static_cast<long long>(k - p.center_index) * m) % M;
      E[std::size_t(k) * M + m] = cfloat(std::polar(1.0, kTwoPi * static_cast<double>(turns) / M));
    }

  constexpr int kChunk = 8;
  std::vector<cfloat> profiles(std::size_t(kChunk) * TR * M);
  for (int n0 = 0; n0 < batch; n0 += kChunk) {
    const int nc = std::min(kChunk, batch - n0);
    // 1. Range compression: one zero-padded inverse DFT per (sample, TX, RX).
#pragma omp parallel for schedule(static)
    for (int jtr = 0; jtr < nc * TR; ++jtr) {
      const int j = jtr / TR, tr = jtr % TR;
      cfloat* S = &profiles[std::size_t(jtr) * M];
      for (int m = 0; m < M; ++m) S[m] = 0;
      for (int k = 0; k < K; ++k) {
        const cfloat yk = y[(std::size_t(n0 + j) * K + k) * TR + tr];
        const cfloat* e = &E[std::size_t(k) * M];
        for (int m = 0; m < M; ++m) S[m] += yk * e[m];
      }
    }
    // 2. Per voxel: interpolate each pair's profile at Rt + Rr, weight by the gains at the centre frequency.
#pragma omp parallel for schedule(static)
    for (std::size_t v = 0; v < V; ++v) {
      const std::size_t b = v / W;
      const int lane = static_cast<int>(v % W);
      const float* P = &phasor_[(b * K + p.center_index) * A * 2 * W];
      cfloat acc[kChunk] = {};
      for (int t = 0; t < T; ++t) {
        const std::size_t it = (b * A + t) * W + lane;
        const SideGain gt = side_gain(method, true, range_[it], dz_[it]);
        const cfloat at = static_cast<float>(gt.c0) * cfloat(P[t * 2 * W + lane], P[t * 2 * W + W + lane]);
        for (int r = 0; r < R; ++r) {
          const std::size_t ir = (b * A + T + r) * W + lane;
          const SideGain gr = side_gain(method, false, range_[ir], dz_[ir]);
          const cfloat br =
              static_cast<float>(gr.c0) * cfloat(P[(T + r) * 2 * W + lane], P[(T + r) * 2 * W + W + lane]);
          double u = (range_[it] + range_[ir]) * p.samples_per_metre;
          u -= std::floor(u / M) * M;
          const int i0 = static_cast<int>(u);
          float w[4];
          cubic_lagrange_weights(static_cast<float>(u - i0), w);
          const cfloat ab = at * br;
          for (int j = 0; j < nc; ++j) {
            const cfloat* S = &profiles[(std::size_t(j) * TR + t * R + r) * M];
            const cfloat s = w[0] * S[(i0 + M - 1) & (M - 1)] + w[1] * S[i0 & (M - 1)] +
                             w[2] * S[(i0 + 1) & (M - 1)] + w[3] * S[(i0 + 2) & (M - 1)];
            acc[j] += ab * s;
          }
        }
      }
      for (int j = 0; j < nc; ++j) x[std::size_t(n0 + j) * V + v] = acc[j];
    }
  }
}

}  // namespace nfmimo
