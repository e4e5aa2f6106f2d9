// The fast float32 CPU backend of the network engine (forward and backward), built on oneDNN.
//
// Inside, activations are channels-last ([n, x, y, z, c], oneDNN's ndhwc), the layout oneDNN's AVX2
// convolution kernels run at full speed on and the one the cuDNN backend will use; the public calls take and
// return the logical layout [n, c, x, y, z] (identical when c = 1, so the paper's networks convert nothing).
// Convolutions (forward, backward data, backward weights) are oneDNN primitives; transposed convolutions with
// kernel <= stride (every one in the paper's networks) are one GEMM plus a scatter; the cheap layers are
// OpenMP loops. See docs/networks.md for the choice and the measured speed.
//
// Inference mode folds each batch norm into the preceding convolution and fuses a following ReLU or sigmoid
// into it (oneDNN post-op), and reuses activation buffers once they are dead. Training mode keeps every
// activation for backward and uses batch statistics (updating the running ones).
// Plans (primitives and buffers for one batch size) are built on first use of a batch size; executing one
// allocates no activation memory.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/nn/graph.hpp"
#include "models/nn/executor.hpp"
#include "models/nn/reference.hpp"

namespace nfmimo::nn {

class CpuNetwork final : public Executor {
 public:
  CpuNetwork(Network network, const Parameters& parameters, Mode mode);
  ~CpuNetwork();
  CpuNetwork(const CpuNetwork&) = delete;
  CpuNetwork& operator=(const CpuNetwork&) = delete;

  const Network& network() const override;
  Mode mode() const override;

  // output [n, ...] = network(input [n, ...]), logical layouts.
  void forward(const float* input, float* output, int n) override;
  // Inference-mode output (training mode: running statistics, nothing updated). Training mode computes it in
  // a separate inference copy, so a predict between forward and backward leaves that backward's gradients
  // unchanged (the contract the GPU backend keeps too).
  void predict(const float* input, float* output, int n) override;
  // Training mode only, after forward: fills gradients() from d(loss)/d(output); writes d(loss)/d(input) when
  // `grad_input` is not null.
  void backward(const float* grad_output, float* grad_input) override;

  // Current parameters (training mode: with the running statistics updated by forward).
  const Parameters& parameters() const override;
  // Replaces the parameters (same names and shapes; checked), for example after an optimizer step.
  void set_parameters(const Parameters& parameters) override;
  // d(loss)/d(parameter) of the last backward, for every trainable parameter, in the parameter's layout.
  const Gradients& gradients() const override;

  // "cpu (oneDNN 2.6.3, 2 threads)".
  std::string description() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// An inference-mode copy of a training network that follows its parameters lazily, for the training backends'
// predict(): mark_stale() after every change of the training parameters; get() builds the copy on first use
// and refreshes it only when it is stale, so a run without predictions pays nothing.
class InferenceMirror {
 public:
  void mark_stale() { stale_ = true; }
  CpuNetwork& get(const Network& network, const CpuNetwork& training);

 private:
  std::unique_ptr<CpuNetwork> net_;
  bool stale_ = true;
};

}  // namespace nfmimo::nn
