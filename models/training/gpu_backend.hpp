// The cuDNN training backend: the TrainingBackend interface (models/training/backend.hpp) on a GpuNetwork in
// training mode, with the loss, gradient clipping and Adam as device kernels.
//
// One step, all on the caller's stream with no host synchronisation inside: forward (batch statistics,
// running statistics updated), loss and its gradient (MSE or L1; the mean over all elements, as the CPU
// backend), backward, unscaling + global gradient norm + finiteness flag, then a decision kernel (clip
// factor, loss-scale update, Adam's step count and bias corrections) and one fused Adam/AdamW kernel over all
// parameters that also refreshes the compute-type copy of the weights. The decisions stay on the device: a
// non-finite step skips the update without the host looking.
//
// Precisions: fp32 (no tensor cores), tf32, bf16, fp16; master weights, gradients and Adam's moments are
// float32 in every case. fp16 uses dynamic loss scaling as PyTorch's GradScaler does (initial scale 2^16,
// halved on an overflow and the step skipped, doubled after 2000 finite steps): such a skipped step reports
// finite = true with gradient_norm = inf (the run is not diverging); only a non-finite loss, or overflows
// that persist down to a scale of 1, report finite = false. The MSE+SSIM loss is refused (the CPU backend has
// it).
//
// Adam: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, p -= lr wd p (decoupled decay on convolution,
// transposed convolution and dense weights), p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps);
// clipping scales g by min(1, clip_norm / ||g||) (global 2-norm of all gradients, before clipping in
// StepResult::gradient_norm).
//
// This header compiles without nvcc.
#pragma once

#include <memory>

#include "models/training/backend.hpp"

namespace nfmimo::nn {

class GpuTrainingBackend final : public TrainingBackend {
 public:
  // InputError when CUDA is unavailable.
  GpuTrainingBackend(const Network& network, const Parameters& initial, Precision precision);
  ~GpuTrainingBackend() override;

  const Network& network() const override;
  std::string description() const override;

  StepResult step(const float* input, const float* target, int n, const OptimizerSettings& settings) override;
  void predict(const float* input, float* output, int n) override;

  bool device_resident() const override { return true; }
  // Queues the step and waits for its StepResult (the small result copy is the only synchronisation; the
  // trainer uses queue_step and collect_step instead, which do not wait).
  StepResult step_device(const float* input, const float* target, int n, const OptimizerSettings& settings,
                         cudaStream_t stream) override;
  void predict_device(const float* input, float* output, int n, cudaStream_t stream) override;
  // Pins the plans of these sizes (GpuNetwork::plan / plan_predict) and sizes the step's buffers for the
  // largest.
  void plan_sizes(const std::vector<int>& step_sizes, const std::vector<int>& predict_sizes) override;

  // Pipelined steps (backend.hpp): a queued step records its scalars into one of kStepsInFlight pinned
  // slots with an event; collect_step waits for the oldest slot's event only. Host pointers (no stream) are
  // staged through the backend's own device buffers on its own stream.
  void queue_step(const float* input, const float* target, int n, const OptimizerSettings& settings,
                  cudaStream_t stream = nullptr) override;
  StepResult collect_step() override;
  int steps_in_flight() const override;
  // Steps skipped so far (non-finite gradients, including fp16 overflows) and the current loss scale.
  long long skipped_steps();
  double loss_scale();

  Parameters parameters() const override;
  OptimizerState optimizer_state() const override;
  void load_state(const Parameters& parameters, const OptimizerState& state) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nfmimo::nn
