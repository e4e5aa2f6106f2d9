// A network description that every backend executes: a static graph of named operations with named
// parameters.
//
// The graph holds no layout or precision decisions (those belong to the backends: the double reference, the
// CPU fast path, later cuDNN). Op 0 is the single input; every op produces one value whose index is the op's
// index; ops are stored in a topological order (inputs always precede their users). Parameter names are
// "<op name>.weight", "<op name>.bias", and for batch norm also "<op name>.running_mean" / ".running_var".
//
// Parameter layouts (PyTorch's, with D = x, H = y, W = z):
//   Conv           weight [c_out, c_in, kx, ky, kz], bias [c_out]
//   ConvTranspose  weight [c_in, c_out, kx, ky, kz], bias [c_out]
//   BatchNorm      weight (gamma) [c], bias (beta) [c], running_mean [c], running_var [c]
//   Dense          weight [out, in] with in = c * x * y * z of its input (flattened in the logical layout),
//   bias [out]
#pragma once

#include <array>
#include <map>
#include <string>
#include <vector>

#include "models/nn/tensor.hpp"

namespace nfmimo::nn {

enum class OpKind {
  Input,
  Conv,
  ConvTranspose,
  BatchNorm,
  ReLU,
  Sigmoid,
  MaxPool,
  Concat,
  Crop,
  ZeroPad,
  Add,
  Dense
};
std::string to_string(OpKind kind);

using Triple = std::array<int, 3>;  // per axis x, y, z

struct Op {
  OpKind kind = OpKind::Input;
  std::string name;
  std::vector<int> inputs;  // value (op) indices; Concat and Add take two, Input none, the others one
  int channels = 0;         // Conv, ConvTranspose, Dense: output channels / features
  Triple kernel{1, 1, 1};   // Conv, ConvTranspose, MaxPool
  Triple stride{1, 1, 1};   // Conv, ConvTranspose, MaxPool
  // Conv: implicit zero padding before / after each axis. Crop: voxels removed; ZeroPad: zeros added.
  // ConvTranspose: pad_hi is the extra output at the end of each axis (PyTorch's output_padding), pad_lo is
  // 0.
  Triple pad_lo{0, 0, 0}, pad_hi{0, 0, 0};
  bool bias = true;  // Conv, ConvTranspose, Dense
};

struct ParameterSpec {
  std::string name;
  std::vector<int> shape;
  bool trainable = true;
};

using Parameters = std::map<std::string, ParameterTensor>;

// Batch-norm hyperparameters. Defaults are Keras's (the authors' framework): epsilon 1e-3, running statistics
// updated as running = (1 - momentum) * running + momentum * batch with momentum 0.01 (Keras's 0.99 written
// the PyTorch way), from the biased batch variance.
struct BatchNormSettings {
  double epsilon = 1e-3;
  double momentum = 0.01;
};

class Network {
 public:
  Network() = default;
  // `input` gives c, x, y, z of one sample (n is ignored).
  Network(std::string architecture, Shape input);

  // Builders: each returns the new value's index.
  int conv(const std::string& name, int x, int channels, Triple kernel, bool same = true,
           Triple stride = {1, 1, 1});
  int conv_transpose(const std::string& name, int x, int channels, Triple kernel, Triple stride);
  int batch_norm(const std::string& name, int x);
  int relu(const std::string& name, int x);
  int sigmoid(const std::string& name, int x);
  int max_pool(const std::string& name, int x, Triple kernel);
  int concat(const std::string& name, int a, int b);
  int crop(const std::string& name, int x, Triple lo, Triple hi);
  int zero_pad(const std::string& name, int x, Triple lo, Triple hi);
  int add(const std::string& name, int a, int b);
  int dense(const std::string& name, int x, int features);
  void set_output(int value) { output_ = value; }

  const std::string& architecture() const { return architecture_; }
  const std::vector<Op>& ops() const { return ops_; }
  int output() const { return output_; }
  Shape input_shape(int n = 1) const;
  // Shape of every value for a batch of n (checked when the op is added, so this never fails).
  const std::vector<Shape>& shapes() const { return shapes_; }
  Shape shape(int value, int n) const;
  Shape output_shape(int n = 1) const { return shape(output_, n); }

  BatchNormSettings batch_norm_settings;

  std::vector<ParameterSpec> parameter_specs() const;
  std::size_t trainable_parameter_count() const;
  std::size_t parameter_count() const;  // including running statistics

  // How many ops read each value (backends use it to fuse and to accumulate gradients).
  std::vector<int> use_counts() const;

 private:
  int push(Op op);
  Shape infer(const Op& op) const;

  std::string architecture_;
  std::vector<Op> ops_;
  std::vector<Shape> shapes_;  // per value, n = 1
  int output_ = 0;
};

// Deterministic initial parameters: He-normal weights (std sqrt(2 / fan_in)) for layers followed by ReLU,
// zero biases, gamma 1, beta 0, running mean 0, running variance 1. `seed` makes it reproducible.
Parameters initial_parameters(const Network& network, unsigned long long seed);

// Checks that `parameters` has exactly the network's parameters with the right shapes and finite values;
// InputError naming `source` and the first problem otherwise.
void check_parameters(const Network& network, const Parameters& parameters, const std::string& source);
// The same against an explicit list (a composite model: its network's parameters and its dense layer's);
// `what` names the model in messages ("deepdi").
void check_parameters(const std::vector<ParameterSpec>& specs, const std::string& what,
                      const Parameters& parameters, const std::string& source);

}  // namespace nfmimo::nn
