#include "data/tudelft.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>

#include <fmt/format.h>

#include "data/mat_file.hpp"
#include "radar/error.hpp"

namespace nfmimo {

std::vector<int> select_frequencies(const std::vector<double>& f, const FrequencySelection& s,
                                    const std::string& source) {
  std::vector<int> candidates;
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (s.range_hz) {
      // A relative slack of 1e-9 so that a range typed in GHz includes a frequency stored as 4e9 + rounding.
      const double slack = 1e-9 * std::max(std::abs(s.range_hz->first), std::abs(s.range_hz->second));
      if (f[i] < s.range_hz->first - slack || f[i] > s.range_hz->second + slack) continue;
    }
    candidates.push_back(int(i));
  }
  if (candidates.empty())
    throw InputError(
        fmt::format("{}: no frequency lies in --freq-range {:.6g}:{:.6g} Hz (the file holds {:.6g} "
                    "to {:.6g} Hz)",
                    source, s.range_hz->first, s.range_hz->second, f.front(), f.back()));
  if (!s.count) return candidates;
  const long long k = *s.count, m = static_cast<long long>(candidates.size());
  require(k >= 1, fmt::format("--freqs must be positive (got {})", k));
  if (k > m)
    throw InputError(fmt::format("{}: --freqs {} asks for more frequencies than the {} the file holds{}",
                                 source, k, m, s.range_hz ? " in --freq-range" : ""));
  if (k == 1) return {candidates.front()};
  std::vector<int> chosen;
  for (long long j = 0; j < k; ++j) chosen.push_back(candidates[(2 * j * (m - 1) + (k - 1)) / (2 * (k - 1))]);
  return chosen;
}

namespace {

double unit_factor(const std::string& unit, const std::vector<std::pair<const char*, double>>& table,
                   const std::string& option) {
  std::string names;
  for (const auto& [name, factor] : table) {
    if (unit == name) return factor;
    names += (names.empty() ? "" : ", ") + std::string(name);
  }
  throw InputError(fmt::format("{}: unknown unit '{}' (one of {})", option, unit, names));
}

double parse_frequency(const std::string& text, const std::string& option) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    throw InputError(fmt::format("{}: '{}' is not a frequency (examples: 4e9, 4GHz)", option, text));
  }
  const std::string unit = text.substr(used);
  const double factor = unit.empty() ? 1.0 : frequency_unit_factor(unit, option);
  require(std::isfinite(v) && v >= 0, fmt::format("{}: '{}' is not a non-negative frequency", option, text));
  return v * factor;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

// The first of `spellings` the file has; InputError naming them all when none is there.
std::string pick_field(const MatFile& file, const std::vector<std::string>& spellings,
                       const std::string& what) {
  for (const auto& name : spellings)
    if (file.has(name)) return name;
  std::vector<std::string> quoted;
  for (const auto& s : spellings) quoted.push_back("'" + s + "'");
  throw InputError(fmt::format("{}: field {} is missing ({}; the TU Delft files spell it {})", file.path(),
                               quoted.front(), what, join(quoted, " or ")));
}

// A vector (every dimension 1 but at most one) of finite values.
std::vector<double> read_vector(const MatFile& file, const std::string& field, const std::string& what) {
  const MatArray a = file.read(field);
  if (a.complex) throw InputError(fmt::format("{}: is complex; expected real {}", file.where(field), what));
  int long_dims = 0;
  for (std::size_t d : a.dims) long_dims += d != 1;
  if (long_dims > 1 || a.numel() == 0)
    throw InputError(
        fmt::format("{}: has shape {}; expected a vector of {}", file.where(field), a.shape(), what));
  for (std::size_t i = 0; i < a.real.size(); ++i)
    if (!std::isfinite(a.real[i]))
      throw InputError(
          fmt::format("{}: element {} (MATLAB index {}) is not finite", file.where(field), i, i + 1));
  return a.real;
}

struct Antennas {
  std::vector<Vec3> positions;
  std::vector<std::string> fields;
};

Antennas read_antennas(const MatFile& file, const std::string& side, const std::string& prefix,
                       double metres_per_unit, const AxisMap& axes) {
  const std::string base = "MIMOArray." + side + ".";
  std::array<std::string, 3> fields;
  const char* names[3] = {"X", "Y", "Z"};
  for (int a = 0; a < 3; ++a)
    fields[a] = pick_field(file, {base + names[a], base + prefix + names[a]},
                           fmt::format("the {} {} coordinates", side, names[a]));
  std::array<std::vector<double>, 3> c;
  for (int a = 0; a < 3; ++a)
    c[a] = read_vector(file, fields[a], fmt::format("{} {} positions", side, names[a]));
  if (c[1].size() != c[0].size() || c[2].size() != c[0].size())
    throw InputError(fmt::format("{}: the {} coordinates disagree in length: {} has {}, {} has {}, {} has {}",
                                 file.path(), side, fields[0], c[0].size(), fields[1], c[1].size(), fields[2],
                                 c[2].size()));
  Antennas out;
  for (std::size_t i = 0; i < c[0].size(); ++i) {
    const auto p =
        axes.apply({c[0][i] * metres_per_unit, c[1][i] * metres_per_unit, c[2][i] * metres_per_unit});
    out.positions.push_back({p[0], p[1], p[2]});
  }
  out.fields.assign(fields.begin(), fields.end());
  return out;
}

}  // namespace

double frequency_unit_factor(const std::string& unit, const std::string& option) {
  return unit_factor(unit, {{"Hz", 1.0}, {"kHz", 1e3}, {"MHz", 1e6}, {"GHz", 1e9}}, option);
}

double length_unit_factor(const std::string& unit, const std::string& option) {
  return unit_factor(unit, {{"m", 1.0}, {"cm", 1e-2}, {"mm", 1e-3}}, option);
}

std::pair<double, double> parse_frequency_range(const std::string& text, const std::string& option) {
  const auto colon = text.find(':');
  require(colon != std::string::npos && text.find(':', colon + 1) == std::string::npos,
          fmt::format("{}: '{}' is not LO:HI (examples: 4e9:16e9, 4GHz:16GHz)", option, text));
  const double lo = parse_frequency(text.substr(0, colon), option);
  const double hi = parse_frequency(text.substr(colon + 1), option);
  require(hi >= lo, fmt::format("{}: '{}' has LO above HI", option, text));
  return {lo, hi};
}

std::pair<ImagingGrid, std::string> default_grid_for(const ArrayGeometry& array) {
  double lo[2] = {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()};
  double hi[2] = {-lo[0], -lo[1]};
  double z = 0;
  std::size_t n = 0;
  for (const auto* side : {&array.tx(), &array.rx()})
    for (const Vec3& p : *side) {
      lo[0] = std::min(lo[0], p.x), hi[0] = std::max(hi[0], p.x);
      lo[1] = std::min(lo[1], p.y), hi[1] = std::max(hi[1], p.y);
      z += p.z;
      ++n;
    }
  z /= double(n);
  Axis axes[2];
  for (int a = 0; a < 2; ++a) {
    const double centre = 0.5 * (lo[a] + hi[a]), half = std::max(0.5 * (hi[a] - lo[a]), 0.15);
    axes[a] = Axis::linspace(centre - half, centre + half, 25);
  }
  const ImagingGrid grid(axes[0], axes[1], Axis::linspace(z + 0.35, z + 0.65, 49));
  return {grid,
          fmt::format("no --grid: x and y span the antennas' bounding box (at least +-0.15 m around its "
                      "centre) with 25 points, z spans 0.35 to 0.65 m in front of the array (mean antenna "
                      "z = {:.4g} m) with 49 points: {}; give --grid for your scene",
                      z, describe(grid))};
}

ImportResult import_tudelft(const std::string& path, const TuDelftImportOptions& o) {
  const auto file = open_mat_file(path);
  ImportResult result;
  ImportProvenance& p = result.provenance;
  p.importer = "tudelft";
  p.source_file = std::filesystem::absolute(path).lexically_normal().string();
  p.source_format = file->format();
  p.axes = o.axes;
  auto& notes = p.assumptions;

  // Fields, in both spellings.
  const std::string values_field =
      pick_field(*file, {"EMData.Values", "EMData"}, "the measured responses, RX x TX x frequency");
  const std::string freq_field = pick_field(*file, {"OperateFreq", "OperatingFreq"}, "the frequencies");
  const double hz = frequency_unit_factor(o.frequency_unit, "--frequency-unit");
  const double metres = length_unit_factor(o.position_unit, "--position-unit");
  const Antennas tx = read_antennas(*file, "Transmitter", "T", metres, o.axes);
  const Antennas rx = read_antennas(*file, "Receiver", "R", metres, o.axes);
  p.fields = {{"measurements", values_field}, {"frequencies", freq_field}, {"tx_x", tx.fields[0]},
              {"tx_y", tx.fields[1]},         {"tx_z", tx.fields[2]},      {"rx_x", rx.fields[0]},
              {"rx_y", rx.fields[1]},         {"rx_z", rx.fields[2]}};
  for (const char* ignored : {"MIMOArray.Transmitter.vCellArea", "MIMOArray.Receiver.vCellArea"})
    if (file->has(ignored)) notes.push_back(fmt::format("{} is present and not used", ignored));

  // Frequencies: units, plausibility, order, selection.
  std::vector<double> f = read_vector(*file, freq_field, "frequencies");
  for (double& v : f) v *= hz;
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (!(f[i] >= 1e6 && f[i] <= 1e13))
      throw InputError(
          fmt::format("{}: element {} is {:.6g} Hz after reading the file's numbers as {}, which is "
                      "no radar frequency (1 MHz to 10 THz); give --frequency-unit with the file's "
                      "unit (Hz, kHz, MHz, GHz)",
                      file->where(freq_field), i, f[i], o.frequency_unit));
    if (i && f[i] <= f[i - 1])
      throw InputError(
          fmt::format("{}: frequencies must increase, but element {} ({:.9g} Hz) follows {:.9g} Hz",
                      file->where(freq_field), i, f[i], f[i - 1]));
  }
  notes.push_back(fmt::format("frequencies: {} read in {} (--frequency-unit): {} values, {:.6g} to {:.6g} Hz",
                              freq_field, o.frequency_unit, f.size(), f.front(), f.back()));
  const std::vector<int> chosen = select_frequencies(f, o.frequencies, file->where(freq_field));
  p.source_frequency_count = static_cast<long long>(f.size());
  p.frequency_indices.assign(chosen.begin(), chosen.end());
  std::vector<double> chosen_hz;
  for (int i : chosen) chosen_hz.push_back(f[std::size_t(i)]);
  {
    std::string idx;
    for (std::size_t j = 0; j < chosen.size(); ++j) idx += (j ? " " : "") + std::to_string(chosen[j]);
    notes.push_back(fmt::format(
        "frequency selection: {} of {}{}{}: 0-based indices {} ({:.6g} to {:.6g} Hz)", chosen.size(),
        f.size(),
        o.frequencies.range_hz ? fmt::format(" in {:.6g}:{:.6g} Hz", o.frequencies.range_hz->first,
                                             o.frequencies.range_hz->second)
                               : std::string(),
        o.frequencies.count ? ", evenly spaced with both ends, index j = round-half-up(j (M-1) / (K-1))"
                            : " (all)",
        idx, chosen_hz.front(), chosen_hz.back()));
  }

  // Positions: units and plausibility (a near-field array larger than 10 m means the unit is wrong).
  const auto check_positions = [&](const Antennas& a, const char* side) {
    for (std::size_t i = 0; i < a.positions.size(); ++i) {
      const Vec3& q = a.positions[i];
      if (std::max({std::abs(q.x), std::abs(q.y), std::abs(q.z)}) > 10.0)
        throw InputError(fmt::format(
            "{}: {} {} lies {:.4g} m from the origin after reading the file's numbers "
            "as {}; give --position-unit with the file's unit (m, cm, mm)",
            path, side, i, std::max({std::abs(q.x), std::abs(q.y), std::abs(q.z)}), o.position_unit));
    }
  };
  check_positions(tx, "transmitter");
  check_positions(rx, "receiver");
  notes.push_back(fmt::format("positions read in {} (--position-unit)", o.position_unit));
  notes.push_back(fmt::format("axes (--axes {}): {}; the array should lie in x-y with the scene at +z",
                              o.axes.text(), o.axes.description()));
  double zmin = std::numeric_limits<double>::infinity(), zmax = -zmin;
  for (const auto* a : {&tx, &rx})
    for (const Vec3& q : a->positions) zmin = std::min(zmin, q.z), zmax = std::max(zmax, q.z);
  notes.push_back(fmt::format("antenna z after the remap spans {:.4g} to {:.4g} m{}", zmin, zmax,
                              zmax - zmin > 1e-3 ? " (not one plane: check --axes)" : " (one plane)"));

  // The responses: RX x TX x frequency, complex, finite where imported.
  const MatArray v = file->read(values_field);
  const std::size_t nr = rx.positions.size(), nt = tx.positions.size(), nf = f.size();
  const std::string expected =
      fmt::format("RX x TX x frequency = [{} x {} x {}] (RX from {}, TX from {}, frequencies from {})", nr,
                  nt, nf, rx.fields[0], tx.fields[0], freq_field);
  std::vector<std::size_t> dims = v.dims;
  while (dims.size() > 3 && dims.back() == 1) dims.pop_back();
  if (dims.size() == 2) dims.push_back(1);  // MATLAB drops a trailing singleton (one frequency)
  if (dims != std::vector<std::size_t>{nr, nt, nf})
    throw InputError(
        fmt::format("{}: has shape {}; expected {}", file->where(values_field), v.shape(), expected));
  if (!v.complex)
    throw InputError(fmt::format("{}: is real ({}); expected complex responses", file->where(values_field),
                                 v.matlab_class));
  notes.push_back(fmt::format("{}: {} {} read as RX x TX x frequency (MATLAB order), one frame", values_field,
                              v.matlab_class, v.shape()));
  notes.push_back(o.conjugate ? "phase convention: the file's exp(+j k R) conjugated to nfmimo's exp(-j k R) "
                                "(--conjugate)"
                              : "phase convention: the values are used as they are, taken to follow nfmimo's "
                                "exp(-j k R) (docs/physics.md); give --conjugate for exp(+j k R)");

  MeasurementSet& m = result.set;
  m.system = RadarSystem{ArrayGeometry(tx.positions, rx.positions), FrequencySweep(chosen_hz)};
  validate_system(m.system, path);
  m.frames = 1;
  m.single_frame = true;
  m.measurements.resize(chosen.size() * nt * nr);
  const double sign = o.conjugate ? -1.0 : 1.0;
  for (std::size_t k = 0; k < chosen.size(); ++k)
    for (std::size_t t = 0; t < nt; ++t)
      for (std::size_t r = 0; r < nr; ++r) {
        const std::size_t src = r + nr * (t + nt * std::size_t(chosen[k]));  // column-major (r, t, f)
        const double re = v.real[src], im = v.imag[src];
        if (!std::isfinite(re) || !std::isfinite(im))
          throw InputError(
              fmt::format("{}: element (RX {}, TX {}, frequency {}) (MATLAB index ({}, {}, {})) is not "
                          "finite ({}, {})",
                          file->where(values_field), r, t, chosen[k], r + 1, t + 1, chosen[k] + 1, re, im));
        m.measurements[(k * nt + t) * nr + r] = cfloat(float(re), float(sign * im));
      }
  notes.push_back("measurements stored as complex64 [K, T, R] (docs/formats.md)");

  if (o.grid) {
    m.grid = *o.grid;
    notes.push_back("grid (--grid): " + describe(*o.grid));
  } else {
    auto [grid, why] = default_grid_for(m.system.array);
    m.grid = grid;
    notes.push_back(why);
  }
  validate_grid(*m.grid, m.system, "--grid");
  return result;
}

}  // namespace nfmimo
