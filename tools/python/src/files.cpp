// Measurement and volume files: read into numpy arrays that own their data, written from checked arrays.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <optional>

#include "data/measurement_file.hpp"
#include "tools/python/src/arrays.hpp"
#include "tools/python/src/bindings.hpp"

using namespace nb::literals;

namespace nfmimo::python {
namespace {

nb::tuple read_measurement_file(const std::string& path, bool targets) {
  MeasurementSet m;
  {
    nb::gil_scoped_release release;
    m = read_measurements(path, {.load_targets = targets});
  }
  std::vector<std::size_t> yshape{std::size_t(m.system.frequencies()), std::size_t(m.system.transmitters()),
                                  std::size_t(m.system.receivers())};
  if (!m.single_frame) yshape.insert(yshape.begin(), std::size_t(m.frames));
  nb::object t = nb::none(), snr = nb::none();
  if (!m.targets.empty() && m.grid) {
    std::vector<std::size_t> tshape{std::size_t(m.frames)};
    for (std::size_t d : volume_dims(*m.grid)) tshape.push_back(d);
    t = nb::cast(to_numpy(std::move(m.targets), tshape));
  }
  if (!m.snr_db.empty()) snr = nb::cast(to_numpy(std::move(m.snr_db), {std::size_t(m.frames)}));
  nb::object grid = m.grid ? nb::cast(*m.grid) : nb::none();
  return nb::make_tuple(m.system, grid, to_numpy(std::move(m.measurements), yshape), t, snr);
}

void write_measurement_file(const std::string& path, const RadarSystem& system, InArray y,
                            std::optional<ImagingGrid> grid, std::optional<InArray> targets,
                            std::optional<InArray> snr_db, bool overwrite) {
  validate_system(system, "system");
  MeasurementSet m;
  m.system = system;
  m.grid = grid;
  const auto [data, frames] = host_measurements(y, system);
  m.frames = frames;
  m.single_frame = y.ndim() == 3;
  require(y.ndim() == 3 || y.ndim() == 4,
          fmt::format("y: expected shape (N, K, T, R) or (K, T, R), got {}", shape_text(y)));
  m.measurements.assign(data, data + std::size_t(frames) * system.samples_per_frame());
  if (targets) {
    require(grid.has_value(), "targets need a grid");
    require(targets->device_type() == kDlCpu, "targets: expected a host (cpu) array");
    const std::size_t n = check_array<cfloat>(*targets, "targets", volume_dims(*grid), "complex64");
    require(n == std::size_t(frames), fmt::format("targets: {} frames, but y has {}", n, frames));
    const auto* p = static_cast<const cfloat*>(targets->data());
    m.targets.assign(p, p + n * grid->voxels());
  }
  if (snr_db) {
    require(snr_db->device_type() == kDlCpu, "snr_db: expected a host (cpu) array");
    const std::size_t n = check_array<float>(*snr_db, "snr_db", {}, "float32");
    require(n == std::size_t(frames), fmt::format("snr_db: {} values, but y has {} frames", n, frames));
    const auto* p = static_cast<const float*>(snr_db->data());
    m.snr_db.assign(p, p + n);
  }
  if (grid) validate_grid(*grid, system, "grid");
  nb::gil_scoped_release release;
  write_measurements(path, m, {.overwrite = overwrite});
}

nb::tuple read_volume_file(const std::string& path) {
  VolumeSet v;
  {
    nb::gil_scoped_release release;
    v = read_volumes(path);
  }
  std::vector<std::size_t> shape{std::size_t(v.frames)};
  for (std::size_t d : volume_dims(v.grid)) shape.push_back(d);
  nb::object volumes = v.complex.empty() ? nb::cast(to_numpy(std::move(v.magnitude), shape))
                                         : nb::cast(to_numpy(std::move(v.complex), shape));
  return nb::make_tuple(v.grid, volumes, v.method, v.source, v.device, v.extra_json);
}

void write_volume_file(const std::string& path, const ImagingGrid& grid, InArray volumes,
                       const std::string& method, const std::string& source, const std::string& device,
                       bool overwrite) {
  require(volumes.device_type() == kDlCpu, "volumes: expected a host (cpu) array");
  VolumeSet v;
  v.grid = grid;
  v.method = method;
  v.source = source;
  v.device = device;
  require(volumes.ndim() == 4, fmt::format("volumes: expected shape (N, {}), got {}",
                                           dims_text(volume_dims(grid)), shape_text(volumes)));
  if (volumes.dtype() == nb::dtype<cfloat>()) {
    v.frames = static_cast<int>(check_array<cfloat>(volumes, "volumes", volume_dims(grid), "complex64"));
    const auto* p = static_cast<const cfloat*>(volumes.data());
    v.complex.assign(p, p + std::size_t(v.frames) * grid.voxels());
  } else {
    v.frames =
        static_cast<int>(check_array<float>(volumes, "volumes", volume_dims(grid), "float32 or complex64"));
    const auto* p = static_cast<const float*>(volumes.data());
    v.magnitude.assign(p, p + std::size_t(v.frames) * grid.voxels());
  }
  nb::gil_scoped_release release;
  write_volumes(path, v, overwrite);
}

}  // namespace

void bind_files(nb::module_& m) {
  m.def("read_measurements", &read_measurement_file, "path"_a, "targets"_a = true);
  m.def("write_measurements", &write_measurement_file, "path"_a, "system"_a, "y"_a, "grid"_a.none(),
        "targets"_a.none(), "snr_db"_a.none(), "overwrite"_a);
  m.def("read_volumes", &read_volume_file, "path"_a);
  m.def("write_volumes", &write_volume_file, "path"_a, "grid"_a, "volumes"_a, "method"_a, "source"_a,
        "device"_a, "overwrite"_a);
}

}  // namespace nfmimo::python
