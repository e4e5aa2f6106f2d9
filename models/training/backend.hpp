// The seam between the trainer (models/training*, `nfmimo train`) and the network backends.
//
// A TrainingBackend owns a network in training mode, its master parameters (float32), its optimizer state and
// the loss, and performs whole optimisation steps, so that a GPU backend can keep everything on the device
// (forward, loss, backward, gradient clipping, Adam) with no host synchronisation inside a step beyond what
// the caller asks for. The CPU backend (CpuNetwork + host Adam) is the reference implementation; the cuDNN
// backend implements the same interface. Layouts are the logical ones of models/nn/tensor.hpp: input [n,
// c_in, x, y, z], target and output [n, 1, x, y, z] (z fastest).
#pragma once

#include <map>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "models/nn/graph.hpp"
#include "kernels/device_buffer.hpp"

namespace nfmimo::nn {

enum class LossKind {
  Mse,      // mean over all elements of (output - target)^2 (the authors' group's choice)
  L1,       // mean |output - target|
  MseSsim,  // mse + ssim_weight * (1 - SSIM_3D(output, target)), SSIM as in models/metrics.hpp (per sample,
            // mean)
};
LossKind parse_loss(const std::string& name);  // "mse", "l1", "mse+ssim"
std::string to_string(LossKind kind);

enum class Precision { Fp32, Tf32, Bf16, Fp16 };     // compute precision (master weights are always float32)
Precision parse_precision(const std::string& name);  // "fp32", "tf32", "bf16", "fp16"
std::string to_string(Precision precision);
// Relative error a network forward pass in this precision may show against the float64 reference (GPU parity
// tests and the benchmark's correctness check): float32 accumulation 1e-4; TF32's 10-bit mantissa 2e-3;
// fp16 storage (2^-11) through a few layers 1e-2; bf16's 8-bit mantissa 3e-2.
double forward_tolerance(Precision precision);

struct OptimizerSettings {
  double learning_rate = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double epsilon = 1e-7;  // Keras's default (the authors' framework)
  double weight_decay =
      0;                 // decoupled (AdamW): p -= lr * weight_decay * p, applied to conv/dense weights only
  double clip_norm = 0;  // > 0: scale gradients so that their global 2-norm is at most this
  LossKind loss = LossKind::Mse;
  double ssim_weight = 1.0;  // MseSsim only
};

struct StepResult {
  double loss = 0;           // the batch's loss before the update
  double gradient_norm = 0;  // global 2-norm of the gradients before clipping
  bool finite = true;        // false: loss or gradients were not finite and the update was skipped
};

// Adam's state, by parameter name: first and second moments and the step count.
struct OptimizerState {
  long long step = 0;
  std::map<std::string, std::vector<float>> m, v;
};

class TrainingBackend {
 public:
  virtual ~TrainingBackend() = default;

  virtual const Network& network() const = 0;
  virtual std::string description() const = 0;  // e.g. "cpu (oneDNN 2.6.3, 2 threads)" or "cuda (H200, bf16)"
  // Floats of one sample's input: the network's input shape, or a composite's 2 M (scaled measurements).
  virtual std::size_t input_size() const { return network().input_shape(1).per_sample(); }

  // One optimisation step on a batch in host memory.
  virtual StepResult step(const float* input, const float* target, int n,
                          const OptimizerSettings& settings) = 0;
  // Inference-mode outputs (running statistics, no update) for validation, host memory.
  virtual void predict(const float* input, float* output, int n) = 0;

  // Device-resident variants (GPU backends): pointers to device memory, work ordered on `stream`. The default
  // implementations refuse (CPU backends).
  virtual bool device_resident() const { return false; }
  virtual StepResult step_device(const float* input, const float* target, int n,
                                 const OptimizerSettings& settings, cudaStream_t stream);
  virtual void predict_device(const float* input, float* output, int n, cudaStream_t stream);

  // Pipelined steps, so that a device step never waits for the host to read its loss: queue_step starts a
  // step and returns, collect_step returns the oldest uncollected step's result (waiting for it). At most
  // kStepsInFlight steps are queued and not yet collected (an Error beyond: a caller bug). The pointers are
  // host memory for host backends and device memory ordered on `stream` for device-resident ones; they must
  // stay valid until the step has run. The defaults run the step at once (step or step_device) and keep its
  // result for collect_step; the GPU backend queues it for real.
  static constexpr int kStepsInFlight = 2;
  virtual void queue_step(const float* input, const float* target, int n, const OptimizerSettings& settings,
                          cudaStream_t stream = nullptr);
  virtual StepResult collect_step();
  virtual int steps_in_flight() const { return int(finished_.size()); }

  // The batch sizes the caller will step and predict with (a trainer's batch and tail, its validation batch
  // and tail), planned now so that no plan is built, measured or evicted inside the loops. The default does
  // nothing (the CPU backends plan cheaply on first use).
  virtual void plan_sizes(const std::vector<int>& step_sizes, const std::vector<int>& predict_sizes) {
    (void)step_sizes, (void)predict_sizes;
  }

  // Checkpointing: master parameters (with batch-norm running statistics) and the optimizer state.
  virtual Parameters parameters() const = 0;
  virtual OptimizerState optimizer_state() const = 0;
  virtual void load_state(const Parameters& parameters, const OptimizerState& state) = 0;

 private:
  std::deque<StepResult> finished_;  // results of the default queue_step, oldest first
};

// The sizes of the batches that cover `count` samples `batch` at a time: the full batch and the tail.
inline std::vector<int> covering_batch_sizes(int count, int batch) {
  std::vector<int> sizes;
  if (count <= 0 || batch <= 0) return sizes;
  sizes.push_back(count < batch ? count : batch);
  if (count > batch && count % batch) sizes.push_back(count % batch);
  return sizes;
}

// The CPU backend (CpuNetwork in training mode, Adam on the host). Same seed, same data: same weights.
std::unique_ptr<TrainingBackend> make_cpu_training_backend(const Network& network, const Parameters& initial);
// The cuDNN backend (kernels/ + models/); InputError when CUDA is unavailable.
std::unique_ptr<TrainingBackend> make_gpu_training_backend(const Network& network, const Parameters& initial,
                                                           Precision precision);

}  // namespace nfmimo::nn
