#include "models/learned/pipeline.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "kernels/imager.hpp"
#include "kernels/normalise.hpp"
#include "models/learned/complex_dense.hpp"
#include "models/learned/composite.hpp"
#include "models/nn/cpu/network.hpp"
#include "models/learned/gpu_pipeline.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

const std::vector<LearnedMethodSpec>& learned_method_specs() {
  static const std::vector<LearnedMethodSpec> specs = {
      {"deep2s", "unet3d", false,
       "Deep2S: adjoint magnitude, per-sample max normalisation, 3D U-Net (--model FILE)"},
      {"cv-deep2s", "cv-unet3d", true,
       "CV-Deep2S: complex adjoint as real/imaginary channels, CV U-Net (--model FILE)"},
      {"deep2s-unet2d", "unet2d", false, "Deep2S with the 2D-kernel U-Net (--model FILE)"},
      {"deep2s-resnet", "resnet", false, "Deep2S with the ResNet (--model FILE)"},
      {"deepdi", "deepdi", true, "DeepDI: learned complex dense layer (no physics) + CV U-Net (--model FILE)",
       true},
      {"deep2s-plus", "deep2s-plus", true,
       "Deep2S+: dense layer initialised to A^H, trained with the CV U-Net (--model FILE)", true}};
  return specs;
}

const LearnedMethodSpec& learned_method_spec(const std::string& name) {
  for (const auto& s : learned_method_specs())
    if (s.name == name) return s;
  throw InputError(fmt::format(
      "unknown learned method '{}' (known: deep2s, cv-deep2s, deep2s-unet2d, deep2s-resnet, deepdi, "
      "deep2s-plus)",
      name));
}

void require_matching(const Model& model, const std::string& model_source, const RadarSystem& system,
                      const ImagingGrid& grid, const std::string& source) {
  if (const auto d = describe_difference(system, model.system))
    throw InputError(fmt::format("{}: the radar system differs from the one the model {} was trained for: {}",
                                 source, model_source, *d));
  if (const auto d = describe_difference(grid, model.grid))
    throw InputError(fmt::format("{}: the imaging grid differs from the one the model {} was trained for: {}",
                                 source, model_source, *d));
}

LearnedPipeline::LearnedPipeline(const std::string& method, Model model, DeviceKind device,
                                 ImagingMode physics_mode, int max_batch, Precision precision)
    : spec_(learned_method_spec(method)),
      model_(std::move(model)),
      physics_mode_(physics_mode),
      max_batch_(max_batch),
      precision_(precision) {
  require(max_batch > 0, "the batch size must be positive");
  require(model_.role == kReconstructionRole,
          fmt::format("method '{}' needs a reconstruction network, but the model is a {} (trained with "
                      "--arch denoiser): use it with --method pnp --model FILE",
                      spec_.name, model_.role));
  require(model_.architecture == spec_.architecture,
          fmt::format("method '{}' needs a '{}' model, but the model is a '{}' network", spec_.name,
                      spec_.architecture, model_.architecture));
  device_ = resolve_device(device);  // InputError with the reason when CUDA is asked for and unavailable
  if (device_ == DeviceKind::Cuda) {
    gpu_ =
        std::make_unique<GpuLearnedPipeline>(model_.system, model_.grid, model_.network(), model_.parameters,
                                             spec_.complex_input, precision, physics_mode, max_batch);
    return;
  }
  require(
      precision == Precision::Fp32,
      fmt::format("method '{}': the CPU network backend runs fp32 only; precision '{}' needs --device cuda",
                  spec_.name, to_string(precision)));
  imager_ = std::make_unique<Imager>(model_.system, model_.grid, DeviceKind::Cpu, max_batch);
  // A composite's U-Net gets its own parameters only; the dense layer is used in place in model_.
  network_ = std::make_unique<CpuNetwork>(
      model_.network(),
      spec_.dense_first_stage ? without_dense_parameters(model_.parameters) : model_.parameters,
      Mode::Inference);
  const std::size_t V = model_.grid.voxels();
  adjoint_.resize(std::size_t(max_batch) * V);
  input_.resize(std::size_t(max_batch) * V * (spec_.complex_input ? 2 : 1));
  scales_.resize(std::size_t(max_batch));
}

LearnedPipeline::~LearnedPipeline() = default;

std::string LearnedPipeline::device_description() const {
  if (gpu_) return gpu_->description();
  return fmt::format("physics: {}; network: {}", imager_->device_description(), network_->description());
}

void normalise_network_input(const cfloat* adjoint, int frames, std::size_t V, bool complex_input,
                             float* input) {
  normalise_by_frame_max(adjoint, frames, V,
                         complex_input ? NormaliseMode::Complex : NormaliseMode::Magnitude, input);
}

void LearnedPipeline::cpu_network_input(const cfloat* measurements, int count, float* input, cfloat* adjoint,
                                        float* scales) const {
  const std::size_t V = model_.grid.voxels();
  imager_->image(Method::Adjoint, physics_mode_, measurements, adjoint, count);
  if (!spec_.dense_first_stage) {
    normalise_network_input(adjoint, count, V, spec_.complex_input, input);
    return;
  }
  // The composites use the adjoint for the per-frame scale only (models/learned/composite.hpp).
  measurement_scales(adjoint, count, V, scales);
  complex_dense_forward(dense_weights(model_.parameters), dense_bias(model_.parameters),
                        int(model_.system.samples_per_frame()), int(V), measurements, count, input, scales);
}

void LearnedPipeline::network_input(const cfloat* measurements, int frames, float* input) const {
  if (gpu_) {
    gpu_->network_input(measurements, frames, input);
    return;
  }
  const std::size_t V = model_.grid.voxels(), KTR = model_.system.samples_per_frame();
  const int channels = spec_.complex_input ? 2 : 1;
  std::vector<cfloat> adjoint(std::size_t(max_batch_) * V);
  std::vector<float> scales(static_cast<std::size_t>(max_batch_));
  for (int first = 0; first < frames; first += max_batch_) {
    const int count = std::min(max_batch_, frames - first);
    cpu_network_input(measurements + std::size_t(first) * KTR, count,
                      input + std::size_t(first) * channels * V, adjoint.data(), scales.data());
  }
}

void LearnedPipeline::run_live(const cfloat* measurement, float* volume) {
  if (gpu_)
    gpu_->run_live(measurement, volume);
  else
    run(measurement, 1, volume);
}

void LearnedPipeline::run(const cfloat* measurements, int frames, float* volumes) {
  if (gpu_) {
    gpu_->run(measurements, frames, volumes);
    return;
  }
  const std::size_t V = model_.grid.voxels(), KTR = model_.system.samples_per_frame();
  for (int first = 0; first < frames; first += max_batch_) {
    const int count = std::min(max_batch_, frames - first);
    cpu_network_input(measurements + std::size_t(first) * KTR, count, input_.data(), adjoint_.data(),
                      scales_.data());
    network_->forward(input_.data(), volumes + std::size_t(first) * V, count);
  }
}

}  // namespace nfmimo::nn
