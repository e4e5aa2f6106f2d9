#include "data/measurement_file.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include <fmt/format.h>

#include "data/atomic_file.hpp"
#include "data/hdf5.hpp"
#include "radar/error.hpp"

namespace nfmimo {
namespace {

std::string shape_string(const h5::Dims& d) {
  std::string s = "[";
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

std::vector<Vec3> read_positions(const h5::File& f, const std::string& name) {
  const auto a = f.read<double>(name);
  if (a.dims.size() != 2 || a.dims[1] != 3)
    throw InputError(fmt::format("{}: has shape {}; expected [count, 3] positions in metres", f.where(name),
                                 shape_string(a.dims)));
  std::vector<Vec3> p(a.dims[0]);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = {a.data[3 * i], a.data[3 * i + 1], a.data[3 * i + 2]};
  return p;
}

void check_format(const h5::File& f, const std::string& expected) {
  const auto format = f.string_attribute("/", "nfmimo_format");
  if (!format)
    throw InputError(
        fmt::format("{}: not an nfmimo {} file: the root attribute 'nfmimo_format' is missing "
                    "(see docs/formats.md)",
                    f.path(), expected));
  if (*format != expected)
    throw InputError(fmt::format("{}: is an nfmimo '{}' file; expected '{}'", f.path(), *format, expected));
  const auto version = f.int_attribute("/", "nfmimo_version");
  if (!version) throw InputError(fmt::format("{}: the root attribute 'nfmimo_version' is missing", f.path()));
  if (*version < 1 || *version > kFormatVersion)
    throw InputError(fmt::format("{}: format version {} is not supported (this nfmimo reads version {})",
                                 f.path(), *version, kFormatVersion));
}

template <class T>
void check_finite(const std::vector<T>& v, const h5::File& f, const std::string& name) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    if constexpr (std::is_floating_point_v<T>) {
      if (!std::isfinite(v[i]))
        throw InputError(fmt::format("{}: element {} is not finite", f.where(name), i));
    } else {
      if (!std::isfinite(v[i].real()) || !std::isfinite(v[i].imag()))
        throw InputError(
            fmt::format("{}: element {} is not finite ({}, {})", f.where(name), i, v[i].real(), v[i].imag()));
    }
  }
}

// Validates /measurements against /system; returns N and whether it is a single [K,T,R] frame.
std::pair<int, bool> measurement_frames(const h5::File& f, const RadarSystem& s) {
  const std::string name = "/measurements";
  const h5::Dims d = f.shape(name);
  if (!f.is_complex(name))
    throw InputError(
        fmt::format("{}: expected complex values stored as the compound {{r, i}} of floats", f.where(name)));
  const std::string expected = fmt::format("[N, K={}, T={}, R={}] (K, T, R from /system)", s.frequencies(),
                                           s.transmitters(), s.receivers());
  if (d.size() != 3 && d.size() != 4)
    throw InputError(fmt::format("{}: has rank {} (shape {}); expected {} or one frame [K, T, R]",
                                 f.where(name), d.size(), shape_string(d), expected));
  const std::size_t o = d.size() - 3;
  if (d[o] != hsize_t(s.frequencies()) || d[o + 1] != hsize_t(s.transmitters()) ||
      d[o + 2] != hsize_t(s.receivers()))
    throw InputError(fmt::format("{}: has shape {}; expected {}", f.where(name), shape_string(d), expected));
  if (d.size() == 4 && d[0] > hsize_t(std::numeric_limits<int>::max()))
    throw InputError(fmt::format("{}: declares {} frames; at most {} are supported", f.where(name), d[0],
                                 std::numeric_limits<int>::max()));
  const int n = d.size() == 4 ? static_cast<int>(d[0]) : 1;
  if (n == 0) throw InputError(fmt::format("{}: holds no frames", f.where(name)));
  return {n, d.size() == 3};
}

}  // namespace

void write_system(h5::File& file, const RadarSystem& s) {
  file.write("/system/frequencies", s.sweep.frequencies());
  for (auto [name, pos] :
       {std::pair{"/system/tx_positions", &s.array.tx()}, std::pair{"/system/rx_positions", &s.array.rx()}}) {
    std::vector<double> flat;
    for (const Vec3& p : *pos) flat.insert(flat.end(), {p.x, p.y, p.z});
    file.write<double>(name, h5::Dims{pos->size(), 3}, flat.data());
    file.set_attribute(name, "units", std::string("m"));
  }
  file.set_attribute("/system/frequencies", "units", std::string("Hz"));
}

RadarSystem read_system(const h5::File& f) {
  const auto freq = f.read<double>("/system/frequencies");
  if (freq.dims.size() != 1)
    throw InputError(fmt::format("{}: has shape {}; expected [K] frequencies in Hz",
                                 f.where("/system/frequencies"), shape_string(freq.dims)));
  RadarSystem s{
      ArrayGeometry(read_positions(f, "/system/tx_positions"), read_positions(f, "/system/rx_positions")),
      FrequencySweep(freq.data)};
  validate_system(s, f.path() + ": /system");
  return s;
}

void write_grid(h5::File& file, const ImagingGrid& g) {
  file.write("/grid/x", g.x().values());
  file.write("/grid/y", g.y().values());
  file.write("/grid/z", g.z().values());
  for (const char* n : {"/grid/x", "/grid/y", "/grid/z"}) file.set_attribute(n, "units", std::string("m"));
}

std::optional<ImagingGrid> read_grid(const h5::File& f) {
  const bool any = f.has("/grid/x") || f.has("/grid/y") || f.has("/grid/z");
  if (!any) return std::nullopt;
  auto axis = [&](const char* name) {
    const auto a = f.read<double>(name);
    if (a.dims.size() != 1)
      throw InputError(fmt::format("{}: has shape {}; expected a 1-D axis in metres", f.where(name),
                                   shape_string(a.dims)));
    return Axis::from_values(a.data, f.where(name));
  };
  return ImagingGrid(axis("/grid/x"), axis("/grid/y"), axis("/grid/z"));
}

MeasurementHeader read_measurement_header(const std::string& path) {
  const h5::File f(path, h5::File::Mode::Read);
  check_format(f, "measurements");
  MeasurementHeader h;
  h.system = read_system(f);
  h.grid = read_grid(f);
  if (h.grid) validate_grid(*h.grid, h.system, f.path() + ": /grid");
  h.frames = measurement_frames(f, h.system).first;
  h.has_targets = f.has("/targets");
  h.has_snr = f.has("/snr_db");
  return h;
}

MeasurementSet read_measurements(const std::string& path, const MeasurementReadOptions& options) {
  const h5::File f(path, h5::File::Mode::Read);
  check_format(f, "measurements");
  MeasurementSet m;
  m.system = read_system(f);
  m.grid = read_grid(f);
  if (m.grid) validate_grid(*m.grid, m.system, f.path() + ": /grid");
  std::tie(m.frames, m.single_frame) = measurement_frames(f, m.system);
  // Every dataset is checked before anything large is read; then only the frames asked for are read.
  const bool has_targets = f.has("/targets");
  if (has_targets) {
    if (!m.grid) throw InputError(fmt::format("{}: /targets is present but /grid is not", path));
    const h5::Dims d = f.shape("/targets");
    const h5::Dims expected = {hsize_t(m.frames), hsize_t(m.grid->x().size), hsize_t(m.grid->y().size),
                               hsize_t(m.grid->z().size)};
    if (d != expected &&
        !(m.single_frame && d.size() == 3 && std::equal(d.begin(), d.end(), expected.begin() + 1)))
      throw InputError(fmt::format("{}: has shape {}; expected {} (N from /measurements, sizes from /grid)",
                                   f.where("/targets"), shape_string(d), shape_string(expected)));
    if (!f.is_complex("/targets"))
      throw InputError(fmt::format("{}: expected complex values stored as the compound {{r, i}} of floats",
                                   f.where("/targets")));
  }
  const bool has_snr = f.has("/snr_db");
  if (has_snr) {
    const h5::Dims d = f.shape("/snr_db");
    if (d.size() != 1 || d[0] != hsize_t(m.frames))
      throw InputError(fmt::format("{}: has shape {}; expected one value per frame ([{}])",
                                   f.where("/snr_db"), shape_string(d), m.frames));
  }
  const int frames = options.max_frames > 0 ? std::min(options.max_frames, m.frames) : m.frames;
  // One frame stored as [K, T, R] (or [nx, ny, nz]) has no frame axis: read it whole.
  auto rows = [&](const std::string& name) -> std::vector<cfloat> {
    if (m.single_frame || frames == m.frames) return f.read<cfloat>(name).data;
    return f.read_rows<cfloat>(name, 0, hsize_t(frames)).data;
  };
  m.measurements = rows("/measurements");
  check_finite(m.measurements, f, "/measurements");
  if (options.load_targets && has_targets) {
    m.targets = rows("/targets");
    check_finite(m.targets, f, "/targets");
  }
  if (has_snr) {
    const auto snr = frames == m.frames ? f.read<float>("/snr_db") : f.read_rows<float>("/snr_db", 0, frames);
    m.snr_db = snr.data;
  }
  m.frames = frames;
  return m;
}

void write_measurements(const std::string& path, const MeasurementSet& m,
                        const MeasurementWriteOptions& options) {
  const RadarSystem& s = m.system;
  require(m.measurements.size() == s.samples_per_frame() * m.frames,
          fmt::format("{}: internal error: {} measurement samples for {} frames", path, m.measurements.size(),
                      m.frames));
  // Never write what the reader would refuse (for example noise so strong that it overflows float32).
  for (const auto* values : {&m.measurements, &m.targets})
    for (const cfloat& v : *values)
      if (!std::isfinite(v.real()) || !std::isfinite(v.imag()))
        throw InputError(
            fmt::format("{}: {} would hold non-finite values (is the SNR too low?); nothing was "
                        "written",
                        path, values == &m.measurements ? "/measurements" : "/targets"));
  AtomicOutput out(path, options.overwrite);
  {
    h5::File f(out.temporary_path(), h5::File::Mode::Create, path);
    f.set_attribute("/", "nfmimo_format", std::string("measurements"));
    f.set_attribute("/", "nfmimo_version", static_cast<long long>(kFormatVersion));
    write_system(f, s);
    if (m.grid) write_grid(f, *m.grid);
    h5::Dims dims = {hsize_t(m.frames), hsize_t(s.frequencies()), hsize_t(s.transmitters()),
                     hsize_t(s.receivers())};
    if (m.single_frame) dims.erase(dims.begin());
    h5::WriteOptions wo;
    wo.gzip_level = options.gzip_level;
    f.write<cfloat>("/measurements", dims, m.measurements.data(), wo);
    f.set_attribute("/measurements", "index_order", std::string("N, frequency, transmitter, receiver"));
    if (!m.targets.empty()) {
      require(m.grid.has_value(), "targets need a grid");
      const h5::Dims td = {hsize_t(m.frames), hsize_t(m.grid->x().size), hsize_t(m.grid->y().size),
                           hsize_t(m.grid->z().size)};
      f.write<cfloat>("/targets", td, m.targets.data(), wo);
      f.set_attribute("/targets", "index_order", std::string("N, x, y, z (z fastest)"));
    }
    if (!m.snr_db.empty()) {
      f.write<float>("/snr_db", h5::Dims{m.snr_db.size()}, m.snr_db.data());
      f.set_attribute("/snr_db", "units", std::string("dB"));
    }
    if (options.extra) options.extra(f);
    f.close();
  }
  out.commit();
}

void write_volumes(const std::string& path, const VolumeSet& v, bool overwrite) {
  const std::size_t expected = v.grid.voxels() * v.frames;
  require(v.complex.empty() ? v.magnitude.size() == expected : v.complex.size() == expected,
          fmt::format("{}: internal error: volume buffer size does not match the grid", path));
  // A reconstruction can overflow float32 for an extreme system (a frequency of 1e300 Hz, an antenna
  // kilometres away): refuse it rather than write volumes nobody can use.
  const auto finite = [](const auto& x) {
    if constexpr (std::is_same_v<std::decay_t<decltype(x)>, float>)
      return std::isfinite(x);
    else
      return std::isfinite(x.real()) && std::isfinite(x.imag());
  };
  const bool ok = v.complex.empty() ? std::all_of(v.magnitude.begin(), v.magnitude.end(), finite)
                                    : std::all_of(v.complex.begin(), v.complex.end(), finite);
  require(ok,
          fmt::format("{}: the {} reconstruction holds non-finite values (check the file's frequencies and "
                      "antenna positions); nothing was written",
                      path, v.method));
  AtomicOutput out(path, overwrite);
  {
    h5::File f(out.temporary_path(), h5::File::Mode::Create, path);
    f.set_attribute("/", "nfmimo_format", std::string("volumes"));
    f.set_attribute("/", "nfmimo_version", static_cast<long long>(kFormatVersion));
    write_grid(f, v.grid);
    const h5::Dims dims = {hsize_t(v.frames), hsize_t(v.grid.x().size), hsize_t(v.grid.y().size),
                           hsize_t(v.grid.z().size)};
    if (v.complex.empty())
      f.write<float>("/volumes", dims, v.magnitude.data());
    else
      f.write<cfloat>("/volumes", dims, v.complex.data());
    f.set_attribute("/volumes", "index_order", std::string("N, x, y, z (z fastest)"));
    f.set_attribute("/volumes", "units",
                    std::string(v.complex.empty() ? "reflectivity magnitude (arbitrary units)"
                                                  : "complex reflectivity (arbitrary units)"));
    f.set_attribute("/", "method", v.method);
    f.set_attribute("/", "source", v.source);
    f.set_attribute("/", "device", v.device);
    if (!v.extra_json.empty()) f.set_attribute("/", "details", v.extra_json);
    f.close();
  }
  out.commit();
}

VolumeSet read_volumes(const std::string& path) {
  const h5::File f(path, h5::File::Mode::Read);
  check_format(f, "volumes");
  VolumeSet v;
  auto grid = read_grid(f);
  if (!grid) throw InputError(fmt::format("{}: /grid is missing", path));
  v.grid = *grid;
  const h5::Dims d = f.shape("/volumes");
  const h5::Dims tail = {hsize_t(v.grid.x().size), hsize_t(v.grid.y().size), hsize_t(v.grid.z().size)};
  if (d.size() != 4 || !std::equal(tail.begin(), tail.end(), d.begin() + 1))
    throw InputError(fmt::format("{}: has shape {}; expected [N, {}, {}, {}] from /grid", f.where("/volumes"),
                                 shape_string(d), tail[0], tail[1], tail[2]));
  v.frames = static_cast<int>(d[0]);
  if (f.is_complex("/volumes"))
    v.complex = f.read<cfloat>("/volumes").data;
  else
    v.magnitude = f.read<float>("/volumes").data;
  v.method = f.string_attribute("/", "method").value_or("");
  v.source = f.string_attribute("/", "source").value_or("");
  v.device = f.string_attribute("/", "device").value_or("");
  v.extra_json = f.string_attribute("/", "details").value_or("");
  return v;
}

}  // namespace nfmimo
