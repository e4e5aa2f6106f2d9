#include "radar/system.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "radar/error.hpp"

namespace nfmimo {
namespace {

std::vector<double> linspace_values(double first, double last, int count) {
  std::vector<double> v(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) v[i] = count == 1 ? first : first + (last - first) * i / (count - 1);
  return v;
}

bool close(double a, double b, double scale, double rel_tol) { return std::abs(a - b) <= rel_tol * scale; }

std::optional<std::string> compare_positions(const std::vector<Vec3>& a, const std::vector<Vec3>& b,
                                             const char* what, double rel_tol) {
  if (a.size() != b.size()) return fmt::format("{} count differs: {} vs {}", what, a.size(), b.size());
  double scale = 1e-12;
  for (const auto& p : a) scale = std::max({scale, std::abs(p.x), std::abs(p.y), std::abs(p.z)});
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!close(a[i].x, b[i].x, scale, rel_tol) || !close(a[i].y, b[i].y, scale, rel_tol) ||
        !close(a[i].z, b[i].z, scale, rel_tol))
      return fmt::format("{} {} differs: ({}, {}, {}) vs ({}, {}, {}) m", what, i, a[i].x, a[i].y, a[i].z,
                         b[i].x, b[i].y, b[i].z);
  }
  return std::nullopt;
}

std::optional<std::string> compare_axis(const Axis& a, const Axis& b, const char* name, double rel_tol) {
  if (a.size != b.size) return fmt::format("grid axis {} has {} vs {} points", name, a.size, b.size);
  const double scale = std::max({std::abs(a.start), std::abs(a.last()), std::abs(a.step), 1e-12});
  if (!close(a.start, b.start, scale, rel_tol) || !close(a.last(), b.last(), scale, rel_tol))
    return fmt::format("grid axis {} spans [{}, {}] vs [{}, {}] m", name, a.start, a.last(), b.start,
                       b.last());
  return std::nullopt;
}

}  // namespace

ArrayGeometry::ArrayGeometry(std::vector<Vec3> tx, std::vector<Vec3> rx)
    : tx_(std::move(tx)), rx_(std::move(rx)) {}

ArrayGeometry ArrayGeometry::paper_cross(int transmitters, int receivers, double half_aperture) {
  std::vector<Vec3> tx, rx;
  for (double a : linspace_values(-half_aperture, half_aperture, transmitters)) tx.push_back({a, -a, 0.0});
  for (double a : linspace_values(-half_aperture, half_aperture, receivers)) rx.push_back({a, a, 0.0});
  return ArrayGeometry(std::move(tx), std::move(rx));
}

FrequencySweep::FrequencySweep(std::vector<double> frequencies_hz) : f_(std::move(frequencies_hz)) {
  const int k = size();
  if (k == 0) return;
  step_ = k > 1 ? (f_.back() - f_.front()) / (k - 1) : 0.0;
  double scale = 0;
  for (double f : f_) scale = std::max(scale, std::abs(f));
  uniform_ = true;
  for (int i = 0; i < k; ++i)
    if (std::abs(f_[i] - (f_.front() + i * step_)) > 1e-9 * scale) uniform_ = false;
  if (k > 1 && step_ <= 0) uniform_ = false;
}

FrequencySweep FrequencySweep::linspace(double first_hz, double last_hz, int count) {
  return FrequencySweep(linspace_values(first_hz, last_hz, count));
}

Axis Axis::linspace(double first, double last, int count) {
  require(count >= 1, fmt::format("an axis needs at least one point (got {})", count));
  return Axis{first, count > 1 ? (last - first) / (count - 1) : 0.0, count};
}

Axis Axis::from_values(const std::vector<double>& v, const std::string& what) {
  require(!v.empty(), fmt::format("{}: the axis is empty", what));
  for (double value : v)
    require(std::isfinite(value), fmt::format("{}: the axis holds a non-finite value", what));
  Axis axis = Axis::linspace(v.front(), v.back(), static_cast<int>(v.size()));
  const double scale = std::max({std::abs(v.front()), std::abs(v.back()), std::abs(axis.step)});
  for (std::size_t i = 0; i < v.size(); ++i)
    require(std::abs(v[i] - axis[static_cast<int>(i)]) <= 1e-6 * scale,
            fmt::format("{}: the axis is not uniformly spaced (value {} is {}, expected {})", what, i, v[i],
                        axis[static_cast<int>(i)]));
  require(v.size() == 1 || axis.step > 0, fmt::format("{}: the axis must be increasing", what));
  return axis;
}

std::vector<double> Axis::values() const {
  std::vector<double> v(static_cast<std::size_t>(size));
  for (int i = 0; i < size; ++i) v[i] = (*this)[i];
  return v;
}

ImagingGrid::ImagingGrid(Axis x, Axis y, Axis z) : x_(x), y_(y), z_(z) {}

ImagingGrid ImagingGrid::paper() {
  return ImagingGrid(Axis::linspace(-0.15, 0.15, 25), Axis::linspace(-0.15, 0.15, 25),
                     Axis::linspace(0.35, 0.65, 49));
}

RadarSystem paper_system(int frequencies) {
  require(frequencies >= 1 && frequencies <= kMaxNamedFrequencies,
          fmt::format("--freqs: the number of frequencies must be in 1..{} (got {})", kMaxNamedFrequencies,
                      frequencies));
  return RadarSystem{ArrayGeometry::paper_cross(), FrequencySweep::linspace(4e9, 16e9, frequencies)};
}

RadarSystem named_system(const std::string& name, int frequencies) {
  if (name == "paper") return paper_system(frequencies);
  throw InputError(fmt::format("unknown system '{}' (known: paper)", name));
}

void validate_system(const RadarSystem& s, const std::string& source) {
  require(s.transmitters() > 0, fmt::format("{}: the system has no transmitters", source));
  require(s.receivers() > 0, fmt::format("{}: the system has no receivers", source));
  require(s.frequencies() > 0, fmt::format("{}: the system has no frequencies", source));
  for (int k = 0; k < s.frequencies(); ++k)
    require(std::isfinite(s.sweep[k]) && s.sweep[k] > 0,
            fmt::format("{}: frequency {} is {} Hz; frequencies must be positive and finite", source, k,
                        s.sweep[k]));
  auto check = [&](const std::vector<Vec3>& p, const char* what) {
    for (std::size_t i = 0; i < p.size(); ++i)
      require(std::isfinite(p[i].x) && std::isfinite(p[i].y) && std::isfinite(p[i].z),
              fmt::format("{}: {} position {} is not finite", source, what, i));
  };
  check(s.array.tx(), "transmitter");
  check(s.array.rx(), "receiver");
}

void validate_grid(const ImagingGrid& g, const RadarSystem& s, const std::string& source) {
  for (const Axis* a : {&g.x(), &g.y(), &g.z()}) {
    require(a->size > 0, fmt::format("{}: a grid axis is empty", source));
    require(std::isfinite(a->start) && std::isfinite(a->step),
            fmt::format("{}: a grid axis is not finite", source));
  }
  // A voxel within 1 um of an antenna makes 1/R explode: refuse it rather than return infinities.
  constexpr double min_range = 1e-6;
  auto check = [&](const std::vector<Vec3>& antennas, const char* what) {
    for (std::size_t i = 0; i < antennas.size(); ++i) {
      const Vec3& p = antennas[i];
      // Nearest grid point to the antenna on each axis (grid is a tensor product of uniform axes).
      auto nearest = [](const Axis& a, double v) {
        if (a.size == 1 || a.step == 0) return a.start;
        const double t = std::clamp(std::round((v - a.start) / a.step), 0.0, double(a.size - 1));
        return a[static_cast<int>(t)];
      };
      const double dx = nearest(g.x(), p.x) - p.x, dy = nearest(g.y(), p.y) - p.y,
                   dz = nearest(g.z(), p.z) - p.z;
      require(
          std::sqrt(dx * dx + dy * dy + dz * dz) > min_range,
          fmt::format("{}: a grid point lies on {} {} at ({}, {}, {}) m; move the grid away from the array",
                      source, what, i, p.x, p.y, p.z));
    }
  };
  check(s.array.tx(), "transmitter");
  check(s.array.rx(), "receiver");
}

std::optional<std::string> describe_difference(const RadarSystem& a, const RadarSystem& b, double rel_tol) {
  if (a.frequencies() != b.frequencies())
    return fmt::format("frequency count differs: {} vs {}", a.frequencies(), b.frequencies());
  double scale = 0;
  for (double f : a.sweep.frequencies()) scale = std::max(scale, std::abs(f));
  for (int k = 0; k < a.frequencies(); ++k)
    if (!close(a.sweep[k], b.sweep[k], scale, rel_tol))
      return fmt::format("frequency {} differs: {} vs {} Hz", k, a.sweep[k], b.sweep[k]);
  if (auto d = compare_positions(a.array.tx(), b.array.tx(), "transmitter", rel_tol)) return d;
  if (auto d = compare_positions(a.array.rx(), b.array.rx(), "receiver", rel_tol)) return d;
  return std::nullopt;
}

std::optional<std::string> describe_difference(const ImagingGrid& a, const ImagingGrid& b, double rel_tol) {
  if (auto d = compare_axis(a.x(), b.x(), "x", rel_tol)) return d;
  if (auto d = compare_axis(a.y(), b.y(), "y", rel_tol)) return d;
  if (auto d = compare_axis(a.z(), b.z(), "z", rel_tol)) return d;
  return std::nullopt;
}

std::string describe(const RadarSystem& s) {
  return fmt::format(
      "{} TX x {} RX, {} frequencies {:.4g}-{:.4g} GHz ({})", s.transmitters(), s.receivers(),
      s.frequencies(), s.sweep.frequencies().front() / 1e9, s.sweep.frequencies().back() / 1e9,
      s.sweep.uniform() ? fmt::format("uniform step {:.4g} MHz", s.sweep.step() / 1e6) : "non-uniform");
}

std::string describe(const ImagingGrid& g) {
  return fmt::format("{} x {} x {} voxels, x [{:.4g}, {:.4g}] y [{:.4g}, {:.4g}] z [{:.4g}, {:.4g}] m",
                     g.x().size, g.y().size, g.z().size, g.x().start, g.x().last(), g.y().start, g.y().last(),
                     g.z().start, g.z().last());
}

}  // namespace nfmimo
