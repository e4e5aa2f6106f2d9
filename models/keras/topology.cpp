// A Keras model_config (the functional model's JSON) as our ops, and its comparison with an nfmimo network.
#include <map>
#include <optional>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "models/keras/internal.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn::keras {

namespace {

std::string triple(const Triple& t) { return fmt::format("{}x{}x{}", t[0], t[1], t[2]); }

std::string describe(OpKind kind, int channels, const Triple& kernel, const Triple& stride, const Triple& lo,
                     const Triple& hi) {
  switch (kind) {
    case OpKind::Input:
      return fmt::format("input with {} channel(s)", channels);
    case OpKind::Conv:
      return fmt::format("convolution {} to {} channels, stride {}, padding {} before / {} after",
                         triple(kernel), channels, triple(stride), triple(lo), triple(hi));
    case OpKind::ConvTranspose:
      return fmt::format("transposed convolution {} to {} channels, stride {}, output padding {}",
                         triple(kernel), channels, triple(stride), triple(hi));
    case OpKind::MaxPool:
      return fmt::format("max pooling {} stride {}", triple(kernel), triple(stride));
    case OpKind::Crop:
      return fmt::format("crop {} before / {} after", triple(lo), triple(hi));
    case OpKind::ZeroPad:
      return fmt::format("zero padding {} before / {} after", triple(lo), triple(hi));
    default:
      return to_string(kind);
  }
}
std::string describe(const KOp& k) {
  return describe(k.kind, k.channels, k.kernel, k.stride, k.pad_lo, k.pad_hi);
}
std::string describe(const Op& op, int input_channels) {
  return describe(op.kind, op.kind == OpKind::Input ? input_channels : op.channels, op.kernel, op.stride,
                  op.pad_lo, op.pad_hi);
}

Triple read_triple(const json& v, const std::string& what) {
  Triple t{};
  if (v.is_number_integer()) {
    t.fill(v.get<int>());
    return t;
  }
  if (!v.is_array() || v.size() != 3) throw InputError(what + " is not three integers");
  for (int a = 0; a < 3; ++a) t[a] = v[std::size_t(a)].get<int>();
  return t;
}

// ((lo, hi) x 3) or a single int or (a, b, c): the Cropping3D / ZeroPadding3D argument.
std::pair<Triple, Triple> read_pairs(const json& v, const std::string& what) {
  Triple lo{}, hi{};
  if (v.is_number_integer()) {
    lo.fill(v.get<int>());
    return {lo, lo};
  }
  if (!v.is_array() || v.size() != 3) throw InputError(what + " is not three (before, after) pairs");
  for (int a = 0; a < 3; ++a) {
    const json& p = v[std::size_t(a)];
    if (p.is_number_integer()) {
      lo[a] = hi[a] = p.get<int>();
    } else {
      if (!p.is_array() || p.size() != 2) throw InputError(what + " is not three (before, after) pairs");
      lo[a] = p[0].get<int>();
      hi[a] = p[1].get<int>();
    }
  }
  return {lo, hi};
}

// The names of the layers feeding a layer, in order, from either Keras 2's inbound_nodes
// ([[["name", 0, 0, {}], ...]]) or Keras 3's ([{"args": [{"config": {"keras_history": ["name", 0, 0]}}]}]).
void collect_inbound(const json& v, std::vector<std::string>& out) {
  if (v.is_object()) {
    if (v.contains("keras_history") && v["keras_history"].is_array() && !v["keras_history"].empty()) {
      out.push_back(v["keras_history"][0].get<std::string>());
      return;
    }
    for (const auto& [key, item] : v.items())
      if (key != "kwargs") collect_inbound(item, out);
    return;
  }
  if (v.is_array()) {
    if (v.size() >= 3 && v[0].is_string() && v[1].is_number_integer()) {
      out.push_back(v[0].get<std::string>());
      return;
    }
    for (const auto& item : v) collect_inbound(item, out);
  }
}

std::string activation_name(const json& config) {
  if (!config.contains("activation")) return "linear";
  const json& a = config["activation"];
  if (a.is_string()) return a.get<std::string>();
  if (a.is_object() && a.contains("config") && a["config"].contains("name"))  // Keras 3 serialised function
    return a["config"]["name"].get<std::string>();
  return a.dump();
}

void require_channels_last(const json& config, const std::string& where) {
  if (config.contains("data_format") && config["data_format"].is_string() &&
      config["data_format"].get<std::string>() != "channels_last")
    throw InputError(where + ": data_format is " + config["data_format"].get<std::string>() +
                     "; nfmimo reads channels_last models (the Keras default)");
}

bool is_channel_axis(const json& axis) {
  if (axis.is_array()) return axis.size() == 1 && is_channel_axis(axis[0]);
  return axis.is_number_integer() && (axis.get<int>() == -1 || axis.get<int>() == 4);
}

}  // namespace

// Turns model_config into KOps: value 0 is the input. Merges a ZeroPadding3D into the 'valid' convolution it
// feeds (the authors' head: ZeroPadding3D(1) + Conv3D valid = our 'same' convolution).
std::vector<KOp> keras_ops(const json& layers, const std::string& where, Shape& input) {
  std::vector<KOp> ops;
  std::map<std::string, int> value_of;  // layer name -> value index of its output
  std::map<std::string, int> users;
  std::string previous;
  for (const auto& layer : layers) {
    std::vector<std::string> in;
    if (layer.contains("inbound_nodes")) collect_inbound(layer["inbound_nodes"], in);
    for (const auto& n : in) ++users[n];
  }
  for (const auto& layer : layers) {
    const std::string cls = layer.value("class_name", "");
    const json& config = layer.contains("config") ? layer["config"] : json::object();
    const std::string name =
        layer.contains("name") ? layer["name"].get<std::string>() : config.value("name", std::string("?"));
    const std::string at = fmt::format("{}: layer '{}' ({})", where, name, cls);
    std::vector<std::string> in;
    if (layer.contains("inbound_nodes")) collect_inbound(layer["inbound_nodes"], in);
    if (in.empty() && cls != "InputLayer" && !previous.empty()) in.push_back(previous);  // Sequential
    std::vector<int> inputs;
    for (const auto& n : in) {
      auto it = value_of.find(n);
      if (it == value_of.end())
        throw InputError(fmt::format("{}: its input '{}' is not a layer before it", at, n));
      inputs.push_back(it->second);
    }
    const auto expect_inputs = [&](std::size_t n) {
      if (inputs.size() != n)
        throw InputError(fmt::format("{}: has {} input(s); nfmimo's {} takes {}", at, inputs.size(), cls, n));
    };
    KOp k;
    k.layer = name;
    k.cls = cls;
    k.inputs = inputs;
    const auto push = [&](KOp op) {
      ops.push_back(std::move(op));
      return int(ops.size()) - 1;
    };
    const auto push_activation = [&](int value, const std::string& activation) {
      if (activation == "linear") return value;
      KOp a;
      a.layer = name;
      a.cls = cls;
      a.inputs = {value};
      if (activation == "relu")
        a.kind = OpKind::ReLU;
      else if (activation == "sigmoid")
        a.kind = OpKind::Sigmoid;
      else
        throw InputError(fmt::format("{}: activation '{}' is not one of nfmimo's (relu, sigmoid, linear)", at,
                                     activation));
      return push(std::move(a));
    };
    int value = -1;
    if (cls == "InputLayer") {
      if (!ops.empty()) throw InputError(at + ": a second input; nfmimo's networks have one");
      const json& shape = config.contains("batch_input_shape") ? config["batch_input_shape"]
                          : config.contains("batch_shape")     ? config["batch_shape"]
                                                               : json();
      if (!shape.is_array() || shape.size() != 5 || !shape[4].is_number_integer())
        throw InputError(at + ": the input shape is not [batch, x, y, z, channels] with known channels");
      input.c = shape[4].get<int>();
      input.x = shape[1].is_number_integer() ? shape[1].get<int>() : 0;
      input.y = shape[2].is_number_integer() ? shape[2].get<int>() : 0;
      input.z = shape[3].is_number_integer() ? shape[3].get<int>() : 0;
      k.kind = OpKind::Input;
      k.channels = input.c;
      value = push(k);
    } else if (cls == "Conv3D" || cls == "Conv3DTranspose") {
      expect_inputs(1);
      require_channels_last(config, at);
      k.kind = cls == "Conv3D" ? OpKind::Conv : OpKind::ConvTranspose;
      k.channels = config.at("filters").get<int>();
      k.kernel = read_triple(config.at("kernel_size"), at + ": kernel_size");
      k.stride = read_triple(config.value("strides", json(1)), at + ": strides");
      if (config.contains("dilation_rate") && read_triple(config["dilation_rate"], at) != Triple{1, 1, 1})
        throw InputError(at + ": dilated convolutions are not part of nfmimo's networks");
      if (config.value("groups", 1) != 1) throw InputError(at + ": grouped convolutions are not supported");
      const std::string padding = config.value("padding", std::string("valid"));
      if (padding != "same" && padding != "valid")
        throw InputError(at + ": padding '" + padding + "' is not supported");
      for (int a = 0; a < 3; ++a) {
        if (k.kind == OpKind::Conv) {
          if (padding == "same") {  // TensorFlow: total k - 1, the odd voxel after (stride 1)
            k.pad_lo[a] = (k.kernel[a] - 1) / 2;
            k.pad_hi[a] = k.kernel[a] - 1 - k.pad_lo[a];
          }
        } else {
          if (config.contains("output_padding") && !config["output_padding"].is_null())
            throw InputError(at + ": an explicit output_padding is not supported");
          if (k.kernel[a] > k.stride[a])
            throw InputError(at +
                             ": a transposed convolution whose kernel exceeds its stride is not supported");
          // 'same': output = input * stride; 'valid': (input - 1) * stride + kernel.
          k.pad_hi[a] = padding == "same" ? k.stride[a] - k.kernel[a] : 0;
        }
      }
      if (k.kind == OpKind::Conv && padding == "valid" && inputs[0] > 0 &&
          !ops[std::size_t(inputs[0])].removed && ops[std::size_t(inputs[0])].kind == OpKind::ZeroPad &&
          users[ops[std::size_t(inputs[0])].layer] == 1) {
        KOp& pad = ops[std::size_t(inputs[0])];
        bool fits = true;
        for (int a = 0; a < 3; ++a) {
          const int lo = (k.kernel[a] - 1) / 2, hi = k.kernel[a] - 1 - lo;
          fits = fits && pad.pad_lo[a] >= lo && pad.pad_hi[a] >= hi;
        }
        if (fits) {
          for (int a = 0; a < 3; ++a) {
            k.pad_lo[a] = (k.kernel[a] - 1) / 2;
            k.pad_hi[a] = k.kernel[a] - 1 - k.pad_lo[a];
            pad.pad_lo[a] -= k.pad_lo[a];
            pad.pad_hi[a] -= k.pad_hi[a];
          }
          if (pad.pad_lo == Triple{0, 0, 0} && pad.pad_hi == Triple{0, 0, 0}) {
            pad.removed = true;
            k.inputs = pad.inputs;
          }
        }
      }
      value = push_activation(push(k), activation_name(config));
    } else if (cls == "BatchNormalization") {
      expect_inputs(1);
      if (!is_channel_axis(config.value("axis", json(-1))))
        throw InputError(at + ": normalises another axis than the channels");
      k.kind = OpKind::BatchNorm;
      k.epsilon = config.value("epsilon", 1e-3);
      k.momentum = config.value("momentum", 0.99);
      value = push(k);
    } else if (cls == "Activation") {
      expect_inputs(1);
      const std::string a = activation_name(config);
      if (a == "linear")
        throw InputError(at + ": a linear Activation layer is not part of nfmimo's networks");
      value = push_activation(inputs[0], a);
    } else if (cls == "ReLU") {
      expect_inputs(1);
      if (!config.value("max_value", json()).is_null() || config.value("negative_slope", 0.0) != 0.0 ||
          config.value("threshold", 0.0) != 0.0)
        throw InputError(at + ": only the plain ReLU (no maximum, slope or threshold) is supported");
      value = push_activation(inputs[0], "relu");
    } else if (cls == "MaxPooling3D" || cls == "MaxPool3D") {
      expect_inputs(1);
      require_channels_last(config, at);
      k.kind = OpKind::MaxPool;
      k.kernel = read_triple(config.value("pool_size", json(2)), at + ": pool_size");
      const json s = config.value("strides", json());
      k.stride = s.is_null() ? k.kernel : read_triple(s, at + ": strides");
      if (config.value("padding", std::string("valid")) != "valid")
        throw InputError(at + ": only 'valid' pooling is supported");
      value = push(k);
    } else if (cls == "Concatenate") {
      expect_inputs(2);
      if (!is_channel_axis(config.value("axis", json(-1))))
        throw InputError(at + ": concatenates another axis than the channels");
      k.kind = OpKind::Concat;
      value = push(k);
    } else if (cls == "Add") {
      expect_inputs(2);
      k.kind = OpKind::Add;
      value = push(k);
    } else if (cls == "Cropping3D" || cls == "ZeroPadding3D") {
      expect_inputs(1);
      require_channels_last(config, at);
      k.kind = cls == "Cropping3D" ? OpKind::Crop : OpKind::ZeroPad;
      std::tie(k.pad_lo, k.pad_hi) =
          read_pairs(config.at(cls == "Cropping3D" ? "cropping" : "padding"), at + ": amounts");
      // Zero amounts are an identity (the authors' fixed crop on a grid that needs none).
      k.removed = k.pad_lo == Triple{0, 0, 0} && k.pad_hi == Triple{0, 0, 0};
      value = push(k);
    } else {
      throw InputError(
          fmt::format("{}: layer type {} is not part of nfmimo's networks (known: InputLayer, Conv3D, "
                      "Conv3DTranspose, BatchNormalization, Activation, ReLU, MaxPooling3D, "
                      "Concatenate, Add, Cropping3D, ZeroPadding3D)",
                      at, cls.empty() ? "(none)" : cls));
    }
    value_of[name] = value;
    previous = name;
  }
  if (ops.empty() || ops[0].kind != OpKind::Input) throw InputError(where + ": the model has no InputLayer");
  // Drop merged paddings, renumbering the values.
  std::vector<int> renumber(ops.size(), -1);
  std::vector<KOp> kept;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].removed) {
      renumber[i] = renumber[std::size_t(ops[i].inputs[0])];
      continue;
    }
    KOp k = ops[i];
    for (int& v : k.inputs) v = renumber[std::size_t(v)];
    renumber[i] = int(kept.size());
    kept.push_back(std::move(k));
  }
  return kept;
}

// First difference between the Keras ops and the network's ops, as a message; nullopt when they agree.
std::optional<std::string> compare(const std::vector<KOp>& k, const Network& net) {
  const auto& ops = net.ops();
  const auto& shapes = net.shapes();
  const int in_c = net.input_shape().c;
  for (std::size_t i = 0; i < std::max(k.size(), ops.size()); ++i) {
    if (i >= k.size())
      return fmt::format("the Keras model ends after layer '{}'; the {} network continues with '{}' ({})",
                         k.back().layer, net.architecture(), ops[i].name, describe(ops[i], in_c));
    if (i >= ops.size())
      return fmt::format("layer '{}' ({}: {}) comes after the end of the {} network", k[i].layer, k[i].cls,
                         describe(k[i]), net.architecture());
    const KOp& a = k[i];
    const Op& b = ops[i];
    const int b_channels = b.kind == OpKind::Input ? in_c : b.channels;
    bool same = a.kind == b.kind;
    if (same) switch (a.kind) {
        case OpKind::Input:
          same = a.channels == in_c;
          break;
        case OpKind::Conv:
          same = a.channels == b_channels && a.kernel == b.kernel && a.stride == b.stride &&
                 a.pad_lo == b.pad_lo && a.pad_hi == b.pad_hi;
          break;
        case OpKind::ConvTranspose:
          same = a.channels == b_channels && a.kernel == b.kernel && a.stride == b.stride &&
                 a.pad_hi == b.pad_hi;
          break;
        case OpKind::MaxPool:
          same = a.kernel == b.kernel && a.stride == b.stride;
          break;
        case OpKind::Crop:
        case OpKind::ZeroPad:
          same = a.pad_lo == b.pad_lo && a.pad_hi == b.pad_hi;
          break;
        default:
          break;
      }
    if (!same)
      return fmt::format("layer '{}' ({}): {}; the {} network has '{}' there: {}", a.layer, a.cls,
                         describe(a), net.architecture(), b.name, describe(b, in_c));
    if (a.inputs != b.inputs) {
      std::vector<std::string> want;
      for (int v : b.inputs) want.push_back(ops[std::size_t(v)].name);
      std::vector<std::string> got;
      for (int v : a.inputs) got.push_back(k[std::size_t(v)].layer);
      return fmt::format("layer '{}' ({}) reads [{}]; the {} network's '{}' reads the counterparts of [{}]",
                         a.layer, a.cls, fmt::join(got, ", "), net.architecture(), b.name,
                         fmt::join(want, ", "));
    }
    (void)shapes;
  }
  return std::nullopt;
}

}  // namespace nfmimo::nn::keras
