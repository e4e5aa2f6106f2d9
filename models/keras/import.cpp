// import_keras: Keras 2 model files (topology checked against the architecture) and Keras 3 weights files
// (layers matched by their default names).
#include <algorithm>
#include <filesystem>
#include <optional>
#include <regex>

#include <fmt/format.h>

#include "models/keras.hpp"
#include "models/keras/internal.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

namespace keras {
namespace {

std::string role_of(std::string weight_name) {
  if (const auto slash = weight_name.rfind('/'); slash != std::string::npos)
    weight_name = weight_name.substr(slash + 1);
  if (const auto colon = weight_name.rfind(':'); colon != std::string::npos)
    weight_name = weight_name.substr(0, colon);
  return weight_name;
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
}  // namespace keras

KerasImport import_keras(const std::string& path, const std::string& architecture, const RadarSystem& system,
                         const ImagingGrid& grid) {
  if (is_composite_architecture(architecture))
    throw InputError(fmt::format(
        "--arch {}: Keras import covers the networks unet3d, unet2d, resnet and cv-unet3d", architecture));
  build_network(architecture, grid.x().size, grid.y().size, grid.z().size);  // known name, usable grid
  const h5::File f(path, h5::File::Mode::Read);
  KerasImport r;
  if (f.has_attribute("/", "model_config")) {
    r = keras::import_keras2(f, architecture, system, grid);
  } else if (f.has("/layers") || f.has("/_layer_checkpoint_dependencies")) {
    r = keras::import_keras3(f, f.has("/layers") ? "/layers" : "/_layer_checkpoint_dependencies",
                             architecture, system, grid);
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

}  // namespace nfmimo::nn
