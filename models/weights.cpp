#include "models/weights.hpp"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "data/atomic_file.hpp"
#include "data/hdf5.hpp"
#include "data/measurement_file.hpp"
#include "models/learned/composite.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

Network Model::network() const {
  Network net = build_network(architecture, grid.x().size, grid.y().size, grid.z().size, options);
  net.batch_norm_settings = batch_norm;
  return net;
}

std::vector<ParameterSpec> Model::parameter_specs() const {
  std::vector<ParameterSpec> specs = network().parameter_specs();
  if (composite())
    for (auto& spec : dense_parameter_specs(system, grid)) specs.push_back(std::move(spec));
  return specs;
}

Model make_model(const std::string& architecture, const RadarSystem& system, const ImagingGrid& grid,
                 const ArchitectureOptions& options, unsigned long long seed) {
  Model m;
  m.architecture = architecture;
  m.options = options;
  m.system = system;
  m.grid = grid;
  m.parameters = initial_parameters(m.network(), seed);
  if (m.composite()) add_initial_dense_parameters(architecture, system, grid, seed, m.parameters);
  return m;
}

static std::string parameter_path(const std::string& name) { return "/parameters/" + name; }

void write_model(const std::string& path, const Model& model, bool overwrite) {
  const Network net = model.network();
  const std::vector<ParameterSpec> specs = model.parameter_specs();
  check_parameters(specs, model.architecture, model.parameters, path);
  AtomicOutput out(path, overwrite);
  {
    h5::File f(out.temporary_path(), h5::File::Mode::Create, path);
    f.set_attribute("/", "nfmimo_format", std::string("weights"));
    f.set_attribute("/", "nfmimo_version", static_cast<long long>(kWeightsFormatVersion));
    f.set_attribute("/", "architecture", model.architecture);
    f.set_attribute("/", "width", static_cast<long long>(model.options.width));
    f.set_attribute("/", "blocks", static_cast<long long>(model.options.blocks));
    f.set_attribute("/", "input_channels", static_cast<long long>(net.input_shape().c));
    f.set_attribute("/", "normalisation", model.normalisation);
    f.set_attribute("/", "role", model.role);
    f.set_attribute("/", "bn_epsilon", model.batch_norm.epsilon);
    f.set_attribute("/", "bn_momentum", model.batch_norm.momentum);
    long long trainable = 0;  // the network's and, for the composites, the dense layer's
    for (const auto& spec : specs)
      if (spec.trainable) {
        long long n = 1;
        for (int d : spec.shape) n *= d;
        trainable += n;
      }
    f.set_attribute("/", "trainable_parameters", trainable);
    if (!model.training.empty()) f.set_attribute("/", "training", model.training);
    write_system(f, model.system);
    write_grid(f, model.grid);
    for (const auto& spec : specs) {
      const auto& t = model.parameters.at(spec.name);
      h5::Dims dims(t.shape.begin(), t.shape.end());
      f.write<float>(parameter_path(spec.name), dims, t.values.data());
    }
    f.close();
  }
  out.commit();
}

namespace {

template <class T>
T required_attribute(const std::optional<T>& value, const h5::File& f, const char* name) {
  if (!value)
    throw InputError(
        fmt::format("{}: the root attribute '{}' is missing (see docs/formats.md)", f.path(), name));
  return *value;
}

}  // namespace

namespace {

// The root attributes, /system and /grid, checked; no parameters.
Model read_header(const h5::File& f, const std::string& path) {
  const auto format = f.string_attribute("/", "nfmimo_format");
  if (!format)
    throw InputError(
        fmt::format("{}: not an nfmimo weights file: the root attribute 'nfmimo_format' is missing "
                    "(see docs/formats.md)",
                    path));
  if (*format != "weights")
    throw InputError(fmt::format("{}: is an nfmimo '{}' file; expected 'weights'", path, *format));
  const long long version = required_attribute(f.int_attribute("/", "nfmimo_version"), f, "nfmimo_version");
  if (version < 1 || version > kWeightsFormatVersion)
    throw InputError(
        fmt::format("{}: weights format version {} is not supported (this nfmimo reads version {})", path,
                    version, kWeightsFormatVersion));
  Model m;
  m.architecture = required_attribute(f.string_attribute("/", "architecture"), f, "architecture");
  const long long width = required_attribute(f.int_attribute("/", "width"), f, "width");
  const long long blocks = required_attribute(f.int_attribute("/", "blocks"), f, "blocks");
  if (width < 0 || width > kMaxWidth || blocks < 0 || blocks > kMaxBlocks)
    throw InputError(
        fmt::format("{}: declares a network of width {} and {} blocks; nfmimo builds width 0..{} and "
                    "0..{} blocks (the file is damaged, or not one `nfmimo train` wrote)",
                    path, width, blocks, kMaxWidth, kMaxBlocks));
  m.options.width = int(width);
  m.options.blocks = int(blocks);
  m.normalisation = required_attribute(f.string_attribute("/", "normalisation"), f, "normalisation");
  if (m.normalisation != kSampleMaxNormalisation)
    throw InputError(fmt::format("{}: normalisation '{}' is not known (known: {})", path, m.normalisation,
                                 kSampleMaxNormalisation));
  m.role = f.string_attribute("/", "role").value_or(kReconstructionRole);
  if (m.role != kReconstructionRole && m.role != kDenoiserRole)
    throw InputError(fmt::format("{}: role '{}' is not known (known: {}, {})", path, m.role,
                                 kReconstructionRole, kDenoiserRole));
  m.batch_norm.epsilon = required_attribute(f.double_attribute("/", "bn_epsilon"), f, "bn_epsilon");
  m.batch_norm.momentum = required_attribute(f.double_attribute("/", "bn_momentum"), f, "bn_momentum");
  if (!(m.batch_norm.epsilon > 0) || !(m.batch_norm.momentum >= 0 && m.batch_norm.momentum <= 1))
    throw InputError(fmt::format("{}: batch-norm settings out of range (epsilon {}, momentum {})", path,
                                 m.batch_norm.epsilon, m.batch_norm.momentum));
  m.training = f.string_attribute("/", "training").value_or("");
  m.system = read_system(f);
  const auto grid = read_grid(f);
  if (!grid) throw InputError(fmt::format("{}: /grid is missing (a model is trained for one grid)", path));
  m.grid = *grid;
  validate_grid(m.grid, m.system, path + ": /grid");
  return m;
}

}  // namespace

Model read_model_header(const std::string& path) {
  const h5::File f(path, h5::File::Mode::Read);
  return read_header(f, path);
}

Model read_model(const std::string& path) {
  const h5::File f(path, h5::File::Mode::Read);
  Model m = read_header(f, path);
  Network net;
  try {
    net = m.network();
  } catch (const InputError& e) {
    throw InputError(fmt::format("{}: {}", path, e.what()));
  }
  if (const auto channels = f.int_attribute("/", "input_channels");
      channels && *channels != net.input_shape().c)
    throw InputError(fmt::format("{}: input_channels is {} but the {} network takes {}", path, *channels,
                                 m.architecture, net.input_shape().c));
  if (!f.has("/parameters")) throw InputError(fmt::format("{}: the group /parameters is missing", path));
  std::set<std::string> expected;
  const std::vector<ParameterSpec> specs = m.parameter_specs();
  for (const auto& spec : specs) {
    expected.insert(spec.name);
    const std::string where = parameter_path(spec.name);
    if (!f.is_dataset(where))
      throw InputError(fmt::format("{}: parameter '{}' of the {} network is missing", f.where(where),
                                   spec.name, m.architecture));
    // A composite's dense layer is sized by the file's own system and grid: a different shape is a damaged or
    // hand-edited file, said before reading hundreds of megabytes.
    if (spec.name == kDenseWeight || spec.name == kDenseBias) {
      const h5::Dims dims = f.shape(where);
      if (!std::equal(dims.begin(), dims.end(), spec.shape.begin(), spec.shape.end()))
        throw InputError(
            fmt::format("{}: has shape [{}]; the {} model's system and grid need [{}] (voxels, measurements "
                        "per frame, 2)",
                        f.where(where), fmt::join(dims, ", "), m.architecture, fmt::join(spec.shape, ", ")));
    }
    auto a = f.read<float>(where);
    ParameterTensor t;
    t.shape.assign(a.dims.begin(), a.dims.end());
    t.values = std::move(a.data);
    t.trainable = spec.trainable;
    m.parameters.emplace(spec.name, std::move(t));
  }
  for (const auto& name : f.members("/parameters"))
    if (!expected.count(name))
      throw InputError(
          fmt::format("{}: '{}' is not a parameter of the {} network (wrong architecture or width?)",
                      f.where(parameter_path(name)), name, m.architecture));
  check_parameters(specs, m.architecture, m.parameters, path);
  return m;
}

}  // namespace nfmimo::nn
