// The double-precision reference of the network engine: every layer as the obvious loops over the logical
// layout [n, c, x, y, z], forward and backward, executed op by op over a Network graph. Slow on purpose: it
// is the specification that the fast CPU path (and later cuDNN) is tested against, and its backward pass is
// itself checked against finite differences.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "models/nn/graph.hpp"

namespace nfmimo::nn {

enum class Mode {
  Inference,  // batch norm uses the running statistics
  Training    // batch norm uses the batch's statistics and updates the running ones
};

class ReferenceNetwork {
 public:
  ReferenceNetwork(Network network, const Parameters& parameters);

  const Network& network() const { return network_; }

  // Runs the graph on `input` (shape network().input_shape(n)) and returns the output. Keeps every value for
  // backward. In Training mode the batch-norm running statistics are updated (unless `update_running` is
  // false, which finite-difference checks use to evaluate the same function repeatedly).
  Tensor<double> forward(const Tensor<double>& input, Mode mode, bool update_running = true);
  // Back-propagates d(loss)/d(output) through the last forward pass: fills gradients() for every trainable
  // parameter (overwritten, not accumulated across calls) and returns d(loss)/d(input).
  Tensor<double> backward(const Tensor<double>& grad_output);

  // Parameters in double, by name (mutable: finite-difference checks perturb them).
  std::map<std::string, std::vector<double>>& parameters() { return parameters_; }
  const std::map<std::string, std::vector<double>>& gradients() const { return gradients_; }
  // Current parameters (with updated running statistics) rounded to float.
  Parameters export_parameters() const;
  const Tensor<double>& value(int index) const { return values_.at(std::size_t(index)); }

 private:
  const std::vector<double>& param(const Op& op, const char* suffix) const;

  Network network_;
  std::map<std::string, std::vector<double>> parameters_, gradients_;
  std::vector<Tensor<double>> values_;
  Mode mode_ = Mode::Inference;
  // Batch statistics of the last training forward, per batch-norm op (mean, biased variance).
  std::map<int, std::pair<std::vector<double>, std::vector<double>>> batch_stats_;
  // Max-pooling argmax (flat input offset per output element) of the last forward, per pooling op.
  std::map<int, std::vector<std::size_t>> argmax_;
};

// Converts between float and double tensors.
Tensor<double> to_double(const Tensor<float>& t);
Tensor<float> to_float(const Tensor<double>& t);

}  // namespace nfmimo::nn
