// CUDA backend of the synthesizer: rasterisation, normalisation and noise kernels around
// GpuImagingPlan::forward.
//
// Targets are bit-identical to the CPU's: the scene parameters are drawn on the host (draw_batch) and the
// kernels evaluate the same explicitly rounded formulas (synthesizer/raster.hpp) with the same phase table.
// Measurements agree with the CPU within float tolerance (different summation order in the forward model and
// the noise power; device log/sin/cos in the Gaussian draws).
#include <cuda_runtime.h>

#include <cstring>
#include <memory>

#include "kernels/cuda_check.hpp"
#include "kernels/cuda_event.hpp"
#include "kernels/device_buffer.hpp"
#include "kernels/gpu_imaging.hpp"
#include "radar/error.hpp"
#include "radar/random.hpp"
#include "synthesizer/gpu_synthesizer.hpp"
#include "synthesizer/raster.hpp"

namespace nfmimo {
namespace {

constexpr int kRasterThreads = 256;
constexpr int kReduceThreads = 256;

// RAII page-locked host memory: asynchronous uploads need it.
template <class T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(std::size_t count) {
    NFMIMO_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&data_), count * sizeof(T)));
    size_ = count;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() {
    if (data_) NFMIMO_CUDA_LOG(cudaFreeHost(data_));
  }
  T* data() { return data_; }
  std::size_t size() const { return size_; }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

// One thread per voxel, blockIdx.y = sample. Writes the packed intermediate (value, phase level) that
// normalize_kernel turns into the complex target.
__global__ void __launch_bounds__(kRasterThreads)
    raster_kernel(const SceneObject* __restrict__ objects, const std::int32_t* __restrict__ counts,
                  raster::Grid g, int V, std::uint64_t seed, std::uint64_t first, int random_phase,
                  float2* __restrict__ x) {
  __shared__ SceneObject s_objects[kMaxObjects];
  const int sample = blockIdx.y;
  const int n = counts[sample];
  static_assert(sizeof(SceneObject) % sizeof(std::uint32_t) == 0, "SceneObject is copied as 32-bit words");
  const int words = n * static_cast<int>(sizeof(SceneObject) / sizeof(std::uint32_t));
  const auto* src =
      reinterpret_cast<const std::uint32_t*>(objects + static_cast<long long>(sample) * kMaxObjects);
  auto* dst = reinterpret_cast<std::uint32_t*>(s_objects);
  for (int i = threadIdx.x; i < words; i += blockDim.x) dst[i] = src[i];
  __syncthreads();
  const int v = blockIdx.x * blockDim.x + threadIdx.x;
  if (v >= V) return;
  const int iz = v % g.nz, iy = (v / g.nz) % g.ny, ix = v / (g.nz * g.ny);
  std::int32_t winner;
  const float value = raster::voxel_value(s_objects, n, g, ix, iy, iz, &winner);
  float level = 0.f;
  if (value > 0.f) {
    const std::int32_t l =
        random_phase
            ? raster::voxel_phase_index(RandomStream(seed, stream_id(first + sample, RandomDomain::Phase)),
                                        static_cast<std::uint64_t>(v))
            : s_objects[winner].phase_index;
    level = static_cast<float>(l);  // exact: levels < 2^24
  }
  x[static_cast<long long>(sample) * V + v] = make_float2(value, level);
}

// One block per sample: the largest magnitude (max is exact in any order), then x = (value / peak) e^{j
// phase}.
__global__ void __launch_bounds__(kReduceThreads)
    normalize_kernel(float2* __restrict__ x, int V, const float2* __restrict__ table) {
  __shared__ float s_max[kReduceThreads];
  float2* X = x + static_cast<long long>(blockIdx.x) * V;
  const int tid = threadIdx.x;
  float m = 0.f;
  for (int v = tid; v < V; v += blockDim.x) m = fmaxf(m, X[v].x);
  s_max[tid] = m;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) s_max[tid] = fmaxf(s_max[tid], s_max[tid + s]);
    __syncthreads();
  }
  const float peak = s_max[0];
  for (int v = tid; v < V; v += blockDim.x) {
    const float2 p = X[v];
    if (p.x > 0.f) {
      const float s = raster::div(p.x, peak);
      const float2 e = table[static_cast<int>(p.y)];
      X[v] = make_float2(raster::mul(s, e.x), raster::mul(s, e.y));
    } else {
      X[v] = make_float2(0.f, 0.f);
    }
  }
}

// One block per sample: noise variance = mean |Ax|^2 / 10^(SNR/10), then the same Philox/Box-Muller draws as
// the CPU's add_noise (radar/simulation.cpp). Also stores the SNR (float) when asked.
__global__ void __launch_bounds__(kReduceThreads)
    noise_kernel(float2* __restrict__ y, int S, const double* __restrict__ snr_db, std::uint64_t seed,
                 std::uint64_t first, int noise, float* __restrict__ snr_out) {
  __shared__ double s_sum[kReduceThreads];
  const int n = blockIdx.x, tid = threadIdx.x;
  if (snr_out && tid == 0) snr_out[n] = static_cast<float>(snr_db[n]);
  if (!noise || y == nullptr) return;
  float2* Y = y + static_cast<long long>(n) * S;
  double p = 0;
  for (int i = tid; i < S; i += blockDim.x) {
    const float2 v = Y[i];
    p += static_cast<double>(v.x) * v.x + static_cast<double>(v.y) * v.y;
  }
  s_sum[tid] = p;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) s_sum[tid] += s_sum[tid + s];
    __syncthreads();
  }
  const double variance = s_sum[0] / S / pow(10.0, snr_db[n] / 10.0);
  const double sigma = sqrt(variance / 2.0);  // per real component
  const RandomStream rs(seed, stream_id(first + n, RandomDomain::Noise));
  for (int i = tid; i < S; i += blockDim.x) {
    double a, b;
    rs.normal2(static_cast<std::uint64_t>(i), &a, &b);
    Y[i].x += static_cast<float>(sigma * a);
    Y[i].y += static_cast<float>(sigma * b);
  }
}

}  // namespace

struct GpuSynthesizer::Impl {
  // Constructed, never assigned (nvcc 13's C++20 front end rejects std::vector<Vec3>::operator=).
  Impl(const RadarSystem& s, const ImagingGrid& g, int max_batch) : plan(s, g, max_batch) {}
  GpuImagingPlan plan;
  raster::Grid grid{};
  int V = 0;
  std::size_t S = 0;
  SceneConfig config;
  std::uint64_t seed = 0;
  int max_batch = 0;
  DeviceBuffer<float2> table;
  // Two staging slots, so that drawing and uploading batch b + 1 never waits for more than batch b - 1.
  struct Slot {
    DeviceBuffer<SceneObject> objects;
    DeviceBuffer<std::int32_t> counts;
    DeviceBuffer<double> snr;
    std::unique_ptr<PinnedBuffer<SceneObject>> h_objects;
    std::unique_ptr<PinnedBuffer<std::int32_t>> h_counts;
    std::unique_ptr<PinnedBuffer<double>> h_snr;
    std::unique_ptr<CudaEvent> done;  // recorded after the last kernel of the call that used the slot
    bool used = false;
  };
  mutable Slot slots[2];
  mutable int next_slot = 0;
  // Host wrapper buffers and stream (first use).
  mutable DeviceBuffer<float2> host_x, host_y;
  mutable DeviceBuffer<float> host_snr;
  mutable std::unique_ptr<DeviceStream> host_stream;
};

GpuSynthesizer::GpuSynthesizer(const RadarSystem& system, const ImagingGrid& grid, const SceneConfig& config,
                               std::uint64_t seed, int max_batch)
    : impl_(std::make_unique<Impl>(system, grid, max_batch)) {
  require(max_batch <= 65535,
          detail::concat("the GPU synthesizer's batch is at most 65535 (got ", max_batch, ")"));
  Impl& p = *impl_;
  p.grid = raster::make_grid(grid, config);
  p.V = static_cast<int>(grid.voxels());
  p.S = system.samples_per_frame();
  p.config = config;
  p.seed = seed;
  p.max_batch = max_batch;
  const std::vector<cfloat>& table = phase_table();
  p.table.allocate(table.size());
  NFMIMO_CUDA_CHECK(
      cudaMemcpy(p.table.data(), table.data(), table.size() * sizeof(float2), cudaMemcpyHostToDevice));
  for (Impl::Slot& s : p.slots) {
    s.objects.allocate(std::size_t(max_batch) * kMaxObjects);
    s.counts.allocate(max_batch);
    s.snr.allocate(max_batch);
    s.h_objects = std::make_unique<PinnedBuffer<SceneObject>>(std::size_t(max_batch) * kMaxObjects);
    s.h_counts = std::make_unique<PinnedBuffer<std::int32_t>>(max_batch);
    s.h_snr = std::make_unique<PinnedBuffer<double>>(max_batch);
    s.done = std::make_unique<CudaEvent>();
  }
}

GpuSynthesizer::~GpuSynthesizer() = default;

void GpuSynthesizer::generate(const DrawnBatch& b, cfloat* d_targets, cfloat* d_measurements, float* d_snr_db,
                              cudaStream_t stream) const {
  const Impl& p = *impl_;
  const int count = b.count;
  require(count >= 1 && count <= p.max_batch,
          detail::concat("batch ", count, " is outside the GPU synthesizer's range [1, ", p.max_batch, "]"));
  Impl::Slot& slot = p.slots[p.next_slot];
  Impl::Slot& previous = p.slots[p.next_slot ^ 1];
  p.next_slot ^= 1;
  if (slot.used) NFMIMO_CUDA_CHECK(cudaEventSynchronize(slot.done->get()));  // its staging is free again
  std::memcpy(slot.h_objects->data(), b.objects.data(),
              std::size_t(count) * kMaxObjects * sizeof(SceneObject));
  std::memcpy(slot.h_counts->data(), b.object_counts.data(), std::size_t(count) * sizeof(std::int32_t));
  std::memcpy(slot.h_snr->data(), b.snr_db.data(), std::size_t(count) * sizeof(double));
  // The forward plan's scratch is shared by every call: order this call after the previous one even when the
  // caller switched streams.
  if (previous.used) NFMIMO_CUDA_CHECK(cudaStreamWaitEvent(stream, previous.done->get(), 0));
  slot.objects.upload(slot.h_objects->data(), std::size_t(count) * kMaxObjects, stream);
  slot.counts.upload(slot.h_counts->data(), count, stream);
  slot.snr.upload(slot.h_snr->data(), count, stream);

  auto* x = reinterpret_cast<float2*>(d_targets);
  const dim3 raster_grid((p.V + kRasterThreads - 1) / kRasterThreads, count);
  raster_kernel<<<raster_grid, kRasterThreads, 0, stream>>>(
      slot.objects.data(), slot.counts.data(), p.grid, p.V, p.seed, b.first,
      p.config.phase == PhaseModel::RandomPerVoxel ? 1 : 0, x);
  NFMIMO_CUDA_CHECK_LAUNCH();
  normalize_kernel<<<count, kReduceThreads, 0, stream>>>(x, p.V, p.table.data());
  NFMIMO_CUDA_CHECK_LAUNCH();
  if (d_measurements) p.plan.forward(d_targets, d_measurements, count, stream);
  if (d_measurements || d_snr_db) {
    noise_kernel<<<count, kReduceThreads, 0, stream>>>(reinterpret_cast<float2*>(d_measurements),
                                                       static_cast<int>(p.S), slot.snr.data(), p.seed,
                                                       b.first, p.config.noise ? 1 : 0, d_snr_db);
    NFMIMO_CUDA_CHECK_LAUNCH();
  }
  slot.done->record(stream);
  slot.used = true;
}

void GpuSynthesizer::generate_host(const DrawnBatch& b, cfloat* targets, cfloat* measurements,
                                   float* snr_db) const {
  const Impl& p = *impl_;
  if (!p.host_stream) p.host_stream = std::make_unique<DeviceStream>();
  p.host_x.reserve(std::size_t(p.V) * p.max_batch);
  if (measurements) p.host_y.reserve(p.S * p.max_batch);
  if (snr_db) p.host_snr.reserve(p.max_batch);
  cudaStream_t s = p.host_stream->get();
  generate(b, reinterpret_cast<cfloat*>(p.host_x.data()),
           measurements ? reinterpret_cast<cfloat*>(p.host_y.data()) : nullptr,
           snr_db ? p.host_snr.data() : nullptr, s);
  p.host_x.download(reinterpret_cast<float2*>(targets), std::size_t(b.count) * p.V, s);
  if (measurements) p.host_y.download(reinterpret_cast<float2*>(measurements), std::size_t(b.count) * p.S, s);
  if (snr_db) p.host_snr.download(snr_db, b.count, s);
  p.host_stream->synchronize();
}

}  // namespace nfmimo
