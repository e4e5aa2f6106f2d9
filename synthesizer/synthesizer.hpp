// The in-memory generator: random scenes, their measurements y = A x through the shared forward operator
// (exact mode) and complex white noise at a per-sample SNR, on the CPU or the GPU. The trainer calls it for
// fresh batches; `nfmimo synthesize` calls it to write datasets.
//
// Sample i depends only on (seed, i, configuration): targets are bit-identical on every device, thread count
// and batch split; measurements are bit-identical between CPU runs and agree with the GPU within float
// tolerance. This header compiles without nvcc.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/device.hpp"
#include "kernels/gpu_imaging.hpp"
#include "synthesizer/scene.hpp"

namespace nfmimo {

// One batch in host memory.
struct SampleBatch {
  std::uint64_t first = 0;
  int count = 0;
  std::vector<cfloat> targets;       // [count, nx, ny, nz] (z fastest)
  std::vector<cfloat> measurements;  // [count, K, T, R]
  std::vector<float> snr_db;         // [count]; +inf for noiseless samples
};

// The SNR of sample `index` under `config` (dB; +inf when noiseless): fixed, or uniform in [min, max].
double sample_snr_db(const SceneConfig& config, std::uint64_t seed, std::uint64_t index);

class Synthesizer {
 public:
  // `max_batch` sizes the GPU buffers (host calls of any size are processed in chunks of it). Asking for CUDA
  // in a build or on a machine without it is an InputError (never a silent CPU fallback).
  Synthesizer(const RadarSystem& system, const ImagingGrid& grid, const SceneConfig& config,
              std::uint64_t seed, DeviceKind device = DeviceKind::Auto, int max_batch = 64);
  ~Synthesizer();
  Synthesizer(const Synthesizer&) = delete;
  Synthesizer& operator=(const Synthesizer&) = delete;

  DeviceKind device() const;
  std::string device_description() const;
  const RadarSystem& system() const;
  const ImagingGrid& grid() const;
  const SceneConfig& config() const;
  std::uint64_t seed() const;
  int max_batch() const;

  // Host memory, samples first .. first + count - 1: targets [count, V], measurements [count, K, T, R],
  // snr_db [count]. Synchronous.
  void generate(std::uint64_t first, int count, cfloat* targets, cfloat* measurements, float* snr_db) const;
  void generate_targets(std::uint64_t first, int count, cfloat* targets) const;
  SampleBatch batch(std::uint64_t first, int count) const;

  // Device memory (CUDA backend only; InputError on the CPU backend), count <= max_batch. Asynchronous on
  // `stream`: the scene parameters are drawn on the host, then uploads, rasterisation, forward model and
  // noise are queued. Calls are ordered on the synthesizer's scratch, so they must not run concurrently from
  // two threads.
  void generate_device(std::uint64_t first, int count, cfloat* d_targets, cfloat* d_measurements,
                       float* d_snr_db, cudaStream_t stream) const;
  void generate_targets_device(std::uint64_t first, int count, cfloat* d_targets, cudaStream_t stream) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nfmimo
