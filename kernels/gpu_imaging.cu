// CUDA implementation of GpuImagingPlan (see gpu_imaging.hpp and docs/physics.md).
//
// Precision: ranges and phases kappa * R are computed in double and reduced to [-pi, pi] before the float
// sincos (a float phase of ~300 rad would carry ~3e-5 rad of error, over the 1e-5 budget); everything else is
// float with float accumulation, like the fast CPU path.
#include <cuda_runtime.h>
#include <cufft.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "kernels/cuda_check.hpp"
#include "kernels/device.hpp"
#include "kernels/device_buffer.hpp"
#include "kernels/gpu_imaging.hpp"
#include "radar/cpu_operator.hpp"
#include "radar/error.hpp"

namespace nfmimo {
namespace {

constexpr int kThreads = 128;       // threads per block of the voxel-parallel kernels
constexpr int kForwardVoxels = 64;  // voxels staged in shared memory per step of the forward kernel
constexpr int kMethods = 3;

__device__ __forceinline__ float2 cmul(float2 a, float2 b) {
  return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
__device__ __forceinline__ float2 cfma(float2 a, float2 b, float2 acc) {
  acc.x = fmaf(a.x, b.x, fmaf(-a.y, b.y, acc.x));
  acc.y = fmaf(a.x, b.y, fmaf(a.y, b.x, acc.y));
  return acc;
}
__device__ __forceinline__ float2 unit_phasor(double kappa, double range) {
  float s, c;
  __sincosf(static_cast<float>(reduce_phase(kappa * range)), &s, &c);
  return make_float2(c, s);
}

struct Geometry {
  const double* range;  // [A][V]
  const float2* gain;   // [method][A][V]: (c0, c1) of side_gain
  const double* kappa;  // [K]
  int K, T, R, V;
};

// One thread per (antenna, voxel): ranges in double, the three methods' gains in float.
__global__ void setup_geometry_kernel(const double3* antennas, int T, int A, double3 origin, double3 step,
                                      int ny, int nz, int V, double* range, float2* gain) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= static_cast<long long>(A) * V) return;
  const int a = static_cast<int>(i / V), v = static_cast<int>(i % V);
  const int iz = v % nz, iy = (v / nz) % ny, ix = v / (nz * ny);
  const double3 p = antennas[a];
  const double dx = origin.x + ix * step.x - p.x, dy = origin.y + iy * step.y - p.y,
               dz = origin.z + iz * step.z - p.z;
  const double R = sqrt(dx * dx + dy * dy + dz * dz);
  range[i] = R;
  for (int m = 0; m < kMethods; ++m) {
    const SideGain g = side_gain(static_cast<Method>(m), a < T, R, dz);
    gain[static_cast<long long>(m) * A * V + i] =
        make_float2(static_cast<float>(g.c0), static_cast<float>(g.c1));
  }
}

// Imaging weight of one antenna at one frequency: (c0 + j kappa c1) exp(j kappa R).
__device__ __forceinline__ float2 antenna_weight(const Geometry& g, const float2* gain, int a, int v,
                                                 double kappa) {
  const float2 c = gain[static_cast<long long>(a) * g.V + v];
  const float2 e = unit_phasor(kappa, g.range[static_cast<long long>(a) * g.V + v]);
  return cmul(make_float2(c.x, static_cast<float>(kappa) * c.y), e);
}

// Exact imaging x[n, v] = sum_k sum_t w_t sum_r w_r y[n, k, t, r]: one thread per voxel, NB samples per
// thread. The y tile of one frequency sits in shared memory (read as broadcasts); each thread keeps its
// receiver weights in its own shared-memory column ([R][blockDim], conflict-free).
template <int NB>
__global__ void __launch_bounds__(kThreads)
    image_exact_kernel(Geometry g, int method, const float2* __restrict__ y, float2* __restrict__ x,
                       int batch) {
  extern __shared__ float2 smem[];
  const int TR = g.T * g.R;
  float2* ys = smem;            // [NB][T*R]
  float2* wr = smem + NB * TR;  // [R][kThreads]
  const int tid = threadIdx.x;
  const int v = blockIdx.x * kThreads + tid;
  const int vv = min(v, g.V - 1);
  const int n0 = blockIdx.y * NB;
  const float2* gain = g.gain + static_cast<long long>(method) * (g.T + g.R) * g.V;
  float2 acc[NB];
#pragma unroll
  for (int j = 0; j < NB; ++j) acc[j] = make_float2(0.f, 0.f);

  for (int k = 0; k < g.K; ++k) {
    __syncthreads();
    for (int i = tid; i < NB * TR; i += kThreads) {
      const int j = i / TR, n = n0 + j;
      ys[i] =
          n < batch ? y[(static_cast<long long>(n) * g.K + k) * TR + (i - j * TR)] : make_float2(0.f, 0.f);
    }
    __syncthreads();
    const double kappa = g.kappa[k];
    for (int r = 0; r < g.R; ++r) wr[r * kThreads + tid] = antenna_weight(g, gain, g.T + r, vv, kappa);
    for (int t = 0; t < g.T; ++t) {
      const float2 wt = antenna_weight(g, gain, t, vv, kappa);
      float2 s[NB];
#pragma unroll
      for (int j = 0; j < NB; ++j) s[j] = make_float2(0.f, 0.f);
      const float2* yt = ys + t * g.R;
      for (int r = 0; r < g.R; ++r) {
        const float2 w = wr[r * kThreads + tid];
#pragma unroll
        for (int j = 0; j < NB; ++j) s[j] = cfma(w, yt[j * TR + r], s[j]);
      }
#pragma unroll
      for (int j = 0; j < NB; ++j) acc[j] = cfma(wt, s[j], acc[j]);
    }
  }
  if (v < g.V)
#pragma unroll
    for (int j = 0; j < NB; ++j)
      if (n0 + j < batch) x[static_cast<long long>(n0 + j) * g.V + v] = acc[j];
}

// Forward y[n, k, t, r] = sum_v conj(w_t w_r) x[n, v] (adjoint weights). Block = (voxel chunk, frequency,
// pair group x sample tile); thread = one (t, r) pair. Each step stages kForwardVoxels voxels' antenna
// phasors and samples in shared memory; partial sums per chunk go to `partial` and are reduced by
// forward_reduce_kernel (deterministic order, no atomics).
template <int NB>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(Geometry g, const float2* __restrict__ x, float2* __restrict__ partial, int batch,
                   int chunk_voxels, int pair_groups) {
  extern __shared__ float2 smem[];
  constexpr int S = kForwardVoxels + 1;  // padded stride: receivers of one warp hit different banks
  const int A = g.T + g.R, TR = g.T * g.R;
  float2* ph = smem;          // [A][S]
  float2* xs = smem + A * S;  // [NB][kForwardVoxels]
  const int tid = threadIdx.x;
  const int chunk = blockIdx.x, k = blockIdx.y;
  const int group = blockIdx.z % pair_groups, n0 = (blockIdx.z / pair_groups) * NB;
  const int p = group * kThreads + tid;
  const bool active = p < TR;
  const int t = active ? p / g.R : 0, r = active ? p % g.R : 0;
  const double kappa = g.kappa[k];
  const float2* gain = g.gain + static_cast<long long>(static_cast<int>(Method::Adjoint)) * A * g.V;
  const int v_begin = chunk * chunk_voxels, v_end = min(g.V, v_begin + chunk_voxels);

  float2 acc[NB];
#pragma unroll
  for (int j = 0; j < NB; ++j) acc[j] = make_float2(0.f, 0.f);

  for (int v0 = v_begin; v0 < v_end; v0 += kForwardVoxels) {
    __syncthreads();
    int nonzero = 0;
    for (int i = tid; i < NB * kForwardVoxels; i += kThreads) {
      const int j = i / kForwardVoxels, v = v0 + i % kForwardVoxels, n = n0 + j;
      const float2 xv =
          (n < batch && v < v_end) ? x[static_cast<long long>(n) * g.V + v] : make_float2(0.f, 0.f);
      xs[i] = xv;
      nonzero |= (xv.x != 0.f) | (xv.y != 0.f);
    }
    // A tile that is zero in every sample of the block would add exact zeros: skip its phasors and products
    // (bit-identical results; sparse volumes such as synthesized scenes skip many tiles). The decision is
    // block-uniform, and __syncthreads_or is also the barrier after the loads.
    if (!__syncthreads_or(nonzero)) continue;
    for (int i = tid; i < A * kForwardVoxels; i += kThreads) {
      const int a = i / kForwardVoxels, vi = i % kForwardVoxels, v = v0 + vi;
      float2 w = make_float2(0.f, 0.f);
      if (v < v_end) {
        const float c0 = gain[static_cast<long long>(a) * g.V + v].x;
        const float2 e = unit_phasor(kappa, g.range[static_cast<long long>(a) * g.V + v]);
        w = make_float2(c0 * e.x, -c0 * e.y);  // conj(c0 exp(j kappa R))
      }
      ph[a * S + vi] = w;
    }
    __syncthreads();
    if (active) {
      const float2* pt = ph + t * S;
      const float2* pr = ph + (g.T + r) * S;
      for (int vi = 0; vi < kForwardVoxels; ++vi) {
        const float2 w = cmul(pt[vi], pr[vi]);
#pragma unroll
        for (int j = 0; j < NB; ++j) acc[j] = cfma(w, xs[j * kForwardVoxels + vi], acc[j]);
      }
    }
  }
  if (active)
#pragma unroll
    for (int j = 0; j < NB; ++j)
      if (n0 + j < batch)
        partial[((static_cast<long long>(chunk) * batch + n0 + j) * g.K + k) * TR + p] = acc[j];
}

__global__ void forward_reduce_kernel(const float2* __restrict__ partial, float2* __restrict__ y, int chunks,
                                      long long per_chunk) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= per_chunk) return;
  float2 s = make_float2(0.f, 0.f);
  for (int c = 0; c < chunks; ++c) {
    const float2 v = partial[c * per_chunk + i];
    s.x += v.x;
    s.y += v.y;
  }
  y[i] = s;
}

// Fast mode step 1: place y[n, k, t, r] at profile index (k - kc) mod M of signal (n, t, r); the rest is
// zero.
__global__ void fast_scatter_kernel(const float2* __restrict__ y, float2* __restrict__ profiles, int batch,
                                    int K, int TR, int M, int kc) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= static_cast<long long>(batch) * K * TR) return;
  const int tr = static_cast<int>(i % TR);
  const int k = static_cast<int>((i / TR) % K);
  const long long n = i / (static_cast<long long>(TR) * K);
  const int m = ((k - kc) % M + M) % M;
  profiles[(n * TR + tr) * M + m] = y[i];
}

// Fast mode step 3: per voxel, interpolate each pair's range profile at Rt + Rr (cubic Lagrange) and weight
// it by the gains at the centre frequency.
template <int NB>
__global__ void __launch_bounds__(kThreads)
    fast_gather_kernel(Geometry g, int method, const float2* __restrict__ profiles, float2* __restrict__ x,
                       int batch, int M, double kappa_c, double samples_per_metre) {
  extern __shared__ float2 smem[];
  float2* wr = smem;  // [R][kThreads]
  const int tid = threadIdx.x, TR = g.T * g.R;
  const int v = blockIdx.x * kThreads + tid, vv = min(v, g.V - 1);
  const int n0 = blockIdx.y * NB;
  const float2* gain = g.gain + static_cast<long long>(method) * (g.T + g.R) * g.V;
  for (int r = 0; r < g.R; ++r) wr[r * kThreads + tid] = antenna_weight(g, gain, g.T + r, vv, kappa_c);
  float2 acc[NB];
#pragma unroll
  for (int j = 0; j < NB; ++j) acc[j] = make_float2(0.f, 0.f);
  const int nb = min(NB, batch - n0);
  for (int t = 0; t < g.T; ++t) {
    const float2 wt = antenna_weight(g, gain, t, vv, kappa_c);
    const double rt = g.range[static_cast<long long>(t) * g.V + vv];
    for (int r = 0; r < g.R; ++r) {
      double u = (rt + g.range[static_cast<long long>(g.T + r) * g.V + vv]) * samples_per_metre;
      u -= floor(u / M) * M;
      const int i0 = static_cast<int>(u);
      float w[4];
      cubic_lagrange_weights(static_cast<float>(u - i0), w);
      const float2 ab = cmul(wt, wr[r * kThreads + tid]);
      const int m0 = (i0 + M - 1) & (M - 1), m1 = i0 & (M - 1), m2 = (i0 + 1) & (M - 1),
                m3 = (i0 + 2) & (M - 1);
#pragma unroll
      for (int j = 0; j < NB; ++j) {
        if (j < nb) {
          const float2* S = profiles + (static_cast<long long>(n0 + j) * TR + t * g.R + r) * M;
          const float2 s0 = __ldg(S + m0), s1 = __ldg(S + m1), s2 = __ldg(S + m2), s3 = __ldg(S + m3);
          const float2 s = make_float2(w[0] * s0.x + w[1] * s1.x + w[2] * s2.x + w[3] * s3.x,
                                       w[0] * s0.y + w[1] * s1.y + w[2] * s2.y + w[3] * s3.y);
          acc[j] = cfma(ab, s, acc[j]);
        }
      }
    }
  }
  if (v < g.V)
#pragma unroll
    for (int j = 0; j < NB; ++j)
      if (n0 + j < batch) x[static_cast<long long>(n0 + j) * g.V + v] = acc[j];
}

unsigned blocks_for(long long n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace

struct GpuImagingPlan::Impl {
  // Constructed, never assigned: nvcc 13's front end rejects std::vector<Vec3>::operator= in C++20 mode.
  Impl(const RadarSystem& s, const ImagingGrid& g) : system(s), grid(g) {}
  RadarSystem system;
  ImagingGrid grid;
  int max_batch = 0;
  int K = 0, T = 0, R = 0, A = 0;
  int V = 0;
  DeviceBuffer<double> range, kappa;
  DeviceBuffer<float2> gain;
  // Forward scratch: per-chunk partial sums.
  int forward_chunks = 1, forward_chunk_voxels = 0;
  DeviceBuffer<float2> forward_partial;
  // Fast mode.
  bool fast_available = false;
  FastModeParams fast;
  DeviceBuffer<float2> profiles;
  std::vector<cufftHandle> fft_plans;  // plan i transforms (2^i * T * R) signals
  DeviceBuffer<char> fft_workspace;
  // Host wrappers' buffers and stream (allocated on first use).
  mutable DeviceBuffer<float2> host_x, host_y;
  mutable std::unique_ptr<DeviceStream> host_stream;

  // The scratch above (forward partial sums, fast-mode profiles, cuFFT plans whose stream is set per call)
  // serves one stream at a time: the stream of the last call that used it owns it. Another stream may take it
  // over once the owner has no work left (a query, no synchronisation); while the owner is still busy the
  // call is refused, since both would write the same scratch. Exact imaging uses no scratch and is not
  // checked.
  mutable std::mutex owner_mutex;
  mutable cudaStream_t owner = nullptr;
  mutable bool owned = false;

  void claim_scratch(cudaStream_t s, const char* what) const {
    std::lock_guard<std::mutex> lock(owner_mutex);
    if (owned && owner != s) {
      const cudaError_t q = cudaStreamQuery(owner);
      if (q == cudaErrorNotReady)
        throw Error(detail::concat(
            "GpuImagingPlan: ", what,
            " was called on a second stream while the first still runs work of the same plan; the plan's "
            "scratch serves one stream at a time: use one plan per stream, or synchronise the first stream "
            "before switching"));
      if (q != cudaSuccess) cudaGetLastError();  // a stream since destroyed owns nothing
    }
    owner = s, owned = true;
  }

  Geometry geometry() const { return Geometry{range.data(), gain.data(), kappa.data(), K, T, R, V}; }

  ~Impl() {
    for (cufftHandle p : fft_plans) cufftDestroy(p);
  }
};

GpuImagingPlan::GpuImagingPlan(const RadarSystem& system, const ImagingGrid& grid, int max_batch,
                               int fast_oversampling)
    : impl_(std::make_unique<Impl>(system, grid)) {
  resolve_device(DeviceKind::Cuda);  // a clear InputError when no GPU is usable
  require(max_batch >= 1, detail::concat("the GPU plan's batch size must be positive (got ", max_batch, ")"));
  validate_system(system, "system");
  validate_grid(grid, system, "grid");
  Impl& p = *impl_;
  p.max_batch = max_batch;
  p.K = system.frequencies();
  p.T = system.transmitters();
  p.R = system.receivers();
  p.A = p.T + p.R;
  require(grid.voxels() < (1u << 31), "the grid is too large for the GPU kernels (2^31 voxels)");
  p.V = static_cast<int>(grid.voxels());
  const int TR = p.T * p.R;
  // The exact kernel keeps one frequency's measurements of NB samples in shared memory (at most ~200 KB).
  require(std::size_t(TR) * sizeof(float2) + std::size_t(p.R) * kThreads * sizeof(float2) <= 200 * 1024,
          detail::concat("the array (", p.T, " TX x ", p.R,
                         " RX) is too large for the GPU exact kernel's shared-memory tile"));

  // The forward kernel stages every antenna's phasors for 64 voxels in shared memory (at most ~200 KB).
  require((std::size_t(p.A) * (kForwardVoxels + 1) + 4 * kForwardVoxels) * sizeof(float2) <= 200 * 1024,
          detail::concat("the array (", p.A,
                         " antennas) is too large for the GPU forward kernel's shared-memory tile"));

  // Geometry tables.
  std::vector<double3> antennas(p.A);
  for (int a = 0; a < p.A; ++a) {
    const Vec3& v = a < p.T ? system.array.tx()[a] : system.array.rx()[a - p.T];
    antennas[a] = make_double3(v.x, v.y, v.z);
  }
  std::vector<double> kappa(p.K);
  for (int k = 0; k < p.K; ++k) kappa[k] = wavenumber(system.sweep[k]);
  DeviceStream stream;
  DeviceBuffer<double3> d_antennas(p.A);
  d_antennas.upload(antennas.data(), p.A, stream.get());
  p.kappa.allocate(p.K);
  p.kappa.upload(kappa.data(), p.K, stream.get());
  p.range.allocate(std::size_t(p.A) * p.V);
  p.gain.allocate(std::size_t(kMethods) * p.A * p.V);
  const long long n = static_cast<long long>(p.A) * p.V;
  setup_geometry_kernel<<<blocks_for(n, 256), 256, 0, stream.get()>>>(
      d_antennas.data(), p.T, p.A, make_double3(grid.x().start, grid.y().start, grid.z().start),
      make_double3(grid.x().step, grid.y().step, grid.z().step), grid.y().size, grid.z().size, p.V,
      p.range.data(), p.gain.data());
  NFMIMO_CUDA_CHECK_LAUNCH();

  // Forward: enough voxel chunks for about two waves of blocks at batch 1, at most 32.
  p.forward_chunks = std::clamp((p.V + 2047) / 2048, 1, 32);
  p.forward_chunk_voxels = (p.V + p.forward_chunks - 1) / p.forward_chunks;
  p.forward_partial.allocate(std::size_t(p.forward_chunks) * max_batch * p.K * TR);

  // Fast mode: profiles and one cuFFT plan per power-of-two batch piece, sharing one workspace.
  if (system.sweep.uniform()) {
    p.fast_available = true;
    p.fast = fast_mode_params(system, fast_oversampling);
    int M = p.fast.profile_length;
    p.profiles.allocate(std::size_t(max_batch) * TR * M);
    std::size_t workspace = 0;
    for (int b = 1; b <= max_batch; b *= 2) {
      cufftHandle plan;
      NFMIMO_CUFFT_CHECK(cufftCreate(&plan));
      p.fft_plans.push_back(plan);
      NFMIMO_CUFFT_CHECK(cufftSetAutoAllocation(plan, 0));
      std::size_t size = 0;
      NFMIMO_CUFFT_CHECK(
          cufftMakePlanMany(plan, 1, &M, nullptr, 1, M, nullptr, 1, M, CUFFT_C2C, b * TR, &size));
      workspace = std::max(workspace, size);
    }
    p.fft_workspace.allocate(std::max<std::size_t>(workspace, 1));
    for (cufftHandle plan : p.fft_plans) NFMIMO_CUFFT_CHECK(cufftSetWorkArea(plan, p.fft_workspace.data()));
  }
  stream.synchronize();
}

GpuImagingPlan::~GpuImagingPlan() = default;

const RadarSystem& GpuImagingPlan::system() const { return impl_->system; }
const ImagingGrid& GpuImagingPlan::grid() const { return impl_->grid; }
int GpuImagingPlan::max_batch() const { return impl_->max_batch; }

void GpuImagingPlan::forward(const cfloat* d_x, cfloat* d_y, int batch, cudaStream_t stream) const {
  const Impl& p = *impl_;
  require(batch >= 1 && batch <= p.max_batch,
          detail::concat("batch ", batch, " is outside the GPU plan's range [1, ", p.max_batch, "]"));
  p.claim_scratch(stream, "the forward operator");
  const int TR = p.T * p.R;
  const int groups = (TR + kThreads - 1) / kThreads;
  const auto* x = reinterpret_cast<const float2*>(d_x);
  auto* partial = const_cast<float2*>(p.forward_partial.data());
  auto launch = [&](auto nb) {
    constexpr int NB = decltype(nb)::value;
    const dim3 grid(p.forward_chunks, p.K, groups * ((batch + NB - 1) / NB));
    const std::size_t shared =
        (std::size_t(p.A) * (kForwardVoxels + 1) + NB * kForwardVoxels) * sizeof(float2);
    if (shared > 48 * 1024)
      NFMIMO_CUDA_CHECK(cudaFuncSetAttribute(forward_kernel<NB>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(shared)));
    forward_kernel<NB>
        <<<grid, kThreads, shared, stream>>>(p.geometry(), x, partial, batch, p.forward_chunk_voxels, groups);
  };
  if (batch == 1)
    launch(std::integral_constant<int, 1>{});
  else
    launch(std::integral_constant<int, 4>{});
  NFMIMO_CUDA_CHECK_LAUNCH();
  const long long per_chunk = static_cast<long long>(batch) * p.K * TR;
  forward_reduce_kernel<<<blocks_for(per_chunk, 256), 256, 0, stream>>>(
      partial, reinterpret_cast<float2*>(d_y), p.forward_chunks, per_chunk);
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void GpuImagingPlan::image(Method method, ImagingMode mode, const cfloat* d_y, cfloat* d_x, int batch,
                           cudaStream_t stream) const {
  const Impl& p = *impl_;
  require(batch >= 1 && batch <= p.max_batch,
          detail::concat("batch ", batch, " is outside the GPU plan's range [1, ", p.max_batch, "]"));
  const int TR = p.T * p.R;
  const auto* y = reinterpret_cast<const float2*>(d_y);
  auto* x = reinterpret_cast<float2*>(d_x);
  if (mode == ImagingMode::Exact) {
    auto launch = [&](auto nb) {
      constexpr int NB = decltype(nb)::value;
      const dim3 grid(blocks_for(p.V, kThreads), (batch + NB - 1) / NB);
      const std::size_t shared = (std::size_t(NB) * TR + std::size_t(p.R) * kThreads) * sizeof(float2);
      if (shared > 48 * 1024)
        NFMIMO_CUDA_CHECK(cudaFuncSetAttribute(
            image_exact_kernel<NB>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared)));
      image_exact_kernel<NB>
          <<<grid, kThreads, shared, stream>>>(p.geometry(), static_cast<int>(method), y, x, batch);
    };
    // Eight samples per thread amortise the phasors; fewer when the tile would not fit or the batch is small.
    const std::size_t tile8 = (std::size_t(8) * TR + std::size_t(p.R) * kThreads) * sizeof(float2);
    if (batch >= 8 && tile8 <= 96 * 1024)
      launch(std::integral_constant<int, 8>{});
    else if (batch >= 2)
      launch(std::integral_constant<int, 2>{});
    else
      launch(std::integral_constant<int, 1>{});
    NFMIMO_CUDA_CHECK_LAUNCH();
    return;
  }
  require(method != Method::Kirchhoff,
          "the fast mode supports the adjoint and backprojection; Kirchhoff migration needs --mode exact");
  require(p.fast_available, "the fast adjoint mode needs uniformly spaced frequencies; use the exact mode");
  p.claim_scratch(stream, "the fast imaging mode");
  const int M = p.fast.profile_length;
  auto* profiles = const_cast<float2*>(p.profiles.data());
  NFMIMO_CUDA_CHECK(cudaMemsetAsync(profiles, 0, std::size_t(batch) * TR * M * sizeof(float2), stream));
  const long long count = static_cast<long long>(batch) * p.K * TR;
  fast_scatter_kernel<<<blocks_for(count, 256), 256, 0, stream>>>(y, profiles, batch, p.K, TR, M,
                                                                  p.fast.center_index);
  NFMIMO_CUDA_CHECK_LAUNCH();
  // Unnormalised inverse FFT = sum_k Y_k exp(+j 2 pi k m / M), batch decomposed into power-of-two pieces.
  int done = 0;
  for (int i = static_cast<int>(p.fft_plans.size()) - 1; i >= 0; --i) {
    const int piece = 1 << i;
    while (batch - done >= piece) {
      cufftComplex* s = reinterpret_cast<cufftComplex*>(profiles + std::size_t(done) * TR * M);
      NFMIMO_CUFFT_CHECK(cufftSetStream(p.fft_plans[i], stream));
      NFMIMO_CUFFT_CHECK(cufftExecC2C(p.fft_plans[i], s, s, CUFFT_INVERSE));
      done += piece;
    }
  }
  auto launch = [&](auto nb) {
    constexpr int NB = decltype(nb)::value;
    const dim3 grid(blocks_for(p.V, kThreads), (batch + NB - 1) / NB);
    const std::size_t shared = std::size_t(p.R) * kThreads * sizeof(float2);
    if (shared > 48 * 1024)
      NFMIMO_CUDA_CHECK(cudaFuncSetAttribute(
          fast_gather_kernel<NB>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared)));
    fast_gather_kernel<NB>
        <<<grid, kThreads, shared, stream>>>(p.geometry(), static_cast<int>(method), profiles, x, batch, M,
                                             p.fast.center_wavenumber, p.fast.samples_per_metre);
  };
  if (batch >= 4)
    launch(std::integral_constant<int, 4>{});
  else
    launch(std::integral_constant<int, 1>{});
  NFMIMO_CUDA_CHECK_LAUNCH();
}

namespace {
// The host-pointer wrappers: frames go through the plan's staging buffers in chunks of max_batch on the
// plan's own stream, `run(in_device, out_device, frames, stream)` doing the device work of one chunk.
template <class Run>
void through_staging(DeviceStream& stream, DeviceBuffer<float2>& in_buf, DeviceBuffer<float2>& out_buf,
                     int max_batch, const cfloat* in, std::size_t in_frame, cfloat* out,
                     std::size_t out_frame, int batch, Run run) {
  in_buf.reserve(in_frame * max_batch);
  out_buf.reserve(out_frame * max_batch);
  cudaStream_t s = stream.get();
  for (int n0 = 0; n0 < batch; n0 += max_batch) {
    const int nb = std::min(max_batch, batch - n0);
    in_buf.upload(reinterpret_cast<const float2*>(in) + n0 * in_frame, nb * in_frame, s);
    run(reinterpret_cast<const cfloat*>(in_buf.data()), reinterpret_cast<cfloat*>(out_buf.data()), nb, s);
    out_buf.download(reinterpret_cast<float2*>(out) + n0 * out_frame, nb * out_frame, s);
  }
  stream.synchronize();
}
}  // namespace

void GpuImagingPlan::forward_host(const cfloat* x, cfloat* y, int batch) const {
  Impl& p = *impl_;
  if (!p.host_stream) p.host_stream = std::make_unique<DeviceStream>();
  through_staging(*p.host_stream, p.host_x, p.host_y, p.max_batch, x, p.V, y, p.system.samples_per_frame(),
                  batch,
                  [&](const cfloat* in, cfloat* out, int nb, cudaStream_t s) { forward(in, out, nb, s); });
}

void GpuImagingPlan::image_host(Method method, ImagingMode mode, const cfloat* y, cfloat* x,
                                int batch) const {
  Impl& p = *impl_;
  if (!p.host_stream) p.host_stream = std::make_unique<DeviceStream>();
  through_staging(
      *p.host_stream, p.host_y, p.host_x, p.max_batch, y, p.system.samples_per_frame(), x, p.V, batch,
      [&](const cfloat* in, cfloat* out, int nb, cudaStream_t s) { image(method, mode, in, out, nb, s); });
}

}  // namespace nfmimo
