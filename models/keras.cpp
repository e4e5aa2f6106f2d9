#include "models/keras.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "data/atomic_file.hpp"
#include "data/hdf5.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

using json = nlohmann::json;

namespace {

// ---------------------------------------------------------------------------------------------------------
// HDF5 pieces the project's File wrapper does not need elsewhere: string-array attributes, group listings.

std::vector<std::string> string_array_attribute(const h5::File& f, const std::string& object,
                                                const std::string& name) {
  if (!f.has_attribute(object, name)) return {};
  h5::Handle target(H5Oopen(f.id(), object.c_str(), H5P_DEFAULT), H5Oclose);
  h5::Handle a(H5Aopen(target.get(), name.c_str(), H5P_DEFAULT), H5Aclose);
  h5::Handle type(H5Aget_type(a.get()), H5Tclose);
  h5::Handle space(H5Aget_space(a.get()), H5Sclose);
  if (!a || !type || !space || H5Tget_class(type.get()) != H5T_STRING)
    throw InputError(
        fmt::format("{}: attribute '{}' of '{}' is not a list of strings", f.path(), name, object));
  return h5::read_string_values(a.get(), f.path(), fmt::format("attribute '{}' of '{}'", name, object));
}

void set_string_array_attribute(const h5::File& f, const std::string& object, const std::string& name,
                                const std::vector<std::string>& values) {
  // Fixed-length, null-padded: what h5py writes for numpy bytes arrays, which Keras decodes.
  std::size_t size = 1;
  for (const auto& v : values) size = std::max(size, v.size());
  std::vector<char> buffer(size * std::max<std::size_t>(values.size(), 1), '\0');
  for (std::size_t i = 0; i < values.size(); ++i)
    std::memcpy(buffer.data() + i * size, values[i].data(), values[i].size());
  h5::Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), size);
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  const hsize_t dims[1] = {values.size()};
  h5::Handle space(values.empty() ? H5Screate(H5S_NULL) : H5Screate_simple(1, dims, nullptr), H5Sclose);
  h5::Handle target(H5Oopen(f.id(), object.c_str(), H5P_DEFAULT), H5Oclose);
  h5::Handle a(H5Acreate2(target.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
               H5Aclose);
  if (!a || (!values.empty() && H5Awrite(a.get(), type.get(), buffer.data()) < 0))
    throw InputError(fmt::format("{}: cannot write attribute '{}' on '{}'", f.path(), name, object));
}

void make_group(const h5::File& f, const std::string& path) {
  h5::Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  h5::Handle g(H5Gcreate2(f.id(), path.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!g) throw InputError(fmt::format("{}: cannot create the group '{}'", f.path(), path));
}

// ---------------------------------------------------------------------------------------------------------
// Keras layers as our ops.

std::string triple(const Triple& t) { return fmt::format("{}x{}x{}", t[0], t[1], t[2]); }

// One op in the vocabulary of models/nn/graph.hpp, with what a comparison needs.
struct KOp {
  OpKind kind = OpKind::Input;
  std::string layer, cls;   // the Keras layer it comes from and its class
  std::vector<int> inputs;  // value indices (into the KOp list)
  int channels = 0;         // Conv, ConvTranspose output channels; Input: input channels
  Triple kernel{1, 1, 1}, stride{1, 1, 1}, pad_lo{0, 0, 0}, pad_hi{0, 0, 0};
  double epsilon = 0, momentum = 0;
  bool removed = false;
};

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

// The Keras layer's arrays by role (kernel, bias, gamma, beta, moving_mean, moving_variance), with their
// paths.
struct LayerWeights {
  std::string layer;
  std::map<std::string, std::string> paths;  // role -> dataset path
};

std::string role_of(std::string weight_name) {
  if (const auto slash = weight_name.rfind('/'); slash != std::string::npos)
    weight_name = weight_name.substr(slash + 1);
  if (const auto colon = weight_name.rfind(':'); colon != std::string::npos)
    weight_name = weight_name.substr(0, colon);
  return weight_name;
}

h5::Array<float> read_array(const h5::File& f, const std::string& path, const std::string& layer) {
  try {
    return f.read<float>(path);
  } catch (const InputError& e) {
    throw InputError(fmt::format("layer '{}': {}", layer, e.what()));
  }
}

// Converts one weighted layer into our parameters of `op` (Conv, ConvTranspose or BatchNorm).
void convert_layer(const h5::File& f, const LayerWeights& w, const Op& op, int in_c, Parameters& out,
                   const std::map<std::string, bool>& bn_flags) {
  const auto at = [&](const std::string& role) {
    return fmt::format("{}: layer '{}' ({} '{}')", f.path(), w.layer, role,
                       w.paths.count(role) ? w.paths.at(role) : "");
  };
  const auto need = [&](const std::string& role) -> h5::Array<float> {
    auto it = w.paths.find(role);
    if (it == w.paths.end())
      throw InputError(fmt::format("{}: layer '{}' has no '{}' array (it holds: {})", f.path(), w.layer, role,
                                   fmt::join(
                                       [&] {
                                         std::vector<std::string> r;
                                         for (const auto& [k, v] : w.paths) r.push_back(k);
                                         return r;
                                       }(),
                                       ", ")));
    return read_array(f, it->second, w.layer);
  };
  const auto check_shape = [&](const h5::Array<float>& a, const std::vector<hsize_t>& want,
                               const std::string& role) {
    if (a.dims != want)
      throw InputError(fmt::format("{}: has shape [{}]; nfmimo's '{}' needs [{}]", at(role),
                                   fmt::join(a.dims, ", "), op.name, fmt::join(want, ", ")));
    for (float v : a.data)
      if (!std::isfinite(v)) throw InputError(fmt::format("{}: holds non-finite values", at(role)));
  };
  const int kx = op.kernel[0], ky = op.kernel[1], kz = op.kernel[2], oc = op.channels;
  if (op.kind == OpKind::Conv || op.kind == OpKind::ConvTranspose) {
    const bool transposed = op.kind == OpKind::ConvTranspose;
    auto kernel = need("kernel");
    // Conv3D [kx, ky, kz, in, out]; Conv3DTranspose [kx, ky, kz, out, in].
    const std::vector<hsize_t> want =
        transposed ? std::vector<hsize_t>{hsize_t(kx), hsize_t(ky), hsize_t(kz), hsize_t(oc), hsize_t(in_c)}
                   : std::vector<hsize_t>{hsize_t(kx), hsize_t(ky), hsize_t(kz), hsize_t(in_c), hsize_t(oc)};
    check_shape(kernel, want, "kernel");
    ParameterTensor weight;
    weight.shape =
        transposed ? std::vector<int>{in_c, oc, kx, ky, kz} : std::vector<int>{oc, in_c, kx, ky, kz};
    weight.values.resize(kernel.data.size());
    for (int a = 0; a < kx; ++a)
      for (int b = 0; b < ky; ++b)
        for (int c = 0; c < kz; ++c)
          for (int i = 0; i < in_c; ++i)
            for (int o = 0; o < oc; ++o) {
              const std::size_t tap = (std::size_t(a) * ky + b) * kz + c;
              const std::size_t ours = transposed ? ((std::size_t(i) * oc + o) * kx * ky * kz + tap)
                                                  : ((std::size_t(o) * in_c + i) * kx * ky * kz + tap);
              const std::size_t theirs = transposed ? (tap * oc + o) * in_c + i : (tap * in_c + i) * oc + o;
              weight.values[ours] = kernel.data[theirs];
            }
    ParameterTensor bias;
    bias.shape = {oc};
    if (w.paths.count("bias")) {
      auto b = need("bias");
      check_shape(b, {hsize_t(oc)}, "bias");
      bias.values = std::move(b.data);
    } else {
      bias.values.assign(std::size_t(oc), 0.0f);  // use_bias=False
    }
    out[op.name + ".weight"] = std::move(weight);
    out[op.name + ".bias"] = std::move(bias);
    return;
  }
  // Batch norm: gamma / beta are absent when scale / center is off (then 1 / 0).
  const int c = in_c;
  const auto vec = [&](const std::string& role, bool present, float fallback) {
    ParameterTensor t;
    t.shape = {c};
    if (present) {
      auto a = need(role);
      check_shape(a, {hsize_t(c)}, role);
      t.values = std::move(a.data);
    } else {
      t.values.assign(std::size_t(c), fallback);
    }
    return t;
  };
  out[op.name + ".weight"] = vec("gamma", bn_flags.at("scale"), 1.0f);
  out[op.name + ".bias"] = vec("beta", bn_flags.at("center"), 0.0f);
  auto mean = vec("moving_mean", true, 0.0f);
  auto var = vec("moving_variance", true, 1.0f);
  for (float v : var.values)
    if (!(v >= 0)) throw InputError(fmt::format("{}: a negative variance", at("moving_variance")));
  mean.trainable = var.trainable = false;
  out[op.name + ".running_mean"] = std::move(mean);
  out[op.name + ".running_var"] = std::move(var);
}

// Width (and ResNet depth) the Keras model was built with: the first convolution's filters, the number of
// batch norms.
ArchitectureOptions options_from(const std::string& architecture, int first_filters, int batch_norms) {
  ArchitectureOptions o;
  o.width = first_filters > 0 ? first_filters : 0;
  if (architecture == "resnet") o.blocks = batch_norms;
  return o;
}

json provenance(const std::string& path, const KerasImport& r, double epsilon_source) {
  json map = json::array();
  for (const auto& [k, o] : r.layer_map) map.push_back({k, o});
  std::error_code ec;
  const auto absolute = std::filesystem::absolute(path, ec);
  return {{"imported_from",
           {{"source", ec ? path : absolute.string()},
            {"format", r.format},
            {"keras_version", r.keras_version},
            {"bn_epsilon", epsilon_source},
            {"layer_map", map}}}};
}

KerasImport import_keras2(const h5::File& f, const std::string& architecture, const RadarSystem& system,
                          const ImagingGrid& grid) {
  const std::string path = f.path();
  KerasImport r;
  r.format = "keras2-hdf5";
  r.keras_version = f.string_attribute("/", "keras_version").value_or("unknown");
  json config;
  try {
    config = json::parse(*f.string_attribute("/", "model_config"));
  } catch (const json::exception& e) {
    throw InputError(fmt::format("{}: attribute model_config is not valid JSON ({})", path, e.what()));
  }
  const std::string where = path + ": model_config";
  if (!config.contains("config") || !config["config"].contains("layers") ||
      !config["config"]["layers"].is_array())
    throw InputError(where + ": has no layer list (config.layers)");
  Shape input;
  std::vector<KOp> k;
  try {
    k = keras_ops(config["config"]["layers"], where, input);
  } catch (const json::exception& e) {
    throw InputError(
        fmt::format("{}: a layer's configuration is not what Keras writes ({})", where, e.what()));
  }
  const int grid_size[3] = {grid.x().size, grid.y().size, grid.z().size};
  const int model_size[3] = {input.x, input.y, input.z};
  for (int a = 0; a < 3; ++a)
    if (model_size[a] != 0 && model_size[a] != grid_size[a])
      throw InputError(
          fmt::format("{}: the model takes {} x {} x {} voxels; the imaging grid has {} x {} x {} "
                      "(give the grid it was trained for with --grid)",
                      where, input.x, input.y, input.z, grid_size[0], grid_size[1], grid_size[2]));
  int first_filters = 0, batch_norms = 0;
  std::optional<double> epsilon, momentum;
  for (const auto& op : k) {
    if (op.kind == OpKind::Conv && first_filters == 0) first_filters = op.channels;
    if (op.kind != OpKind::BatchNorm) continue;
    ++batch_norms;
    if (!epsilon) {
      epsilon = op.epsilon;
      momentum = op.momentum;
    } else if (op.epsilon != *epsilon) {
      throw InputError(
          fmt::format("{}: layer '{}' has batch-norm epsilon {}, the layers before it {}; nfmimo's "
                      "networks use one epsilon",
                      where, op.layer, op.epsilon, *epsilon));
    }
  }
  Model& m = r.model;
  m.architecture = architecture;
  m.options = options_from(architecture, first_filters, batch_norms);
  m.system = system;
  m.grid = grid;
  if (epsilon) {
    if (!(*epsilon > 0))
      throw InputError(fmt::format("{}: batch-norm epsilon {} is not positive", where, *epsilon));
    m.batch_norm.epsilon = *epsilon;
    m.batch_norm.momentum = std::clamp(1.0 - *momentum, 0.0, 1.0);
  }
  Network net;
  try {
    net = m.network();
  } catch (const InputError& e) {
    throw InputError(fmt::format("{}: {}", where, e.what()));
  }
  if (const auto d = compare(k, net)) throw InputError(fmt::format("{}: {}", where, *d));

  // Weights: /model_weights/<layer> lists its arrays in the attribute weight_names.
  if (!f.has("/model_weights")) throw InputError(path + ": the group /model_weights is missing");
  const auto& ops = net.ops();
  const json& layers = config["config"]["layers"];
  std::map<std::string, const json*> layer_config;
  for (const auto& l : layers)
    layer_config[l.contains("name") ? l["name"].get<std::string>() : l["config"]["name"].get<std::string>()] =
        &l;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    if (op.kind != OpKind::Conv && op.kind != OpKind::ConvTranspose && op.kind != OpKind::BatchNorm) continue;
    LayerWeights w;
    w.layer = k[i].layer;
    const std::string group = "/model_weights/" + w.layer;
    if (!f.has(group))
      throw InputError(fmt::format("{}: layer '{}': its weights ({}) are missing", path, w.layer, group));
    for (const auto& name : string_array_attribute(f, group, "weight_names"))
      w.paths[role_of(name)] = group + "/" + name;
    const json& cfg = (*layer_config.at(w.layer))["config"];
    const std::map<std::string, bool> flags = {{"scale", cfg.value("scale", true)},
                                               {"center", cfg.value("center", true)}};
    if (op.kind != OpKind::BatchNorm && !cfg.value("use_bias", true)) w.paths.erase("bias");
    convert_layer(f, w, op, net.shapes()[std::size_t(op.inputs[0])].c, m.parameters, flags);
    r.layer_map.emplace_back(w.layer, op.name);
  }
  m.training = provenance(path, r, m.batch_norm.epsilon).dump();
  return r;
}

// Keras 3 .weights.h5 (and Keras 2.13-2.15's saving_lib format): /layers/<name>/vars/<i>, no topology.
KerasImport import_keras3(const h5::File& f, const std::string& root, const std::string& architecture,
                          const RadarSystem& system, const ImagingGrid& grid) {
  const std::string path = f.path();
  KerasImport r;
  r.format = "keras3-weights";
  r.keras_version = f.string_attribute("/", "keras_version").value_or("unknown");
  static const std::regex pattern(R"(^(conv3d_transpose|conv3d|batch_normalization)(_(\d+))?$)");
  std::map<std::string, std::vector<std::pair<int, std::string>>> by_kind;
  for (const auto& name : f.members(root)) {
    const std::string vars = root + "/" + name + "/vars";
    if (!f.has(vars) || f.members(vars).empty()) continue;  // weightless layers (activations, pooling)
    std::smatch m;
    if (!std::regex_match(name, m, pattern))
      throw InputError(
          fmt::format("{}: layer '{}' has weights but is not a Conv3D, Conv3DTranspose or "
                      "BatchNormalization by its name (a .weights.h5 file has no topology: nfmimo "
                      "matches layers by their default Keras names)",
                      path, name));
    by_kind[m[1]].emplace_back(m[3].matched ? std::stoi(m[3]) : 0, name);
  }
  for (auto& [kind, list] : by_kind) std::sort(list.begin(), list.end());
  const auto vars_of = [&](const std::string& layer) {
    LayerWeights w;
    w.layer = layer;
    return w;
  };
  Model& m = r.model;
  m.architecture = architecture;
  m.system = system;
  m.grid = grid;
  int first_filters = 0;
  if (!by_kind["conv3d"].empty()) {
    const auto dims = f.shape(root + "/" + by_kind["conv3d"][0].second + "/vars/0");
    if (dims.size() == 5) first_filters = int(dims[4]);
  }
  m.options = options_from(architecture, first_filters, int(by_kind["batch_normalization"].size()));
  const Network net = m.network();
  std::map<OpKind, std::string> kind_name = {{OpKind::Conv, "conv3d"},
                                             {OpKind::ConvTranspose, "conv3d_transpose"},
                                             {OpKind::BatchNorm, "batch_normalization"}};
  std::map<OpKind, std::size_t> next;
  for (const Op& op : net.ops()) {
    if (!kind_name.count(op.kind)) continue;
    const auto& list = by_kind[kind_name[op.kind]];
    const std::size_t i = next[op.kind]++;
    if (i >= list.size())
      throw InputError(
          fmt::format("{}: the {} network needs a {} layer for '{}' (number {}); the file has only {}", path,
                      architecture, kind_name[op.kind], op.name, i + 1, list.size()));
    LayerWeights w = vars_of(list[i].second);
    const std::string vars = root + "/" + w.layer + "/vars/";
    static const char* conv_roles[] = {"kernel", "bias"};
    static const char* bn_roles[] = {"gamma", "beta", "moving_mean", "moving_variance"};
    const auto n = f.members(root + "/" + w.layer + "/vars").size();
    if (op.kind == OpKind::BatchNorm) {
      if (n != 4)
        throw InputError(
            fmt::format("{}: layer '{}' holds {} arrays; a BatchNormalization with scale and center "
                        "holds 4",
                        path, w.layer, n));
      for (int v = 0; v < 4; ++v) w.paths[bn_roles[v]] = vars + std::to_string(v);
    } else {
      for (std::size_t v = 0; v < std::min<std::size_t>(n, 2); ++v)
        w.paths[conv_roles[v]] = vars + std::to_string(v);
    }
    convert_layer(f, w, op, net.shapes()[std::size_t(op.inputs[0])].c, m.parameters,
                  {{"scale", true}, {"center", true}});
    r.layer_map.emplace_back(w.layer, op.name);
  }
  for (const auto& [kind, list] : by_kind) {
    OpKind k = kind == "conv3d"             ? OpKind::Conv
               : kind == "conv3d_transpose" ? OpKind::ConvTranspose
                                            : OpKind::BatchNorm;
    if (list.size() > next[k])
      throw InputError(fmt::format("{}: layer '{}' is one {} more than the {} network has", path,
                                   list[next[k]].second, kind, architecture));
  }
  // The file does not record batch-norm epsilon: Keras's default (1e-3, what the authors used) is assumed.
  m.training = provenance(path, r, m.batch_norm.epsilon).dump();
  return r;
}

}  // namespace

KerasImport import_keras(const std::string& path, const std::string& architecture, const RadarSystem& system,
                         const ImagingGrid& grid) {
  if (is_composite_architecture(architecture))
    throw InputError(fmt::format(
        "--arch {}: Keras import covers the networks unet3d, unet2d, resnet and cv-unet3d", architecture));
  build_network(architecture, grid.x().size, grid.y().size, grid.z().size);  // known name, usable grid
  const h5::File f(path, h5::File::Mode::Read);
  KerasImport r;
  if (f.has_attribute("/", "model_config")) {
    r = import_keras2(f, architecture, system, grid);
  } else if (f.has("/layers") || f.has("/_layer_checkpoint_dependencies")) {
    r = import_keras3(f, f.has("/layers") ? "/layers" : "/_layer_checkpoint_dependencies", architecture,
                      system, grid);
  } else if (f.has_attribute("/", "layer_names")) {
    throw InputError(path +
                     ": a Keras 2 weights-only file (model.save_weights) has no topology to check; save the "
                     "model with model.save(\"model.h5\") instead");
  } else {
    throw InputError(path + ": not a Keras model file (no model_config attribute, no /layers group)");
  }
  check_parameters(r.model.parameter_specs(), architecture, r.model.parameters, path);
  return r;
}

// ---------------------------------------------------------------------------------------------------------
// Export.

namespace {

std::string keras_name(const std::string& op_name) {
  std::string s = op_name;
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

json inbound(const std::vector<std::string>& names) {
  json node = json::array();
  for (const auto& n : names) node.push_back(json::array({n, 0, 0, json::object()}));
  return json::array({node});
}

json ints(const Triple& t) { return json::array({t[0], t[1], t[2]}); }
json pairs(const Triple& lo, const Triple& hi) {
  return json::array({json::array({lo[0], hi[0]}), json::array({lo[1], hi[1]}), json::array({lo[2], hi[2]})});
}

}  // namespace

void export_keras(const Model& model, const std::string& path, bool overwrite) {
  if (model.composite())
    throw InputError(
        fmt::format("{}: Keras export covers the networks unet3d, unet2d, resnet and cv-unet3d, not "
                    "the composite {}",
                    path, model.architecture));
  const Network net = model.network();
  const auto& ops = net.ops();
  const auto& shapes = net.shapes();
  json layers = json::array();
  std::vector<std::string> value_layer(ops.size());  // the Keras layer holding each value
  struct Weighted {
    std::string layer;
    const Op* op;
    int in_c;
  };
  std::vector<Weighted> weighted;
  const Shape in = net.input_shape();
  const auto base = [](const std::string& cls, const std::string& name) {
    return json{{"class_name", cls},
                {"name", name},
                {"config", {{"name", name}, {"trainable", true}, {"dtype", "float32"}}}};
  };
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    const std::string name = i == 0 ? "input" : keras_name(op.name);
    std::vector<std::string> from;
    for (int v : op.inputs) from.push_back(value_layer[std::size_t(v)]);
    json l;
    switch (op.kind) {
      case OpKind::Input:
        l = {{"class_name", "InputLayer"},
             {"name", name},
             {"config",
              {{"batch_input_shape", json::array({nullptr, in.x, in.y, in.z, in.c})},
               {"dtype", "float32"},
               {"sparse", false},
               {"ragged", false},
               {"name", name}}}};
        break;
      case OpKind::Conv:
      case OpKind::ConvTranspose: {
        const bool t = op.kind == OpKind::ConvTranspose;
        l = base(t ? "Conv3DTranspose" : "Conv3D", name);
        std::string padding = "same";
        if (!t) {
          Triple lo{}, hi{};
          for (int a = 0; a < 3; ++a) {
            lo[a] = (op.kernel[a] - 1) / 2;
            hi[a] = op.kernel[a] - 1 - lo[a];
          }
          const bool zero = op.pad_lo == Triple{0, 0, 0} && op.pad_hi == Triple{0, 0, 0};
          if (!(op.pad_lo == lo && op.pad_hi == hi)) padding = "valid";
          if (!zero &&
              padding == "valid") {  // explicit padding: a ZeroPadding3D before a 'valid' convolution
            json p = base("ZeroPadding3D", name + "_pad");
            p["config"]["padding"] = pairs(op.pad_lo, op.pad_hi);
            p["config"]["data_format"] = "channels_last";
            p["inbound_nodes"] = inbound(from);
            layers.push_back(p);
            from = {name + "_pad"};
          }
        } else {
          for (int a = 0; a < 3; ++a)
            if (op.pad_hi[a] != op.stride[a] - op.kernel[a] || op.pad_lo[a] != 0)
              throw InputError(fmt::format("{}: op '{}' has an output padding Keras's 'same' cannot express",
                                           path, op.name));
        }
        auto& c = l["config"];
        c["filters"] = op.channels;
        c["kernel_size"] = ints(op.kernel);
        c["strides"] = ints(op.stride);
        c["padding"] = padding;
        c["data_format"] = "channels_last";
        c["dilation_rate"] = json::array({1, 1, 1});
        if (!t) c["groups"] = 1;
        c["activation"] = "linear";
        c["use_bias"] = true;
        weighted.push_back({name, &op, shapes[std::size_t(op.inputs[0])].c});
        break;
      }
      case OpKind::BatchNorm:
        l = base("BatchNormalization", name);
        l["config"]["axis"] = json::array({4});
        l["config"]["epsilon"] = model.batch_norm.epsilon;
        l["config"]["momentum"] = 1.0 - model.batch_norm.momentum;
        l["config"]["center"] = true;
        l["config"]["scale"] = true;
        weighted.push_back({name, &op, shapes[std::size_t(op.inputs[0])].c});
        break;
      case OpKind::ReLU:
      case OpKind::Sigmoid:
        l = base("Activation", name);
        l["config"]["activation"] = op.kind == OpKind::ReLU ? "relu" : "sigmoid";
        break;
      case OpKind::MaxPool:
        l = base("MaxPooling3D", name);
        l["config"]["pool_size"] = ints(op.kernel);
        l["config"]["strides"] = ints(op.stride);
        l["config"]["padding"] = "valid";
        l["config"]["data_format"] = "channels_last";
        break;
      case OpKind::Concat:
        l = base("Concatenate", name);
        l["config"]["axis"] = -1;
        break;
      case OpKind::Add:
        l = base("Add", name);
        break;
      case OpKind::Crop:
      case OpKind::ZeroPad: {
        const bool crop = op.kind == OpKind::Crop;
        l = base(crop ? "Cropping3D" : "ZeroPadding3D", name);
        l["config"][crop ? "cropping" : "padding"] = pairs(op.pad_lo, op.pad_hi);
        l["config"]["data_format"] = "channels_last";
        break;
      }
      case OpKind::Dense:
        throw InputError(fmt::format("{}: op '{}' (dense) has no Keras export", path, op.name));
    }
    l["inbound_nodes"] = i == 0 ? json::array() : inbound(from);
    layers.push_back(l);
    value_layer[i] = name;
  }
  const std::string output = value_layer[std::size_t(net.output())];
  const json config = {{"class_name", "Functional"},
                       {"config",
                        {{"name", "nfmimo_" + model.architecture},
                         {"trainable", true},
                         {"layers", layers},
                         {"input_layers", json::array({json::array({"input", 0, 0})})},
                         {"output_layers", json::array({json::array({output, 0, 0})})}}},
                       {"keras_version", "2.15.0"},
                       {"backend", "tensorflow"}};

  AtomicOutput out(path, overwrite);
  {
    h5::File f(out.temporary_path(), h5::File::Mode::Create);
    f.set_attribute("/", "model_config", config.dump());
    f.set_attribute("/", "keras_version", std::string("2.15.0"));
    f.set_attribute("/", "backend", std::string("tensorflow"));
    f.set_attribute("/", "nfmimo_export",
                    json{{"architecture", model.architecture},
                         {"width", model.options.width},
                         {"blocks", model.options.blocks},
                         {"training", model.training}}
                        .dump());
    make_group(f, "/model_weights");
    f.set_attribute("/model_weights", "keras_version", std::string("2.15.0"));
    f.set_attribute("/model_weights", "backend", std::string("tensorflow"));
    std::vector<std::string> names;
    for (const auto& w : weighted) {
      names.push_back(w.layer);
      const Op& op = *w.op;
      const std::string group = "/model_weights/" + w.layer;
      make_group(f, group);
      std::vector<std::string> weight_names;
      const auto put = [&](const std::string& role, const h5::Dims& dims, const std::vector<float>& v) {
        const std::string n = w.layer + "/" + role + ":0";
        f.write<float>(group + "/" + n, dims, v.data());
        weight_names.push_back(n);
      };
      const auto& p = model.parameters;
      if (op.kind == OpKind::BatchNorm) {
        const h5::Dims d{hsize_t(w.in_c)};
        put("gamma", d, p.at(op.name + ".weight").values);
        put("beta", d, p.at(op.name + ".bias").values);
        put("moving_mean", d, p.at(op.name + ".running_mean").values);
        put("moving_variance", d, p.at(op.name + ".running_var").values);
      } else {
        const bool t = op.kind == OpKind::ConvTranspose;
        const int kx = op.kernel[0], ky = op.kernel[1], kz = op.kernel[2], oc = op.channels, ic = w.in_c;
        const auto& weight = p.at(op.name + ".weight").values;
        std::vector<float> kernel(weight.size());
        for (int a = 0; a < kx; ++a)
          for (int b = 0; b < ky; ++b)
            for (int c = 0; c < kz; ++c)
              for (int i = 0; i < ic; ++i)
                for (int o = 0; o < oc; ++o) {
                  const std::size_t tap = (std::size_t(a) * ky + b) * kz + c;
                  const std::size_t ours = t ? ((std::size_t(i) * oc + o) * kx * ky * kz + tap)
                                             : ((std::size_t(o) * ic + i) * kx * ky * kz + tap);
                  const std::size_t theirs = t ? (tap * oc + o) * ic + i : (tap * ic + i) * oc + o;
                  kernel[theirs] = weight[ours];
                }
        put("kernel",
            t ? h5::Dims{hsize_t(kx), hsize_t(ky), hsize_t(kz), hsize_t(oc), hsize_t(ic)}
              : h5::Dims{hsize_t(kx), hsize_t(ky), hsize_t(kz), hsize_t(ic), hsize_t(oc)},
            kernel);
        put("bias", {hsize_t(oc)}, p.at(op.name + ".bias").values);
      }
      set_string_array_attribute(f, group, "weight_names", weight_names);
    }
    set_string_array_attribute(f, "/model_weights", "layer_names", names);
    f.flush();
  }
  out.commit();
}

}  // namespace nfmimo::nn
