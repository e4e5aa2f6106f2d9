#include "models/nn/graph.hpp"

#include <cmath>
#include <set>

#include <fmt/format.h>

#include "models/nn/op_table.hpp"
#include "radar/error.hpp"
#include "radar/random.hpp"

namespace nfmimo::nn {

std::string to_string(const Shape& s) { return fmt::format("[{}, {}, {}, {}, {}]", s.n, s.c, s.x, s.y, s.z); }

std::string to_string(OpKind kind) { return op_info(kind).name; }

Network::Network(std::string architecture, Shape input) : architecture_(std::move(architecture)) {
  require(input.c > 0 && input.x > 0 && input.y > 0 && input.z > 0,
          "network input shape must be positive, got " + to_string(input));
  Op op;
  op.kind = OpKind::Input;
  op.name = "input";
  op.channels = input.c;
  ops_.push_back(op);
  input.n = 1;
  shapes_.push_back(input);
}

Shape Network::input_shape(int n) const {
  Shape s = shapes_.at(0);
  s.n = n;
  return s;
}

Shape Network::shape(int value, int n) const {
  Shape s = shapes_.at(std::size_t(value));
  s.n = n;
  return s;
}

Shape Network::infer(const Op& op) const {
  const OpInfo& info = op_info(op.kind);
  require(info.infer != nullptr && int(op.inputs.size()) == info.arity,
          fmt::format("network '{}': op '{}' ({}) takes {} inputs, got {}", architecture_, op.name, info.name,
                      info.arity, op.inputs.size()));
  Shape in[2];
  for (std::size_t i = 0; i < op.inputs.size(); ++i) in[i] = shapes_.at(std::size_t(op.inputs[i]));
  Shape out;
  if (const std::string why = info.infer(op, in, out); !why.empty())
    throw InputError(fmt::format("network '{}': op '{}' ({}): {}", architecture_, op.name, info.name, why));
  return out;
}

int Network::push(Op op) {
  for (int i : op.inputs)
    require(
        i >= 0 && i < int(ops_.size()),
        fmt::format("network '{}': op '{}' reads value {} that does not exist", architecture_, op.name, i));
  for (const Op& o : ops_)
    require(o.name != op.name, fmt::format("network '{}': two ops are named '{}'", architecture_, op.name));
  const Shape s = infer(op);
  ops_.push_back(std::move(op));
  shapes_.push_back(s);
  output_ = int(ops_.size()) - 1;
  return output_;
}

int Network::conv(const std::string& name, int x, int channels, Triple kernel, bool same, Triple stride) {
  Op op{OpKind::Conv, name, {x}, channels, kernel, stride};
  if (same)
    // TensorFlow's 'same' rule: total padding k - 1, the odd voxel (even kernels) after. Stride 1 keeps the
    // size.
    for (int a = 0; a < 3; ++a) {
      op.pad_lo[a] = (kernel[a] - 1) / 2;
      op.pad_hi[a] = kernel[a] - 1 - op.pad_lo[a];
    }
  return push(op);
}

int Network::conv_transpose(const std::string& name, int x, int channels, Triple kernel, Triple stride) {
  Op op{OpKind::ConvTranspose, name, {x}, channels, kernel, stride};
  // Keras 'same' for a transposed convolution: output = input * stride. With kernel < stride the missing
  // output voxels are at the end of each stride period (TensorFlow puts no padding before), i.e. PyTorch's
  // output_padding = stride - kernel.
  for (int a = 0; a < 3; ++a) op.pad_hi[a] = std::max(stride[a] - kernel[a], 0);
  return push(op);
}

int Network::batch_norm(const std::string& name, int x) { return push(Op{OpKind::BatchNorm, name, {x}}); }
int Network::relu(const std::string& name, int x) { return push(Op{OpKind::ReLU, name, {x}}); }
int Network::sigmoid(const std::string& name, int x) { return push(Op{OpKind::Sigmoid, name, {x}}); }
int Network::max_pool(const std::string& name, int x, Triple kernel) {
  return push(Op{OpKind::MaxPool, name, {x}, 0, kernel, kernel});
}
int Network::concat(const std::string& name, int a, int b) { return push(Op{OpKind::Concat, name, {a, b}}); }
int Network::add(const std::string& name, int a, int b) { return push(Op{OpKind::Add, name, {a, b}}); }
int Network::crop(const std::string& name, int x, Triple lo, Triple hi) {
  Op op{OpKind::Crop, name, {x}};
  op.pad_lo = lo, op.pad_hi = hi;
  return push(op);
}
int Network::zero_pad(const std::string& name, int x, Triple lo, Triple hi) {
  Op op{OpKind::ZeroPad, name, {x}};
  op.pad_lo = lo, op.pad_hi = hi;
  return push(op);
}
int Network::dense(const std::string& name, int x, int features) {
  return push(Op{OpKind::Dense, name, {x}, features});
}

std::vector<ParameterSpec> Network::parameter_specs() const {
  std::vector<ParameterSpec> specs;
  for (const Op& op : ops_)
    if (const auto parameters = op_info(op.kind).parameters)
      parameters(op, op.inputs.empty() ? Shape{} : shapes_[std::size_t(op.inputs[0])], specs);
  return specs;
}

static std::size_t product(const std::vector<int>& shape) {
  std::size_t e = 1;
  for (int d : shape) e *= std::size_t(d);
  return e;
}

std::size_t Network::trainable_parameter_count() const {
  std::size_t total = 0;
  for (const auto& s : parameter_specs())
    if (s.trainable) total += product(s.shape);
  return total;
}

std::size_t Network::parameter_count() const {
  std::size_t total = 0;
  for (const auto& s : parameter_specs()) total += product(s.shape);
  return total;
}

std::vector<int> Network::use_counts() const {
  std::vector<int> uses(ops_.size(), 0);
  for (const Op& op : ops_)
    for (int i : op.inputs) ++uses[std::size_t(i)];
  ++uses[std::size_t(output_)];
  return uses;
}

Parameters initial_parameters(const Network& network, unsigned long long seed) {
  Parameters p;
  std::uint64_t stream = 0;
  for (const auto& spec : network.parameter_specs()) {
    ParameterTensor t{spec.shape, std::vector<float>(product(spec.shape), 0.0f), spec.trainable};
    const bool is_weight = spec.name.ends_with(".weight");
    const std::string op_name = spec.name.substr(0, spec.name.rfind('.'));
    OpKind kind = OpKind::Input;
    for (const Op& op : network.ops())
      if (op.name == op_name) kind = op.kind;
    if (kind == OpKind::BatchNorm) {
      if (spec.name.ends_with(".weight") || spec.name.ends_with(".running_var"))
        std::fill(t.values.begin(), t.values.end(), 1.0f);
    } else if (is_weight) {
      // fan_in: everything but the output-channel axis (axis 0 for Conv/Dense, axis 1 for ConvTranspose).
      const std::size_t fan_in = kind == OpKind::ConvTranspose ? t.elements() / std::size_t(spec.shape[1])
                                                               : t.elements() / std::size_t(spec.shape[0]);
      const double sd = std::sqrt(2.0 / double(fan_in));
      const RandomStream rng(seed, stream);
      for (std::size_t i = 0; i < t.values.size(); i += 2) {
        double a, b;
        rng.normal2(i / 2, &a, &b);
        t.values[i] = float(a * sd);
        if (i + 1 < t.values.size()) t.values[i + 1] = float(b * sd);
      }
    }
    ++stream;
    p.emplace(spec.name, std::move(t));
  }
  return p;
}

void check_parameters(const Network& network, const Parameters& parameters, const std::string& source) {
  check_parameters(network.parameter_specs(), network.architecture(), parameters, source);
}

void check_parameters(const std::vector<ParameterSpec>& specs, const std::string& what,
                      const Parameters& parameters, const std::string& source) {
  std::set<std::string> expected;
  for (const auto& spec : specs) {
    expected.insert(spec.name);
    const auto it = parameters.find(spec.name);
    require(it != parameters.end(),
            fmt::format("{}: parameter '{}' of the {} network is missing", source, spec.name, what));
    const auto shape_text = [](const std::vector<int>& s) {
      std::string t = "[";
      for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
      return t + "]";
    };
    require(it->second.shape == spec.shape,
            fmt::format("{}: parameter '{}' has shape {}, the {} network needs {}", source, spec.name,
                        shape_text(it->second.shape), what, shape_text(spec.shape)));
    require(it->second.values.size() == product(spec.shape),
            fmt::format("{}: parameter '{}' holds {} values for shape {}", source, spec.name,
                        it->second.values.size(), shape_text(spec.shape)));
    // The message is formatted only on failure: a composite's dense weight has 10^8 values.
    for (std::size_t i = 0; i < it->second.values.size(); ++i)
      if (!std::isfinite(it->second.values[i]))
        throw InputError(
            fmt::format("{}: parameter '{}' has a non-finite value at element {}", source, spec.name, i));
    if (spec.name.ends_with(".running_var"))
      for (std::size_t i = 0; i < it->second.values.size(); ++i)
        if (!(it->second.values[i] >= 0))
          throw InputError(
              fmt::format("{}: parameter '{}' has a negative variance at element {}", source, spec.name, i));
  }
  for (const auto& [name, tensor] : parameters)
    require(expected.count(name) == 1,
            fmt::format("{}: parameter '{}' is not part of the {} network", source, name, what));
}

}  // namespace nfmimo::nn
