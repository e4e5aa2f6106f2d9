#include "models/learned/pipeline.hpp"

#include <fmt/format.h>

#include "kernels/normalise.hpp"
#include "models/learned/cpu_pipeline.hpp"
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
    : spec_(learned_method_spec(method)), model_(std::move(model)), precision_(precision) {
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
    engine_ =
        std::make_unique<GpuLearnedPipeline>(model_.system, model_.grid, model_.network(), model_.parameters,
                                             spec_.complex_input, precision, physics_mode, max_batch);
    return;
  }
  require(
      precision == Precision::Fp32,
      fmt::format("method '{}': the CPU network backend runs fp32 only; precision '{}' needs --device cuda",
                  spec_.name, to_string(precision)));
  engine_ = std::make_unique<CpuLearnedPipeline>(model_, spec_.complex_input, spec_.dense_first_stage,
                                                 physics_mode, max_batch);
}

LearnedPipeline::~LearnedPipeline() = default;

std::string LearnedPipeline::device_description() const { return engine_->description(); }

GpuLearnedPipeline* LearnedPipeline::gpu() const { return dynamic_cast<GpuLearnedPipeline*>(engine_.get()); }

void normalise_network_input(const cfloat* adjoint, int frames, std::size_t V, bool complex_input,
                             float* input) {
  normalise_by_frame_max(adjoint, frames, V,
                         complex_input ? NormaliseMode::Complex : NormaliseMode::Magnitude, input);
}

void LearnedPipeline::network_input(const cfloat* measurements, int frames, float* input) {
  engine_->network_input(measurements, frames, input);
}

void LearnedPipeline::run_live(const cfloat* measurement, float* volume) {
  engine_->run_live(measurement, volume);
}

void LearnedPipeline::run(const cfloat* measurements, int frames, float* volumes) {
  engine_->run(measurements, frames, volumes);
}

}  // namespace nfmimo::nn
