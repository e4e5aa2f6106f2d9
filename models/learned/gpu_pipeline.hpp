// The learned pipelines on the GPU: everything stays on the device from the measurements to the volumes.
//
//   measurements [frames, K, T, R] -> GpuImagingPlan adjoint (exact or fast) -> normalise_by_sample_max
//   (magnitude, or real/imaginary channels) -> GpuNetwork (inference, folded batch norms) -> volumes [frames,
//   V]
//
// Buffers are planned once for max_batch; run_device allocates nothing and does not synchronise. The live
// path (batch 1) plans its own batch-1 buffers, runs the pipeline once to warm up, then captures upload,
// adjoint, normalisation, network and download in one CUDA graph and replays it for every frame: one launch
// per frame, no per-kernel launch overhead. If the capture is refused (a driver or library that cannot
// capture a step), the live path runs the same steps on a stream and says so in description().
//
// This header compiles without nvcc; constructing one without CUDA is an InputError.
#pragma once

#include <memory>
#include <string>

#include "models/learned/pipeline_engine.hpp"
#include "models/nn/graph.hpp"
#include "models/training/backend.hpp"
#include "radar/complex.hpp"
#include "radar/physics.hpp"
#include "radar/system.hpp"
#include "kernels/device_buffer.hpp"

namespace nfmimo::nn {

class GpuNetwork;

class GpuLearnedPipeline final : public PipelineEngine {
 public:
  GpuLearnedPipeline(const RadarSystem& system, const ImagingGrid& grid, const Network& network,
                     const Parameters& parameters, bool complex_input, Precision precision,
                     ImagingMode physics_mode, int max_batch);
  ~GpuLearnedPipeline() override;
  GpuLearnedPipeline(const GpuLearnedPipeline&) = delete;
  GpuLearnedPipeline& operator=(const GpuLearnedPipeline&) = delete;

  int max_batch() const;
  // Device memory: measurements [frames, K, T, R] -> volumes [frames, V]; frames <= max_batch. Ordered on
  // `stream`; no allocation, no host synchronisation.
  void run_device(const cfloat* d_measurements, float* d_volumes, int frames, cudaStream_t stream);
  // The normalised network input [frames, channels, V] (device memory), the same stages without the network.
  void network_input_device(const cfloat* d_measurements, float* d_input, int frames, cudaStream_t stream);
  // Host memory, any number of frames (chunks of max_batch); synchronous.
  void run(const cfloat* measurements, int frames, float* volumes) override;
  void network_input(const cfloat* measurements, int frames, float* input) override;
  // One frame through the captured CUDA graph (host memory, synchronous).
  void run_live(const cfloat* measurement, float* volume) override;
  // Benchmarks: one replay of the live path on `stream`, from its device measurement buffer (as the last
  // run_live left it) to its device volume buffer (device-to-device latency).
  void replay_live(cudaStream_t stream);
  // Whether the live path replays a CUDA graph (false before the first run_live, or when capture was
  // refused).
  bool live_graph() const;

  std::string description() const override;
  GpuNetwork& network();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nfmimo::nn
