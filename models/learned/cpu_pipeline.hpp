// The learned pipelines on the CPU: the adjoint on CpuOperator (through Imager), the per-frame normalisation
// (kernels/normalise.hpp) or, for the composites, the dense first stage (complex_dense.hpp), then the network
// on CpuNetwork (fp32, oneDNN). Work buffers are planned once for max_batch frames.
#pragma once

#include <memory>
#include <vector>

#include "models/learned/pipeline_engine.hpp"
#include "models/weights.hpp"
#include "radar/physics.hpp"

namespace nfmimo {
class Imager;
}

namespace nfmimo::nn {

class CpuNetwork;

class CpuLearnedPipeline final : public PipelineEngine {
 public:
  // `model` must outlive the engine (the composites' dense layer is used in place).
  CpuLearnedPipeline(const Model& model, bool complex_input, bool dense_first_stage, ImagingMode physics_mode,
                     int max_batch);
  ~CpuLearnedPipeline() override;

  void run(const cfloat* measurements, int frames, float* volumes) override;
  void run_live(const cfloat* measurement, float* volume) override { run(measurement, 1, volume); }
  void network_input(const cfloat* measurements, int frames, float* input) override;
  std::string description() const override;

 private:
  const Model& model_;
  bool complex_input_, dense_first_stage_;
  ImagingMode physics_mode_;
  int max_batch_;
  std::unique_ptr<Imager> imager_;
  std::unique_ptr<CpuNetwork> network_;
  std::vector<cfloat> adjoint_;
  std::vector<float> input_, scales_;

  // The network input of up to max_batch frames into `input`, with the work buffers adjoint_ and scales_.
  void chunk_input(const cfloat* measurements, int count, float* input);
};

}  // namespace nfmimo::nn
