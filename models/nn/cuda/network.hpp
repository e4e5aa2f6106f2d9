// The cuDNN backend of the network engine: executes the same Network graph as the CPU backends, on the GPU.
//
// Inside, activations are channels-last ([n, x, y, z, c], NDHWC) in the compute storage type of the
// precision:
//   fp32  float32 storage and arithmetic (no tensor cores: cuDNN's FMA kernels)
//   tf32  float32 storage, convolutions on TF32 tensor cores (10-bit mantissa products, float32 accumulation)
//   fp16  float16 storage, tensor cores with float32 accumulation (cuDNN's "pseudo half" configuration)
//   bf16  bfloat16 storage, tensor cores with float32 accumulation
// The public calls take and return the logical layout in float32 ([n, c, x, y, z]; a plain cast when c = 1).
//
// Inference mode folds each batch norm into the preceding convolution when the parameters are loaded and
// fuses a following ReLU into it (cudnnConvolutionBiasActivationForward where cuDNN runs it faster than the
// plain convolution plus our bias-and-activation kernel: measured once per shape when the plan is built);
// sigmoid and other epilogues are one small kernel. Training mode keeps every activation for backward, uses
// batch statistics (updating the running ones) and fuses batch norm with a following ReLU into one pass.
//
// Plans: one per batch size (those of plan(n) pinned, at most two others kept), built on first use or by
// plan(n): cuDNN algorithms chosen by measurement (cudnnFind*Ex, cached per shape and precision for the
// process), one workspace, every activation buffer (inference reuses dead ones). Executing a plan allocates
// nothing and never synchronises with the host, so a whole forward pass can be captured in a CUDA graph.
// Simple layers (pooling, concat, crop, pad, add, activations, batch norm in training, dense) are the kernels
// in models/nn/cuda/*.cu, and so are the thin convolutions (one input or one output channel: the first
// convolution, `out.conv`, the ResNet stem), for which cuDNN's channels-last kernels may have no algorithm.
//
// This header compiles without nvcc and without CUDA headers.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/nn/cuda/thin_conv.hpp"
#include "models/nn/graph.hpp"
#include "models/nn/executor.hpp"
#include "models/nn/reference.hpp"
#include "models/training/backend.hpp"
#include "kernels/device_buffer.hpp"

namespace nfmimo::nn {

struct GpuNetworkInternals;

class GpuNetwork final : public Executor {
 public:
  // InputError when CUDA is unavailable (a build without it, or no GPU), or when the parameters do not fit
  // the network (check_parameters).
  GpuNetwork(Network network, const Parameters& parameters, Mode mode, Precision precision);
  ~GpuNetwork();
  GpuNetwork(const GpuNetwork&) = delete;
  GpuNetwork& operator=(const GpuNetwork&) = delete;

  const Network& network() const override;
  Mode mode() const override;
  Precision precision() const;

  // Builds the plan for batch n now (allocations, algorithm measurements, a warm-up run) and keeps it for the
  // network's lifetime; forward does it on the first use of n otherwise, keeping at most two such plans.
  // Planning synchronises the device: plan every size a loop will use (a trainer's batch and tail) before it.
  void plan(int n);
  // Training mode: the same for predict's separate plan of batch n (validation batch and tail); inference
  // mode: plan(n).
  void plan_predict(int n);

  // Device memory, logical float32 layouts, ordered on `stream`. No allocation and no host synchronisation
  // once the batch size is planned. Training mode: batch statistics (running statistics updated) and
  // activations kept for backward_device.
  void forward_device(const float* d_input, float* d_output, int n, cudaStream_t stream);
  // Inference-mode output of any network (training mode: running statistics, nothing updated). Training mode
  // runs it in plans of its own, so a predict between forward_device and backward_device leaves the
  // gradients of that backward unchanged.
  void predict_device(const float* d_input, float* d_output, int n, cudaStream_t stream);
  // Training mode, after forward_device: back-propagates d(loss)/d(output) (device, logical layout, already
  // multiplied by any loss scale) into the gradient buffers; writes d(loss)/d(input) when d_grad_input is not
  // null.
  void backward_device(const float* d_grad_output, float* d_grad_input, cudaStream_t stream);

  // Host-memory conveniences (synchronous; tests and small tools).
  void forward(const float* input, float* output, int n) override;
  void predict(const float* input, float* output, int n) override;
  void backward(const float* grad_output, float* grad_input) override;

  // Current parameters in the layouts of models/nn/graph.hpp (training mode: running statistics as updated by
  // forward). Synchronises; valid until the next call.
  const Parameters& parameters() const override;
  // Replaces the parameters (checked; inference mode folds them again). Synchronises.
  void set_parameters(const Parameters& parameters) override;
  // Gradients of the last backward for every trainable parameter, in the parameter layouts (training mode).
  const Gradients& gradients() const override;

  // "cuda (NVIDIA H200, cuDNN 9.14.0, fp16)".
  std::string description() const override;
  // Device memory held by parameters and plans, in bytes.
  std::size_t device_bytes() const;

  // Convolutions of batch n's plan that run as cuDNN's fused conv+bias+ReLU call (inference mode; 0 in
  // training mode). InputError when n is not planned.
  int fused_convolutions(int n) const;
  // Convolutions of batch n's plan that run on the direct thin-convolution kernels (one input or one output
  // channel; models/nn/cuda/thin_conv.hpp). InputError when n is not planned.
  int thin_convolutions(int n) const;

  // For the training backend (models/training/gpu_backend.cpp).
  GpuNetworkInternals& internals();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// How inference plans built from now on treat conv + bias + ReLU (process-wide; tests and diagnosis): Measure
// (the default) times cuDNN's fused call against the plain convolution and our epilogue and keeps the faster;
// Always uses the fused call and fails with cuDNN's reason where it is refused; Never keeps the plain path.
// Thin convolutions on the direct kernels (set_thin_convolution) are outside it: their kernel applies bias
// and activation itself.
enum class ConvFusion { Measure, Always, Never };
void set_conv_fusion(ConvFusion policy);
// Where plans built from now on run thin convolutions (process-wide; tests and diagnosis): Direct (the
// default) on the backend's own kernels, Cudnn on cuDNN like the others.
void set_thin_convolution(ThinConvolution policy);

// The precision a learned method uses on the GPU when none is asked for: the fastest one whose PSNR stays
// within 0.1 dB of fp32 on a test set (docs/networks.md, "Precision"). Inference precisions: fp32, tf32,
// fp16, bf16.
Precision default_gpu_precision();
// "fp32" etc. for inference, InputError naming the choices otherwise.
Precision parse_inference_precision(const std::string& name);

}  // namespace nfmimo::nn
