// The synthesizer in Python: dataset files as `nfmimo synthesize` writes them, and batches in memory.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "radar/names.hpp"
#include "synthesizer/dataset.hpp"
#include "synthesizer/scene.hpp"
#include "synthesizer/synthesizer.hpp"
#include "tools/python/src/arrays.hpp"
#include "tools/python/src/bindings.hpp"

using namespace nb::literals;

namespace nfmimo::python {
namespace {

nb::dict dataset_info(const std::string& path) {
  const DatasetInfo info = read_dataset_info(path);
  nb::dict d;
  d["config"] = scene_config_json(info.spec.config);
  d["seed"] = info.spec.seed;
  d["count"] = info.spec.count;
  d["shard"] = nb::make_tuple(info.spec.shard_index, info.spec.shard_count);
  d["first_sample"] = info.first_sample;
  d["rows"] = info.rows;
  d["complete"] = info.complete;
  d["device"] = info.device;
  d["system"] = info.spec.system;
  d["grid"] = info.spec.grid;
  return d;
}

// A dataset file exactly as `nfmimo synthesize` writes it (same code: attributes, chunking, OUT.partial,
// resume).
nb::dict synthesize_dataset_file(const std::string& path, std::int64_t count, const RadarSystem& system,
                                 const ImagingGrid& grid, const std::string& config_json,
                                 const std::optional<std::string>& snr, std::int64_t seed, int shard_index,
                                 int shard_count, const std::string& device, int batch, int gzip,
                                 bool overwrite, bool resume) {
  DatasetSpec spec;
  spec.config = parse_scene_config(config_json.empty() ? "{}" : config_json, "config");
  if (snr) parse_snr_option(*snr, spec.config);
  validate_scene_config(spec.config, "config");
  require(seed >= 0, fmt::format("seed must be a non-negative integer below 2^63 (got {})", seed));
  spec.seed = static_cast<std::uint64_t>(seed);
  spec.count = count;
  spec.shard_index = shard_index;
  spec.shard_count = shard_count;
  spec.system = system;
  spec.grid = grid;
  validate_dataset_spec(spec);
  require(batch >= 1, fmt::format("batch must be positive (got {})", batch));
  DatasetRunOptions o;
  o.output = path;
  o.force = overwrite;
  o.resume = resume;
  o.gzip_level = gzip;
  o.batch = batch;
  o.device = parse_device(device);
  DatasetRunResult r;
  {
    nb::gil_scoped_release release;
    r = synthesize_dataset(spec, o);
  }
  nb::dict d;
  d["complete"] = r.complete;
  d["path"] = r.path;
  d["written"] = r.written;
  d["in_file"] = r.in_file;
  d["seconds"] = r.seconds;
  d["device"] = r.device;
  return d;
}

struct PySynthesizer {
  std::unique_ptr<Synthesizer> synth;

  PySynthesizer(const RadarSystem& system, const ImagingGrid& grid, const std::string& config_json,
                const std::optional<std::string>& snr, std::uint64_t seed, const std::string& device,
                int max_batch) {
    SceneConfig config = parse_scene_config(config_json.empty() ? "{}" : config_json, "config");
    if (snr) parse_snr_option(*snr, config);
    validate_scene_config(config, "config");
    validate_system(system, "system");
    validate_grid(grid, system, "grid");
    require(max_batch >= 1, fmt::format("batch must be positive (got {})", max_batch));
    nb::gil_scoped_release release;
    synth = std::make_unique<Synthesizer>(system, grid, config, seed, parse_device(device), max_batch);
  }

  nb::tuple batch(std::int64_t first, int count) const {
    require(first >= 0, fmt::format("first must be non-negative (got {})", first));
    require(count >= 0, fmt::format("count must be non-negative (got {})", count));
    const RadarSystem& s = synth->system();
    const ImagingGrid& g = synth->grid();
    std::vector<cfloat> y(std::size_t(count) * s.samples_per_frame()), x(std::size_t(count) * g.voxels());
    std::vector<float> snr(static_cast<std::size_t>(count));
    {
      nb::gil_scoped_release release;
      if (count > 0) synth->generate(std::uint64_t(first), count, x.data(), y.data(), snr.data());
    }
    std::vector<std::size_t> xshape{std::size_t(count)};
    for (std::size_t d : volume_dims(g)) xshape.push_back(d);
    return nb::make_tuple(to_numpy(std::move(y), {std::size_t(count), std::size_t(s.frequencies()),
                                                  std::size_t(s.transmitters()), std::size_t(s.receivers())}),
                          to_numpy(std::move(x), xshape), to_numpy(std::move(snr), {std::size_t(count)}));
  }
};

}  // namespace

void bind_synthesizer(nb::module_& m) {
  m.def("read_dataset_info", &dataset_info, "path"_a);
  m.def("synthesize_dataset", &synthesize_dataset_file, "path"_a, "count"_a, "system"_a, "grid"_a, "config"_a,
        "snr"_a.none(), "seed"_a, "shard_index"_a, "shard_count"_a, "device"_a, "batch"_a, "gzip"_a,
        "overwrite"_a, "resume"_a);
  m.def("scene_config_json",
        [](const std::string& text) { return scene_config_json(parse_scene_config(text, "config")); });

  nb::class_<PySynthesizer>(m, "Synthesizer")
      .def(nb::init<const RadarSystem&, const ImagingGrid&, const std::string&,
                    const std::optional<std::string>&, std::uint64_t, const std::string&, int>(),
           "system"_a, "grid"_a, "config"_a, "snr"_a.none(), "seed"_a, "device"_a, "max_batch"_a)
      .def("batch", &PySynthesizer::batch, "first"_a, "count"_a)
      .def_prop_ro("config", [](const PySynthesizer& s) { return scene_config_json(s.synth->config()); })
      .def_prop_ro("device", [](const PySynthesizer& s) { return s.synth->device_description(); });
}

}  // namespace nfmimo::python
