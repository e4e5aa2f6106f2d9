// Loaded models, with the pipelines built from them, and reconstruction through the method table.
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "models/learned/pipeline.hpp"
#include "models/weights.hpp"
#include "radar/names.hpp"
#include "tools/methods.hpp"
#include "tools/python/src/arrays.hpp"
#include "tools/python/src/bindings.hpp"

using namespace nb::literals;

namespace nfmimo::python {
namespace {

// A loaded model and the pipelines built from it (one per method, device, mode, batch and precision).
struct LoadedModel {
  std::string path;
  nn::Model model;
  std::map<std::string, std::unique_ptr<nn::LearnedPipeline>> pipelines;
  std::mutex mutex;
};

// reconstruct: the method table (or, for a learned method with a loaded model, that model's cached pipeline).
// Returns (volumes [frames, V] magnitude or complex, label, device).
nb::tuple reconstruct(const std::string& method, const RadarSystem& system, const ImagingGrid& grid,
                      InArray y, LoadedModel* loaded, const std::string& model_path,
                      const std::string& device, const std::string& mode, int batch,
                      const std::string& precision, const std::map<std::string, std::string>& params,
                      bool want_complex) {
  validate_system(system, "system");
  validate_grid(grid, system, "grid");
  require(batch >= 1, fmt::format("batch must be positive (got {})", batch));
  const auto [data, frames] = host_measurements(y, system);
  MethodContext c;
  c.system = &system;
  c.grid = &grid;
  c.measurements = data;
  c.frames = frames;
  c.device = parse_device(device);
  parse_mode(mode);
  c.mode = mode;
  c.batch = batch;
  c.model = loaded ? loaded->path : model_path;
  c.precision = precision;
  c.params = params;

  const bool learned = [&] {
    for (const auto& s : nn::learned_method_specs())
      if (s.name == method) return true;
    return false;
  }();
  MethodResult r;
  if (learned && loaded) {
    require(!want_complex, fmt::format("complex=True: method '{}' produces magnitudes only", method));
    const std::string key = fmt::format("{}|{}|{}|{}|{}|{}", method, device, mode, batch, precision,
                                        params.count("precision") ? params.at("precision") : "");
    nb::gil_scoped_release release;
    std::lock_guard lock(loaded->mutex);
    auto& pipeline = loaded->pipelines[key];
    if (!pipeline) pipeline = make_learned_pipeline(method, loaded->model, loaded->path, c);
    nn::require_matching(pipeline->model(), loaded->path, system, grid, "the measurements");
    r.magnitude.resize(grid.voxels() * std::size_t(frames));
    pipeline->run(data, frames, r.magnitude.data());
    r.label = method;
    r.device = pipeline->device_description();
  } else {
    nb::gil_scoped_release release;
    r = run_method(method, c);
  }
  std::vector<std::size_t> shape{std::size_t(frames)};
  for (std::size_t d : volume_dims(grid)) shape.push_back(d);
  nb::object volumes;
  if (want_complex) {
    require(!r.complex.empty(), fmt::format("complex=True: method '{}' produces magnitudes only", method));
    volumes = nb::cast(to_numpy(std::move(r.complex), shape));
  } else {
    volumes = nb::cast(to_numpy(std::move(r.magnitude), shape));
  }
  return nb::make_tuple(volumes, r.label, r.device, r.extra_json);
}

}  // namespace

void bind_reconstruction(nb::module_& m) {
  nb::class_<LoadedModel>(m, "Model")
      .def("__init__",
           [](LoadedModel* self, const std::string& path) {
             nn::Model model;
             {
               nb::gil_scoped_release release;
               model = nn::read_model(path);
             }
             new (self) LoadedModel{path, std::move(model), {}, {}};
           })
      .def_prop_ro("path", [](const LoadedModel& l) { return l.path; })
      .def_prop_ro("architecture", [](const LoadedModel& l) { return l.model.architecture; })
      .def_prop_ro("role", [](const LoadedModel& l) { return l.model.role; })
      .def_prop_ro("system", [](const LoadedModel& l) { return l.model.system; })
      .def_prop_ro("grid", [](const LoadedModel& l) { return l.model.grid; })
      .def_prop_ro("cached_pipelines", [](const LoadedModel& l) { return l.pipelines.size(); });

  // A freshly initialised model written to `path` (the starting point `nfmimo train` uses; tests use tiny
  // ones).
  m.def(
      "write_initial_model",
      [](const std::string& path, const std::string& architecture, const RadarSystem& system,
         const ImagingGrid& grid, int width, int blocks, const std::string& role, unsigned long long seed,
         bool overwrite) {
        require(role == nn::kReconstructionRole || role == nn::kDenoiserRole,
                fmt::format("role: '{}' is not {} or {}", role, nn::kReconstructionRole, nn::kDenoiserRole));
        nb::gil_scoped_release release;
        nn::Model model =
            nn::make_model(architecture, system, grid, nn::ArchitectureOptions{width, blocks}, seed);
        model.role = role;
        nn::write_model(path, model, overwrite);
      },
      "path"_a, "architecture"_a, "system"_a, "grid"_a, "width"_a, "blocks"_a, "role"_a, "seed"_a,
      "overwrite"_a);
  m.def("reconstruct", &reconstruct, "method"_a, "system"_a, "grid"_a, "y"_a, "model"_a.none(),
        "model_path"_a, "device"_a, "mode"_a, "batch"_a, "precision"_a, "params"_a, "complex"_a);
  m.def("method_names", [] {
    std::vector<std::string> names;
    for (const auto& e : all_methods()) names.push_back(e.name);
    return names;
  });
  m.def("learned_method_names", [] {
    std::vector<std::string> names;
    for (const auto& s : nn::learned_method_specs()) names.push_back(s.name);
    return names;
  });
}

}  // namespace nfmimo::python
