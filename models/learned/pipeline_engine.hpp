// The device half of a LearnedPipeline (models/learned/pipeline.hpp): the pipeline checks the method and the
// model once, then holds exactly one engine and forwards to it, so no method of the pipeline branches on the
// device. CpuLearnedPipeline (cpu_pipeline.hpp) and GpuLearnedPipeline (gpu_pipeline.hpp) implement it.
#pragma once

#include <string>

#include "radar/complex.hpp"

namespace nfmimo::nn {

class PipelineEngine {
 public:
  virtual ~PipelineEngine() = default;
  // Host memory, any number of frames (chunks of the engine's max_batch); synchronous.
  // volumes [frames, V] (magnitudes) from measurements [frames, K, T, R].
  virtual void run(const cfloat* measurements, int frames, float* volumes) = 0;
  // One frame for live use (the GPU replays a captured CUDA graph).
  virtual void run_live(const cfloat* measurement, float* volume) = 0;
  // The normalised network input [frames, channels, V]: the same stages without the network.
  virtual void network_input(const cfloat* measurements, int frames, float* input) = 0;
  virtual std::string description() const = 0;
};

}  // namespace nfmimo::nn
