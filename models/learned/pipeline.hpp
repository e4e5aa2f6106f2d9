// Learned reconstruction pipelines (the paper's Deep2S family): physics stage, per-sample normalisation,
// network.
//
//   deep2s          adjoint -> magnitude -> divide by the sample's maximum -> 3D U-Net (unet3d) -> magnitude
//   cv-deep2s       adjoint -> divide by the sample's maximum magnitude -> [real, imag] channels -> cv-unet3d
//   deep2s-unet2d   deep2s with the 2D-kernel U-Net (unet2d)
//   deep2s-resnet   deep2s with the ResNet (resnet)
//   deepdi          measurements scaled by 1 / max|A^H y| -> learned complex dense layer (random init) ->
//                   [real, imag] channels -> cv-unet3d (one jointly trained model,
//                   models/learned/composite.hpp)
//   deep2s-plus     the same with the dense layer initialised to A^H before training
//
// Normalisation is per sample (each frame is independent; the authors' inference script normalised per batch,
// which makes a frame's image depend on its neighbours). A frame whose adjoint is all zeros stays zero.
// Frames are processed in chunks of `max_batch`. The device is chosen once at construction (`auto`: the GPU
// when one is present) and the pipeline then holds one engine (pipeline_engine.hpp): on the CPU
// CpuLearnedPipeline (the adjoint on CpuOperator, the network on CpuNetwork, fp32 only); on the GPU
// GpuLearnedPipeline (everything stays on the device: GpuImagingPlan, the normalisation kernel, GpuNetwork at
// the requested precision), with a CUDA-graph path for live single frames (run_live).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/device.hpp"
#include "models/training/backend.hpp"
#include "models/weights.hpp"
#include "radar/complex.hpp"
#include "radar/physics.hpp"

namespace nfmimo::nn {

class GpuLearnedPipeline;
class PipelineEngine;

struct LearnedMethodSpec {
  std::string name;          // method name in the method table
  std::string architecture;  // the network it needs
  bool complex_input;        // cv-deep2s: real and imaginary channels instead of the magnitude
  std::string help;
  bool dense_first_stage = false;  // deepdi, deep2s-plus: a learned dense layer replaces the adjoint
};
const std::vector<LearnedMethodSpec>& learned_method_specs();
const LearnedMethodSpec& learned_method_spec(const std::string& name);  // InputError when unknown

// InputError when the measurement's system or grid differs from the model's (relative tolerance 1e-6), with
// describe_difference's text; `source` names the measurement (a file).
void require_matching(const Model& model, const std::string& model_source, const RadarSystem& system,
                      const ImagingGrid& grid, const std::string& source);

// The per-sample normalisation between the physics stage and the network, shared by the pipelines and the
// trainer (so that a network is trained on exactly what it sees at inference): each frame of `adjoint`
// [frames, V] is divided by its own largest magnitude (an all-zero frame stays zero), then written as the
// magnitude [frames, 1, V] or, with `complex_input`, as [frames, 2, V] real and imaginary channels.
void normalise_network_input(const cfloat* adjoint, int frames, std::size_t voxels, bool complex_input,
                             float* input);

class LearnedPipeline {
 public:
  // `precision`: the network's precision on the GPU (the CPU runs fp32 only: anything else is an InputError).
  LearnedPipeline(const std::string& method, Model model, DeviceKind device,
                  ImagingMode physics_mode = ImagingMode::Exact, int max_batch = 8,
                  Precision precision = Precision::Fp32);
  ~LearnedPipeline();
  LearnedPipeline(const LearnedPipeline&) = delete;
  LearnedPipeline& operator=(const LearnedPipeline&) = delete;

  // volumes [frames, V] (magnitudes) from measurements [frames, K, T, R] of the model's system.
  void run(const cfloat* measurements, int frames, float* volumes);
  // One frame for live use: on the GPU a replayed CUDA graph (buffers planned once), on the CPU run(.., 1,
  // ..).
  void run_live(const cfloat* measurement, float* volume);
  // The normalised network input of the frames (for tests and training): [frames, channels, V].
  void network_input(const cfloat* measurements, int frames, float* input);

  const Model& model() const { return model_; }
  DeviceKind device() const { return device_; }
  Precision precision() const { return precision_; }
  std::string device_description() const;
  // The GPU pipeline (device-pointer entry points for benchmarks and the trainer); null on the CPU.
  GpuLearnedPipeline* gpu() const;

 private:
  LearnedMethodSpec spec_;
  Model model_;
  DeviceKind device_ = DeviceKind::Cpu;
  Precision precision_ = Precision::Fp32;
  std::unique_ptr<PipelineEngine> engine_;
};

}  // namespace nfmimo::nn
