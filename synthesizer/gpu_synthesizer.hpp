// The GPU backend of Synthesizer (internal). Compiles without nvcc; implemented in gpu_synthesizer.cu, or by
// gpu_synthesizer_none.cpp in builds without CUDA (constructing it is then an InputError).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/gpu_imaging.hpp"
#include "synthesizer/scene.hpp"

namespace nfmimo {

// The host-drawn part of a batch: objects [count * kMaxObjects] (fixed stride), object counts and SNRs
// [count].
struct DrawnBatch {
  std::uint64_t first = 0;
  int count = 0;
  std::vector<SceneObject> objects;
  std::vector<std::int32_t> object_counts;
  std::vector<double> snr_db;
};

// Draws the scenes and SNRs of samples first .. first + count - 1 (OpenMP over samples).
DrawnBatch draw_batch(const SceneConfig& config, const ImagingGrid& grid, std::uint64_t seed,
                      std::uint64_t first, int count);

class GpuSynthesizer {
 public:
  GpuSynthesizer(const RadarSystem& system, const ImagingGrid& grid, const SceneConfig& config,
                 std::uint64_t seed, int max_batch);
  ~GpuSynthesizer();
  GpuSynthesizer(const GpuSynthesizer&) = delete;
  GpuSynthesizer& operator=(const GpuSynthesizer&) = delete;

  // Device memory; `d_measurements` / `d_snr_db` may be null for targets only. Asynchronous on `stream`.
  void generate(const DrawnBatch& batch, cfloat* d_targets, cfloat* d_measurements, float* d_snr_db,
                cudaStream_t stream) const;
  // Host memory; synchronous. `measurements` / `snr_db` may be null for targets only.
  void generate_host(const DrawnBatch& batch, cfloat* targets, cfloat* measurements, float* snr_db) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nfmimo
