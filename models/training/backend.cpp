#include "models/training/backend.hpp"

#include <fmt/format.h>

#include "radar/error.hpp"

namespace nfmimo::nn {

LossKind parse_loss(const std::string& name) {
  if (name == "mse") return LossKind::Mse;
  if (name == "l1") return LossKind::L1;
  if (name == "mse+ssim") return LossKind::MseSsim;
  throw InputError(fmt::format("unknown loss '{}' (mse, l1, mse+ssim)", name));
}

std::string to_string(LossKind kind) {
  switch (kind) {
    case LossKind::Mse:
      return "mse";
    case LossKind::L1:
      return "l1";
    case LossKind::MseSsim:
      return "mse+ssim";
  }
  return "unknown";
}

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::Fp32;
  if (name == "tf32") return Precision::Tf32;
  if (name == "bf16") return Precision::Bf16;
  if (name == "fp16") return Precision::Fp16;
  throw InputError(fmt::format("unknown precision '{}' (fp32, tf32, bf16, fp16)", name));
}

std::string to_string(Precision p) {
  switch (p) {
    case Precision::Fp32:
      return "fp32";
    case Precision::Tf32:
      return "tf32";
    case Precision::Bf16:
      return "bf16";
    case Precision::Fp16:
      return "fp16";
  }
  return "unknown";
}

double forward_tolerance(Precision p) {
  switch (p) {
    case Precision::Fp32:
      return 1e-4;
    case Precision::Tf32:
      return 2e-3;
    case Precision::Fp16:
      return 1e-2;
    case Precision::Bf16:
      return 3e-2;
  }
  return 0;
}

StepResult TrainingBackend::step_device(const float*, const float*, int, const OptimizerSettings&,
                                        cudaStream_t) {
  throw InputError(fmt::format("the {} training backend works on host memory only", description()));
}

void TrainingBackend::predict_device(const float*, float*, int, cudaStream_t) {
  throw InputError(fmt::format("the {} training backend works on host memory only", description()));
}

void TrainingBackend::queue_step(const float* input, const float* target, int n,
                                 const OptimizerSettings& settings, cudaStream_t stream) {
  if (steps_in_flight() >= kStepsInFlight)
    throw Error(fmt::format("training: more than {} steps queued without collecting them", kStepsInFlight));
  finished_.push_back(device_resident() ? step_device(input, target, n, settings, stream)
                                        : step(input, target, n, settings));
}

StepResult TrainingBackend::collect_step() {
  if (finished_.empty()) throw Error("training: a step was collected that was never queued");
  const StepResult r = finished_.front();
  finished_.pop_front();
  return r;
}

}  // namespace nfmimo::nn
