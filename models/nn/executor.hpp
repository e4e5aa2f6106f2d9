// One interface over the network backends: the oneDNN CPU backend (CpuNetwork) and the cuDNN one
// (GpuNetwork) execute the same Network through it, so code that only runs a network (the PnP denoiser)
// holds one Executor and never branches on the device. The double-precision
// ReferenceNetwork (models/nn/reference.hpp) stays beside them as the specification both are tested against.
//
// Layouts are the logical ones of models/nn/tensor.hpp ([n, c, x, y, z], float32, host memory). Device-memory
// calls stay on GpuNetwork itself.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/device.hpp"
#include "models/nn/graph.hpp"
#include "models/nn/reference.hpp"
#include "models/training/backend.hpp"

namespace nfmimo::nn {

using Gradients = std::map<std::string, std::vector<float>>;

class Executor {
 public:
  virtual ~Executor() = default;

  virtual const Network& network() const = 0;
  virtual Mode mode() const = 0;

  // output [n, ...] = network(input [n, ...]). Training mode: batch statistics (running ones updated) and
  // activations kept for backward.
  virtual void forward(const float* input, float* output, int n) = 0;
  // Inference-mode output (training mode: running statistics, nothing updated, in state of its own, so that a
  // predict between forward and backward leaves that backward's gradients unchanged).
  virtual void predict(const float* input, float* output, int n) = 0;
  // Training mode, after forward: fills gradients() from d(loss)/d(output); writes d(loss)/d(input) when
  // `grad_input` is not null.
  virtual void backward(const float* grad_output, float* grad_input) = 0;

  // Current parameters (training mode: with the running statistics forward updated); valid until the next
  // call on the executor.
  virtual const Parameters& parameters() const = 0;
  // Replaces the parameters (same names and shapes; checked).
  virtual void set_parameters(const Parameters& parameters) = 0;
  // d(loss)/d(parameter) of the last backward for every trainable parameter, in the parameter layouts;
  // valid until the next call on the executor.
  virtual const Gradients& gradients() const = 0;

  // "cpu (oneDNN 2.6.3, 2 threads)", "cuda (NVIDIA H200, cuDNN 9.14.0, fp16)".
  virtual std::string description() const = 0;
};

// The executor of `device` (Cpu or Cuda; resolve Auto first). The CPU runs fp32 only (InputError for another
// precision); Cuda is an InputError naming the reason when CUDA is unavailable.
std::unique_ptr<Executor> make_executor(Network network, const Parameters& parameters, Mode mode,
                                        DeviceKind device, Precision precision = Precision::Fp32);

}  // namespace nfmimo::nn
