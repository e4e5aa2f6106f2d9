// export_keras: a Keras 2 HDF5 model file (model_config + model_weights) from an nfmimo network.
#include <algorithm>

#include <fmt/format.h>

#include "data/atomic_file.hpp"
#include "models/keras.hpp"
#include "models/keras/internal.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

using json = nlohmann::json;

namespace {

using keras::make_group;
using keras::set_string_array_attribute;

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
