#include "models/network.hpp"

#include <cmath>
#include <set>

#include <fmt/format.h>

#include "radar/error.hpp"
#include "radar/random.hpp"

namespace nfmimo::nn {

std::string to_string(const Shape& s) { return fmt::format("[{}, {}, {}, {}, {}]", s.n, s.c, s.x, s.y, s.z); }

std::string to_string(OpKind kind) {
  switch (kind) {
    case OpKind::Input:
      return "input";
    case OpKind::Conv:
      return "conv";
    case OpKind::ConvTranspose:
      return "conv_transpose";
    case OpKind::BatchNorm:
      return "batch_norm";
    case OpKind::ReLU:
      return "relu";
    case OpKind::Sigmoid:
      return "sigmoid";
    case OpKind::MaxPool:
      return "max_pool";
    case OpKind::Concat:
      return "concat";
    case OpKind::Crop:
      return "crop";
    case OpKind::ZeroPad:
      return "zero_pad";
    case OpKind::Add:
      return "add";
    case OpKind::Dense:
      return "dense";
  }
  return "?";
}

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
  auto in = [&](int i) { return shapes_.at(std::size_t(op.inputs.at(std::size_t(i)))); };
  const auto fail = [&](const std::string& why) {
    return InputError(
        fmt::format("network '{}': op '{}' ({}): {}", architecture_, op.name, to_string(op.kind), why));
  };
  Shape s = in(0);
  switch (op.kind) {
    case OpKind::Input:
      break;
    case OpKind::Conv:
      for (int a = 0; a < 3; ++a) {
        const int padded = s.axis(a) + op.pad_lo[a] + op.pad_hi[a];
        if (padded < op.kernel[a]) throw fail("kernel larger than the padded input " + to_string(s));
        (a == 0 ? s.x : a == 1 ? s.y : s.z) = (padded - op.kernel[a]) / op.stride[a] + 1;
      }
      s.c = op.channels;
      break;
    case OpKind::ConvTranspose:
      for (int a = 0; a < 3; ++a) {
        if (op.pad_hi[a] >= op.stride[a] && op.pad_hi[a] > 0)
          throw fail("output padding must be below the stride");
        (a == 0 ? s.x : a == 1 ? s.y : s.z) = (s.axis(a) - 1) * op.stride[a] + op.kernel[a] + op.pad_hi[a];
      }
      s.c = op.channels;
      break;
    case OpKind::BatchNorm:
    case OpKind::ReLU:
    case OpKind::Sigmoid:
      break;
    case OpKind::MaxPool:
      for (int a = 0; a < 3; ++a) {
        if (s.axis(a) < op.kernel[a]) throw fail("pooling window larger than the input " + to_string(s));
        (a == 0 ? s.x : a == 1 ? s.y : s.z) = (s.axis(a) - op.kernel[a]) / op.stride[a] + 1;
      }
      break;
    case OpKind::Concat: {
      const Shape b = in(1);
      if (b.x != s.x || b.y != s.y || b.z != s.z)
        throw fail("inputs differ in spatial size: " + to_string(s) + " and " + to_string(b));
      s.c += b.c;
      break;
    }
    case OpKind::Add:
      if (!(in(1) == s)) throw fail("inputs differ in shape: " + to_string(s) + " and " + to_string(in(1)));
      break;
    case OpKind::Crop:
      for (int a = 0; a < 3; ++a) {
        const int size = s.axis(a) - op.pad_lo[a] - op.pad_hi[a];
        if (size <= 0 || op.pad_lo[a] < 0 || op.pad_hi[a] < 0)
          throw fail("crop removes the whole input " + to_string(s));
        (a == 0 ? s.x : a == 1 ? s.y : s.z) = size;
      }
      break;
    case OpKind::ZeroPad:
      for (int a = 0; a < 3; ++a) {
        if (op.pad_lo[a] < 0 || op.pad_hi[a] < 0) throw fail("negative padding");
        (a == 0 ? s.x : a == 1 ? s.y : s.z) = s.axis(a) + op.pad_lo[a] + op.pad_hi[a];
      }
      break;
    case OpKind::Dense:
      s = Shape{1, op.channels, 1, 1, 1};
      break;
  }
  return s;
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
  for (const Op& op : ops_) {
    const Shape in = op.inputs.empty() ? Shape{} : shapes_[std::size_t(op.inputs[0])];
    switch (op.kind) {
      case OpKind::Conv:
        specs.push_back({op.name + ".weight", {op.channels, in.c, op.kernel[0], op.kernel[1], op.kernel[2]}});
        if (op.bias) specs.push_back({op.name + ".bias", {op.channels}});
        break;
      case OpKind::ConvTranspose:
        specs.push_back({op.name + ".weight", {in.c, op.channels, op.kernel[0], op.kernel[1], op.kernel[2]}});
        if (op.bias) specs.push_back({op.name + ".bias", {op.channels}});
        break;
      case OpKind::BatchNorm:
        specs.push_back({op.name + ".weight", {in.c}});
        specs.push_back({op.name + ".bias", {in.c}});
        specs.push_back({op.name + ".running_mean", {in.c}, false});
        specs.push_back({op.name + ".running_var", {in.c}, false});
        break;
      case OpKind::Dense:
        specs.push_back({op.name + ".weight", {op.channels, int(in.per_sample())}});
        if (op.bias) specs.push_back({op.name + ".bias", {op.channels}});
        break;
      default:
        break;
    }
  }
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
