// CUDA implementation of GpuIterativeSolver (see gpu_iterative.hpp, radar/iterative.hpp, docs/iterative.md).
//
// Layouts (batch B frames, V voxels, S = K T R samples): voxel vectors [B][V] float2, measurement vectors
// [B][S] float2, TV magnitudes [B][V] float, TV dual fields [B][3][V] float. Reductions are per frame, in
// double, in a fixed order (kReduceBlocks partial sums per frame, summed by one thread), so results are
// deterministic.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cuda_check.hpp"
#include "kernels/device.hpp"
#include "kernels/device_buffer.hpp"
#include "kernels/gpu_iterative.hpp"
#include "radar/error.hpp"
#include "radar/iterative_math.hpp"

namespace nfmimo {
namespace {

constexpr int kThreads = 256;        // element-wise kernels
constexpr int kReduceThreads = 256;  // reduction kernels: threads per block
constexpr int kReduceBlocks = 32;    // reduction kernels: blocks per frame
constexpr int kCheckInterval = 4;    // iterations between host checks of "any frame still active"

struct Dims {
  int nx, ny, nz;
  long long V;
};

unsigned blocks_for(long long n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

__device__ __forceinline__ void voxel_coords(const Dims& d, long long v, int& ix, int& iy, int& iz) {
  iz = static_cast<int>(v % d.nz);
  iy = static_cast<int>((v / d.nz) % d.ny);
  ix = static_cast<int>(v / (static_cast<long long>(d.nz) * d.ny));
}

__device__ __forceinline__ float cabs(float2 a) { return sqrtf(a.x * a.x + a.y * a.y); }

// Sums N values over the block into out[c * stride] (thread 0 writes).
template <int N>
__device__ void block_sum(double (&vals)[N], double* out, int stride) {
  __shared__ double s[N][kReduceThreads];
  const int tid = threadIdx.x;
  for (int c = 0; c < N; ++c) s[c][tid] = vals[c];
  __syncthreads();
  for (int half = kReduceThreads / 2; half > 0; half /= 2) {
    if (tid < half)
      for (int c = 0; c < N; ++c) s[c][tid] += s[c][tid + half];
    __syncthreads();
  }
  if (tid == 0)
    for (int c = 0; c < N; ++c) out[c * stride] = s[c][0];
}

// Per frame: max |g| (for the relative weight) and ||y||^2 (for F(0)). partial [B][2][kReduceBlocks].
__global__ void __launch_bounds__(kReduceThreads)
    init_sums_kernel(const float2* __restrict__ g, const float2* __restrict__ y, long long V, long long S,
                     double* partial) {
  const int n = blockIdx.y;
  double peak = 0, yy = 0;
  for (long long i = blockIdx.x * static_cast<long long>(kReduceThreads) + threadIdx.x; i < V;
       i += static_cast<long long>(kReduceBlocks) * kReduceThreads)
    peak = fmax(peak, static_cast<double>(cabs(g[n * V + i])));
  for (long long i = blockIdx.x * static_cast<long long>(kReduceThreads) + threadIdx.x; i < S;
       i += static_cast<long long>(kReduceBlocks) * kReduceThreads) {
    const float2 v = y[n * S + i];
    yy += static_cast<double>(v.x) * v.x + static_cast<double>(v.y) * v.y;
  }
  // Max reduction for the peak, sum for ||y||^2.
  __shared__ double s[kReduceThreads];
  const int tid = threadIdx.x;
  s[tid] = peak;
  __syncthreads();
  for (int half = kReduceThreads / 2; half > 0; half /= 2) {
    if (tid < half) s[tid] = fmax(s[tid], s[tid + half]);
    __syncthreads();
  }
  double* out = partial + static_cast<long long>(n) * 2 * kReduceBlocks + blockIdx.x;
  if (tid == 0) out[0] = s[0];
  double vals[1] = {yy};
  block_sum<1>(vals, out + kReduceBlocks, kReduceBlocks);
}

__global__ void init_states_kernel(const double* partial, FrameState* states, double* history,
                                   double lambda_rel, double l1_rel, int batch) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= batch) return;
  const double* p = partial + static_cast<long long>(n) * 2 * kReduceBlocks;
  double peak = 0, yy = 0;
  for (int b = 0; b < kReduceBlocks; ++b) {
    peak = fmax(peak, p[b]);
    yy += p[kReduceBlocks + b];
  }
  FrameState s;
  s.t = 1.0;
  s.objective = 0.5 * yy;
  s.lambda = lambda_rel * peak;
  s.lambda_l1 = l1_rel * peak;
  s.iterations = 0;
  s.active = 1;
  s.converged = 0;
  s.pad = 0;
  states[n] = s;
  history[n] = s.objective;
}

__global__ void residual_kernel(const float2* __restrict__ az, const float2* __restrict__ y,
                                float2* __restrict__ r, long long total) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  r[i] = make_float2(az[i].x - y[i].x, az[i].y - y[i].y);
}

// u = prox_{s lambda |.|}(z - s g) for l1; for TV, u = z - s g and b = |u| (the prox follows).
__global__ void gradient_step_kernel(const float2* __restrict__ z, const float2* __restrict__ g,
                                     float2* __restrict__ u, float* __restrict__ b, const FrameState* states,
                                     float step, int regularizer, long long V, long long total) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  float re = z[i].x - step * g[i].x, im = z[i].y - step * g[i].y;
  if (regularizer == static_cast<int>(Regularizer::L1)) {
    soft_threshold_magnitude(re, im, static_cast<float>(step * states[i / V].lambda));
  } else {
    b[i] = sqrtf(re * re + im * im);
  }
  u[i] = make_float2(re, im);
}

// FGP pass 1: tmp = m(r) = max(b - mu D^T r - mu1, 0) (per frame mu = step lambda, mu1 = step lambda_l1).
__global__ void fgp_primal_kernel(const float* __restrict__ b, const float* __restrict__ r,
                                  float* __restrict__ tmp, const FrameState* states, float step, Dims d,
                                  long long total) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const long long n = i / d.V, v = i % d.V;
  int ix, iy, iz;
  voxel_coords(d, v, ix, iy, iz);
  const float mu = static_cast<float>(step * states[n].lambda),
              mu1 = static_cast<float>(step * states[n].lambda_l1);
  tmp[i] = tv_primal(b[i], mu, differences_adjoint(r + n * 3 * d.V, d.V, ix, iy, iz, d.nx, d.ny, d.nz), mu1);
}

// FGP pass 2: projected dual step and momentum (fgp_update), per voxel.
__global__ void fgp_dual_kernel(const float* __restrict__ tmp, float* __restrict__ p, float* __restrict__ r,
                                const FrameState* states, float step, float beta, Dims d, long long total) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const long long n = i / d.V, v = i % d.V;
  const float mu = static_cast<float>(step * states[n].lambda);
  if (!(mu > 0)) return;
  int ix, iy, iz;
  voxel_coords(d, v, ix, iy, iz);
  float g[3];
  forward_differences(tmp + n * d.V, ix, iy, iz, d.nx, d.ny, d.nz, g);
  fgp_update(p + n * 3 * d.V, r + n * 3 * d.V, d.V, v, g, 1.0f / (12.0f * mu), beta);
}

// The TV prox result m(p) applied to u's magnitude, phase kept (without a TV term: the prox of the l1 term).
__global__ void tv_apply_kernel(float2* __restrict__ u, const float* __restrict__ b,
                                const float* __restrict__ p, const FrameState* states, float step, Dims d,
                                long long total) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const long long n = i / d.V, v = i % d.V;
  const float mu = static_cast<float>(step * states[n].lambda),
              mu1 = static_cast<float>(step * states[n].lambda_l1);
  int ix, iy, iz;
  voxel_coords(d, v, ix, iy, iz);
  const float dtp = mu > 0 ? differences_adjoint(p + n * 3 * d.V, d.V, ix, iy, iz, d.nx, d.ny, d.nz) : 0.0f;
  const float m = tv_primal(b[i], mu, dtp, mu1);
  const float scale = b[i] > 0 ? m / b[i] : 0.0f;
  u[i] = make_float2(u[i].x * scale, u[i].y * scale);
}

// |u| forward differences at a voxel (the TV density of the magnitude), like forward_differences on |u|.
__device__ double magnitude_tv_density(const float2* u, const Dims& d, long long v, int ix, int iy, int iz) {
  const float c = cabs(u[v]);
  float g[3];
  g[0] = ix + 1 < d.nx ? cabs(u[v + static_cast<long long>(d.ny) * d.nz]) - c : 0.0f;
  g[1] = iy + 1 < d.ny ? cabs(u[v + d.nz]) - c : 0.0f;
  g[2] = iz + 1 < d.nz ? cabs(u[v + 1]) - c : 0.0f;
  return tv_density(g);
}

// Per frame: R(|u|), ||u - x||^2, ||u||^2, sum |u| (TV's added l1 term) -> partial [B][4][kReduceBlocks];
// ||A u - y||^2 -> partial_data [B][kReduceBlocks].
__global__ void __launch_bounds__(kReduceThreads)
    frame_sums_kernel(const float2* __restrict__ u, const float2* __restrict__ x,
                      const float2* __restrict__ au, const float2* __restrict__ y, int regularizer, Dims d,
                      long long S, double* partial, double* partial_data) {
  const int n = blockIdx.y;
  const float2* un = u + n * d.V;
  const float2* xn = x + n * d.V;
  double vals[4] = {0, 0, 0, 0};
  const long long stride = static_cast<long long>(kReduceBlocks) * kReduceThreads;
  for (long long v = blockIdx.x * static_cast<long long>(kReduceThreads) + threadIdx.x; v < d.V;
       v += stride) {
    const float2 a = un[v], b = xn[v];
    if (regularizer == static_cast<int>(Regularizer::L1)) {
      vals[0] += cabs(a);
    } else {
      int ix, iy, iz;
      voxel_coords(d, v, ix, iy, iz);
      vals[0] += magnitude_tv_density(un, d, v, ix, iy, iz);
      vals[3] += cabs(a);
    }
    const double dx = static_cast<double>(a.x) - b.x, dy = static_cast<double>(a.y) - b.y;
    vals[1] += dx * dx + dy * dy;
    vals[2] += static_cast<double>(a.x) * a.x + static_cast<double>(a.y) * a.y;
  }
  block_sum<4>(vals, partial + static_cast<long long>(n) * 4 * kReduceBlocks + blockIdx.x, kReduceBlocks);
  __syncthreads();
  double data[1] = {0};
  for (long long i = blockIdx.x * static_cast<long long>(kReduceThreads) + threadIdx.x; i < S; i += stride) {
    const float2 a = au[n * S + i], b = y[n * S + i];
    const double dx = static_cast<double>(a.x) - b.x, dy = static_cast<double>(a.y) - b.y;
    data[0] += dx * dx + dy * dy;
  }
  block_sum<1>(data, partial_data + static_cast<long long>(n) * kReduceBlocks + blockIdx.x, kReduceBlocks);
}

// One thread per frame: the FISTA / MFISTA / ISTA decision (the CPU solver's code), history entry
// `iteration`.
__global__ void decide_kernel(FrameState* states, FrameUpdate* updates, const double* partial,
                              const double* partial_data, double* history, int iteration, int batch,
                              int acceleration, double tolerance, int max_iterations) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= batch) return;
  const double* p = partial + static_cast<long long>(n) * 4 * kReduceBlocks;
  const double* pd = partial_data + static_cast<long long>(n) * kReduceBlocks;
  double reg = 0, change = 0, norm = 0, l1 = 0, data = 0;
  for (int b = 0; b < kReduceBlocks; ++b) {
    reg += p[b];
    change += p[kReduceBlocks + b];
    norm += p[2 * kReduceBlocks + b];
    l1 += p[3 * kReduceBlocks + b];
    data += pd[b];
  }
  FrameState s = states[n];
  const double objective = 0.5 * data + s.lambda * reg + (s.lambda_l1 > 0 ? s.lambda_l1 * l1 : 0.0);
  updates[n] = fista_decide(s, objective, change, norm, acceleration, tolerance, max_iterations);
  states[n] = s;
  history[static_cast<long long>(iteration) * batch + n] = s.objective;
}

// x, z <- per-frame FrameUpdate with candidate u (voxel vectors or their images, `len` elements per frame).
__global__ void move_kernel(const FrameUpdate* updates, float2* __restrict__ x, float2* __restrict__ z,
                            const float2* __restrict__ u, long long len, long long total) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const FrameUpdate up = updates[i / len];
  if (!up.apply) return;
  float2 xv = x[i], zv;
  const float2 uv = u[i];
  fista_move(up, xv.x, xv.y, zv.x, zv.y, uv.x, uv.y);
  x[i] = xv;
  z[i] = zv;
}

// Power iteration: per-block partial sums of |w|^2 (single frame).
__global__ void __launch_bounds__(kReduceThreads)
    norm_partial_kernel(const float2* __restrict__ w, long long n, double* partial) {
  double vals[1] = {0};
  for (long long i = blockIdx.x * static_cast<long long>(kReduceThreads) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * kReduceThreads)
    vals[0] += static_cast<double>(w[i].x) * w[i].x + static_cast<double>(w[i].y) * w[i].y;
  block_sum<1>(vals, partial + blockIdx.x, 1);
}

__global__ void scale_kernel(const float2* __restrict__ w, float2* __restrict__ v, float scale, long long n) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i < n) v[i] = make_float2(w[i].x * scale, w[i].y * scale);
}

}  // namespace

struct GpuIterativeSolver::Impl {
  explicit Impl(const GpuImagingPlan& p) : plan(p) {}
  const GpuImagingPlan& plan;
  Dims dims{};
  long long V = 0, S = 0;
  int max_batch = 0;
  double lipschitz = 0;
  DeviceBuffer<float2> x, u, z, g;     // [B][V]
  DeviceBuffer<float2> ax, au, az, r;  // [B][S]
  DeviceBuffer<float> mag, tmp;        // [B][V]
  DeviceBuffer<float> p, pr;           // [B][3][V]
  DeviceBuffer<FrameState> states;     // [B]
  DeviceBuffer<FrameUpdate> updates;   // [B]
  DeviceBuffer<double> partial, partial_data;
  mutable DeviceBuffer<double> history;  // [(max_iterations + 1)][B]
  mutable DeviceBuffer<float2> host_y, host_x;
  mutable std::unique_ptr<DeviceStream> host_stream;
};

GpuIterativeSolver::GpuIterativeSolver(const GpuImagingPlan& plan, const PowerIterationOptions& power)
    : impl_(std::make_unique<Impl>(plan)) {
  require(power.max_iterations >= 1 && power.margin >= 1, "power iteration: invalid options");
  Impl& m = *impl_;
  const ImagingGrid& grid = plan.grid();
  m.V = static_cast<long long>(grid.voxels());
  m.S = static_cast<long long>(plan.system().samples_per_frame());
  m.dims = Dims{grid.x().size, grid.y().size, grid.z().size, m.V};
  m.max_batch = plan.max_batch();
  const std::size_t BV = std::size_t(m.max_batch) * m.V, BS = std::size_t(m.max_batch) * m.S;
  for (auto* b : {&m.x, &m.u, &m.z, &m.g}) b->allocate(BV);
  for (auto* b : {&m.ax, &m.au, &m.az, &m.r}) b->allocate(BS);
  m.mag.allocate(BV);
  m.tmp.allocate(BV);
  m.p.allocate(3 * BV);
  m.pr.allocate(3 * BV);
  m.states.allocate(m.max_batch);
  m.updates.allocate(m.max_batch);
  m.partial.allocate(std::size_t(m.max_batch) * 4 * kReduceBlocks);
  m.partial_data.allocate(std::size_t(m.max_batch) * kReduceBlocks);

  // Power iteration on frame 0 of the scratch (same start vector and rule as the CPU solver).
  DeviceStream stream;
  const std::vector<cfloat> start = power_iteration_start(std::size_t(m.V), power.seed);
  m.u.upload(reinterpret_cast<const float2*>(start.data()), m.V, stream.get());
  std::vector<double> partial(kReduceBlocks);
  double estimate = 0;
  for (int it = 0; it < power.max_iterations; ++it) {
    plan.forward(reinterpret_cast<const cfloat*>(m.u.data()), reinterpret_cast<cfloat*>(m.au.data()), 1,
                 stream.get());
    plan.image(Method::Adjoint, ImagingMode::Exact, reinterpret_cast<const cfloat*>(m.au.data()),
               reinterpret_cast<cfloat*>(m.g.data()), 1, stream.get());
    norm_partial_kernel<<<kReduceBlocks, kReduceThreads, 0, stream.get()>>>(m.g.data(), m.V,
                                                                            m.partial.data());
    NFMIMO_CUDA_CHECK_LAUNCH();
    m.partial.download(partial.data(), kReduceBlocks, stream.get());
    stream.synchronize();
    double sum = 0;
    for (double v : partial) sum += v;
    const double next = std::sqrt(sum);
    if (!(next > 0)) throw Error("power iteration: A^H A v vanished; the operator is zero on this grid");
    scale_kernel<<<blocks_for(m.V, kThreads), kThreads, 0, stream.get()>>>(
        m.g.data(), m.u.data(), static_cast<float>(1.0 / next), m.V);
    NFMIMO_CUDA_CHECK_LAUNCH();
    const bool settled = std::abs(next - estimate) <= power.tolerance * next;
    estimate = next;
    if (settled) break;
  }
  stream.synchronize();
  m.lipschitz = power.margin * estimate;
}

GpuIterativeSolver::~GpuIterativeSolver() = default;

double GpuIterativeSolver::lipschitz() const { return impl_->lipschitz; }

std::string GpuIterativeSolver::device_description() const {
  const auto info = gpu_info(0);
  return "cuda (" + (info ? info->name : std::string("GPU")) + ")";
}

std::vector<IterativeReport> GpuIterativeSolver::solve_device(const cfloat* d_y, cfloat* d_x, int batch,
                                                              const IterativeOptions& o,
                                                              cudaStream_t stream) const {
  validate(o);
  const Impl& m = *impl_;
  require(batch >= 1 && batch <= m.max_batch,
          detail::concat("batch ", batch, " is outside the GPU solver's range [1, ", m.max_batch, "]"));
  const GpuImagingPlan& plan = m.plan;
  const long long BV = static_cast<long long>(batch) * m.V, BS = static_cast<long long>(batch) * m.S;
  const float2* y = reinterpret_cast<const float2*>(d_y);
  // The scratch is logically mutable state of a const solve (like the plan's scratch).
  auto* x = const_cast<float2*>(m.x.data());
  auto* u = const_cast<float2*>(m.u.data());
  auto* z = const_cast<float2*>(m.z.data());
  auto* g = const_cast<float2*>(m.g.data());
  auto* ax = const_cast<float2*>(m.ax.data());
  auto* au = const_cast<float2*>(m.au.data());
  auto* az = const_cast<float2*>(m.az.data());
  auto* r = const_cast<float2*>(m.r.data());
  auto* mag = const_cast<float*>(m.mag.data());
  auto* tmp = const_cast<float*>(m.tmp.data());
  auto* p = const_cast<float*>(m.p.data());
  auto* pr = const_cast<float*>(m.pr.data());
  auto* states = const_cast<FrameState*>(m.states.data());
  auto* updates = const_cast<FrameUpdate*>(m.updates.data());
  auto* partial = const_cast<double*>(m.partial.data());
  auto* partial_data = const_cast<double*>(m.partial_data.data());
  m.history.reserve(std::size_t(o.max_iterations + 1) * m.max_batch);
  double* history = m.history.data();
  const float step = static_cast<float>(1.0 / m.lipschitz);
  const int reg = static_cast<int>(o.regularizer);
  const unsigned frame_blocks = blocks_for(batch, 64);

  // Weights from max |A^H y|, F(0) = 0.5 ||y||^2; x = z = 0 and their images are 0; cold TV dual.
  plan.image(Method::Adjoint, ImagingMode::Exact, d_y, reinterpret_cast<cfloat*>(g), batch, stream);
  init_sums_kernel<<<dim3(kReduceBlocks, batch), kReduceThreads, 0, stream>>>(g, y, m.V, m.S, partial);
  NFMIMO_CUDA_CHECK_LAUNCH();
  const double l1_rel = o.regularizer == Regularizer::TotalVariation ? o.l1_weight : 0.0;
  init_states_kernel<<<frame_blocks, 64, 0, stream>>>(partial, states, history, o.lambda, l1_rel, batch);
  NFMIMO_CUDA_CHECK_LAUNCH();
  NFMIMO_CUDA_CHECK(cudaMemsetAsync(x, 0, BV * sizeof(float2), stream));
  NFMIMO_CUDA_CHECK(cudaMemsetAsync(z, 0, BV * sizeof(float2), stream));
  NFMIMO_CUDA_CHECK(cudaMemsetAsync(ax, 0, BS * sizeof(float2), stream));
  NFMIMO_CUDA_CHECK(cudaMemsetAsync(az, 0, BS * sizeof(float2), stream));
  if (o.regularizer == Regularizer::TotalVariation)
    NFMIMO_CUDA_CHECK(cudaMemsetAsync(p, 0, 3 * BV * sizeof(float), stream));

  std::vector<FrameState> host_states(batch);
  for (int k = 1; k <= o.max_iterations; ++k) {
    // Gradient step at z and the prox.
    residual_kernel<<<blocks_for(BS, kThreads), kThreads, 0, stream>>>(az, y, r, BS);
    NFMIMO_CUDA_CHECK_LAUNCH();
    plan.image(Method::Adjoint, ImagingMode::Exact, reinterpret_cast<const cfloat*>(r),
               reinterpret_cast<cfloat*>(g), batch, stream);
    gradient_step_kernel<<<blocks_for(BV, kThreads), kThreads, 0, stream>>>(z, g, u, mag, states, step, reg,
                                                                            m.V, BV);
    NFMIMO_CUDA_CHECK_LAUNCH();
    if (o.regularizer == Regularizer::TotalVariation) {
      NFMIMO_CUDA_CHECK(cudaMemcpyAsync(pr, p, 3 * BV * sizeof(float), cudaMemcpyDeviceToDevice, stream));
      double t = 1.0;
      for (int it = 0; it < o.tv_iterations; ++it) {
        const double t_next = fista_next_t(t);
        const float beta = static_cast<float>((t - 1.0) / t_next);
        t = t_next;
        fgp_primal_kernel<<<blocks_for(BV, kThreads), kThreads, 0, stream>>>(mag, pr, tmp, states, step,
                                                                             m.dims, BV);
        NFMIMO_CUDA_CHECK_LAUNCH();
        fgp_dual_kernel<<<blocks_for(BV, kThreads), kThreads, 0, stream>>>(tmp, p, pr, states, step, beta,
                                                                           m.dims, BV);
        NFMIMO_CUDA_CHECK_LAUNCH();
      }
      tv_apply_kernel<<<blocks_for(BV, kThreads), kThreads, 0, stream>>>(u, mag, p, states, step, m.dims, BV);
      NFMIMO_CUDA_CHECK_LAUNCH();
    }
    // Candidate image, per-frame sums, decisions, moves.
    plan.forward(reinterpret_cast<const cfloat*>(u), reinterpret_cast<cfloat*>(au), batch, stream);
    frame_sums_kernel<<<dim3(kReduceBlocks, batch), kReduceThreads, 0, stream>>>(u, x, au, y, reg, m.dims,
                                                                                 m.S, partial, partial_data);
    NFMIMO_CUDA_CHECK_LAUNCH();
    decide_kernel<<<frame_blocks, 64, 0, stream>>>(states, updates, partial, partial_data, history, k, batch,
                                                   static_cast<int>(o.acceleration), o.tolerance,
                                                   o.max_iterations);
    NFMIMO_CUDA_CHECK_LAUNCH();
    move_kernel<<<blocks_for(BV, kThreads), kThreads, 0, stream>>>(updates, x, z, u, m.V, BV);
    NFMIMO_CUDA_CHECK_LAUNCH();
    move_kernel<<<blocks_for(BS, kThreads), kThreads, 0, stream>>>(updates, ax, az, au, m.S, BS);
    NFMIMO_CUDA_CHECK_LAUNCH();
    // Frames stop on their own (frozen by their state); the host only ends the loop once none is active.
    if (k % kCheckInterval == 0 && k < o.max_iterations) {
      m.states.download(host_states.data(), batch, stream);
      NFMIMO_CUDA_CHECK(cudaStreamSynchronize(stream));
      if (std::none_of(host_states.begin(), host_states.end(),
                       [](const FrameState& s) { return s.active != 0; }))
        break;
    }
  }

  NFMIMO_CUDA_CHECK(cudaMemcpyAsync(d_x, x, BV * sizeof(float2), cudaMemcpyDeviceToDevice, stream));
  m.states.download(host_states.data(), batch, stream);
  std::vector<double> host_history(std::size_t(o.max_iterations + 1) * batch);
  m.history.download(host_history.data(), host_history.size(), stream);
  NFMIMO_CUDA_CHECK(cudaStreamSynchronize(stream));

  std::vector<IterativeReport> reports(batch);
  for (int n = 0; n < batch; ++n) {
    IterativeReport& rep = reports[n];
    rep.iterations = host_states[n].iterations;
    rep.converged = host_states[n].converged != 0;
    rep.lambda = host_states[n].lambda;
    rep.lambda_l1 = host_states[n].lambda_l1;
    rep.step = step;
    for (int k = 0; k <= rep.iterations; ++k)
      rep.objective.push_back(host_history[std::size_t(k) * batch + n]);
  }
  return reports;
}

std::vector<IterativeReport> GpuIterativeSolver::solve(const cfloat* y, cfloat* x, int frames,
                                                       const IterativeOptions& o) const {
  validate(o);
  require(frames >= 0, "the frame count must not be negative");
  Impl& m = *impl_;
  if (!m.host_stream) m.host_stream = std::make_unique<DeviceStream>();
  m.host_y.reserve(std::size_t(m.max_batch) * m.S);
  m.host_x.reserve(std::size_t(m.max_batch) * m.V);
  cudaStream_t s = m.host_stream->get();
  std::vector<IterativeReport> reports;
  for (int n0 = 0; n0 < frames; n0 += m.max_batch) {
    const int nb = std::min(m.max_batch, frames - n0);
    m.host_y.upload(reinterpret_cast<const float2*>(y) + std::size_t(n0) * m.S, std::size_t(nb) * m.S, s);
    auto part = solve_device(reinterpret_cast<const cfloat*>(m.host_y.data()),
                             reinterpret_cast<cfloat*>(m.host_x.data()), nb, o, s);
    m.host_x.download(reinterpret_cast<float2*>(x) + std::size_t(n0) * m.V, std::size_t(nb) * m.V, s);
    m.host_stream->synchronize();
    for (auto& r : part) reports.push_back(std::move(r));
  }
  return reports;
}

}  // namespace nfmimo
