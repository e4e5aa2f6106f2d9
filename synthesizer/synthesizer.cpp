#include "synthesizer/synthesizer.hpp"

#include <omp.h>

#include <cmath>
#include <limits>
#include <span>

#include <fmt/format.h>

#include "radar/cpu_operator.hpp"
#include "radar/error.hpp"
#include "radar/random.hpp"
#include "radar/simulation.hpp"
#include "synthesizer/gpu_synthesizer.hpp"

namespace nfmimo {

double sample_snr_db(const SceneConfig& config, std::uint64_t seed, std::uint64_t index) {
  if (!config.noise) return std::numeric_limits<double>::infinity();
  if (config.min_snr_db == config.max_snr_db) return config.min_snr_db;
  const RandomStream rs(seed, stream_id(index, RandomDomain::Snr));
  return config.min_snr_db + (config.max_snr_db - config.min_snr_db) * rs.uniform(0);
}

DrawnBatch draw_batch(const SceneConfig& config, const ImagingGrid& grid, std::uint64_t seed,
                      std::uint64_t first, int count) {
  DrawnBatch b;
  b.first = first;
  b.count = count;
  b.objects.assign(std::size_t(count) * kMaxObjects, SceneObject{});
  b.object_counts.assign(count, 0);
  b.snr_db.assign(count, 0.0);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < count; ++i) {
    const Scene s = draw_scene(config, grid, seed, first + i);
    std::copy(s.objects.begin(), s.objects.end(), b.objects.begin() + std::size_t(i) * kMaxObjects);
    b.object_counts[i] = static_cast<std::int32_t>(s.objects.size());
    b.snr_db[i] = sample_snr_db(config, seed, first + i);
  }
  return b;
}

struct Synthesizer::Impl {
  Impl(const RadarSystem& s, const ImagingGrid& g) : system(s), grid(g) {}
  RadarSystem system;
  ImagingGrid grid;
  SceneConfig config;
  std::uint64_t seed = 0;
  int max_batch = 0;
  DeviceKind device = DeviceKind::Cpu;
  std::unique_ptr<CpuOperator> cpu;
  std::unique_ptr<GpuSynthesizer> gpu;
};

Synthesizer::Synthesizer(const RadarSystem& system, const ImagingGrid& grid, const SceneConfig& config,
                         std::uint64_t seed, DeviceKind device, int max_batch)
    : impl_(std::make_unique<Impl>(system, grid)) {
  validate_scene_config(config, "scene configuration");
  validate_system(system, "system");
  validate_grid(grid, system, "grid");
  validate_scene_grid(grid, "grid");
  require(max_batch >= 1, fmt::format("the batch size must be positive (got {})", max_batch));
  Impl& p = *impl_;
  p.config = config;
  p.seed = seed;
  p.max_batch = max_batch;
  p.device = resolve_device(device);
  if (p.device == DeviceKind::Cuda)
    p.gpu = std::make_unique<GpuSynthesizer>(system, grid, config, seed, max_batch);
  else
    p.cpu = std::make_unique<CpuOperator>(system, grid);
}

Synthesizer::~Synthesizer() = default;

DeviceKind Synthesizer::device() const { return impl_->device; }
std::string Synthesizer::device_description() const {
  if (impl_->device == DeviceKind::Cuda) {
    const auto info = gpu_info(0);
    return fmt::format("cuda ({})", info ? info->name : "GPU");
  }
  return fmt::format("cpu ({} threads)", omp_get_max_threads());
}
const RadarSystem& Synthesizer::system() const { return impl_->system; }
const ImagingGrid& Synthesizer::grid() const { return impl_->grid; }
const SceneConfig& Synthesizer::config() const { return impl_->config; }
std::uint64_t Synthesizer::seed() const { return impl_->seed; }
int Synthesizer::max_batch() const { return impl_->max_batch; }

void Synthesizer::generate(std::uint64_t first, int count, cfloat* targets, cfloat* measurements,
                           float* snr_db) const {
  const Impl& p = *impl_;
  require(count >= 0, "the sample count must not be negative");
  const std::size_t V = p.grid.voxels(), S = p.system.samples_per_frame();
  for (int n0 = 0; n0 < count; n0 += p.max_batch) {
    const int nb = std::min(p.max_batch, count - n0);
    cfloat* x = targets + std::size_t(n0) * V;
    cfloat* y = measurements ? measurements + std::size_t(n0) * S : nullptr;
    float* snr = snr_db ? snr_db + n0 : nullptr;
    if (p.gpu) {
      p.gpu->generate_host(draw_batch(p.config, p.grid, p.seed, first + n0, nb), x, y, snr);
      continue;
    }
    render_targets(p.config, p.grid, p.seed, first + n0, nb, x);
    if (y) p.cpu->forward(x, y, nb);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < nb; ++i) {
      const std::uint64_t index = first + n0 + i;
      const double db = sample_snr_db(p.config, p.seed, index);
      if (y && p.config.noise)
        add_noise(std::span<cfloat>(y + std::size_t(i) * S, S), db, p.seed,
                  stream_id(index, RandomDomain::Noise));
      if (snr) snr[i] = static_cast<float>(db);
    }
  }
}

void Synthesizer::generate_targets(std::uint64_t first, int count, cfloat* targets) const {
  generate(first, count, targets, nullptr, nullptr);
}

SampleBatch Synthesizer::batch(std::uint64_t first, int count) const {
  SampleBatch b;
  b.first = first;
  b.count = count;
  b.targets.resize(impl_->grid.voxels() * count);
  b.measurements.resize(impl_->system.samples_per_frame() * count);
  b.snr_db.resize(count);
  generate(first, count, b.targets.data(), b.measurements.data(), b.snr_db.data());
  return b;
}

void Synthesizer::generate_device(std::uint64_t first, int count, cfloat* d_targets, cfloat* d_measurements,
                                  float* d_snr_db, cudaStream_t stream) const {
  const Impl& p = *impl_;
  require(p.gpu != nullptr, "generate_device needs the CUDA backend (this synthesizer runs on the CPU)");
  require(count >= 1 && count <= p.max_batch,
          fmt::format("batch {} is outside the synthesizer's range [1, {}]", count, p.max_batch));
  p.gpu->generate(draw_batch(p.config, p.grid, p.seed, first, count), d_targets, d_measurements, d_snr_db,
                  stream);
}

void Synthesizer::generate_targets_device(std::uint64_t first, int count, cfloat* d_targets,
                                          cudaStream_t stream) const {
  generate_device(first, count, d_targets, nullptr, nullptr, stream);
}

}  // namespace nfmimo
