// Radar systems and imaging grids in Python: built from arrays or axes, read from files, pickled.
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <optional>
#include <tuple>

#include "data/hdf5.hpp"
#include "data/measurement_file.hpp"
#include "radar/names.hpp"
#include "tools/python/src/arrays.hpp"
#include "tools/python/src/bindings.hpp"

using namespace nb::literals;

namespace nfmimo::python {
namespace {

std::vector<double> array_values(const nb::ndarray<nb::ro>& a, const std::string& what, std::size_t columns) {
  require(a.device_type() == kDlCpu, fmt::format("{}: expected a host (cpu) array", what));
  require(a.dtype() == nb::dtype<double>(), fmt::format("{}: expected dtype float64", what));
  const std::vector<std::size_t> trailing =
      columns ? std::vector<std::size_t>{columns} : std::vector<std::size_t>{};
  if (columns)
    require(a.ndim() == 2, fmt::format("{}: expected shape (n, {}), got {}", what, columns, shape_text(a)));
  else
    require(a.ndim() == 1, fmt::format("{}: expected a 1-D array, got shape {}", what, shape_text(a)));
  check_array<double>(a, what, trailing, "float64");
  const auto* p = static_cast<const double*>(a.data());
  return std::vector<double>(p, p + a.size());
}

std::vector<Vec3> positions(const nb::ndarray<nb::ro>& a, const std::string& what) {
  const std::vector<double> v = array_values(a, what, 3);
  std::vector<Vec3> out(v.size() / 3);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = {v[3 * i], v[3 * i + 1], v[3 * i + 2]};
  return out;
}

nb::ndarray<nb::numpy, double> positions_array(const std::vector<Vec3>& p) {
  std::vector<double> v;
  for (const Vec3& q : p) v.insert(v.end(), {q.x, q.y, q.z});
  return to_numpy(std::move(v), {p.size(), 3});
}

RadarSystem system_from_arrays(InArray tx, InArray rx, InArray freqs) {
  RadarSystem s;
  s.array = ArrayGeometry(positions(tx, "tx_positions"), positions(rx, "rx_positions"));
  s.sweep = FrequencySweep(array_values(freqs, "frequencies", 0));
  validate_system(s, "system");
  return s;
}

ImagingGrid grid_from_axes(InArray x, InArray y, InArray z) {
  return ImagingGrid(Axis::from_values(array_values(x, "x", 0), "grid x"),
                     Axis::from_values(array_values(y, "y", 0), "grid y"),
                     Axis::from_values(array_values(z, "z", 0), "grid z"));
}

nb::tuple read_any_system(const std::string& path) {
  const h5::File f(path, h5::File::Mode::Read);
  const RadarSystem s = read_system(f);
  const std::optional<ImagingGrid> g = read_grid(f);
  return nb::make_tuple(s, g ? nb::cast(*g) : nb::none());
}

std::vector<double> vec3_flat(const std::vector<Vec3>& p) {
  std::vector<double> v;
  for (const Vec3& q : p) v.insert(v.end(), {q.x, q.y, q.z});
  return v;
}
std::vector<Vec3> vec3_unflat(const std::vector<double>& v) {
  std::vector<Vec3> p(v.size() / 3);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = {v[3 * i], v[3 * i + 1], v[3 * i + 2]};
  return p;
}

}  // namespace

void bind_geometry(nb::module_& m) {
  nb::class_<RadarSystem>(m, "System")
      .def_prop_ro("tx_positions", [](const RadarSystem& s) { return owned(positions_array(s.array.tx())); })
      .def_prop_ro("rx_positions", [](const RadarSystem& s) { return owned(positions_array(s.array.rx())); })
      .def_prop_ro("frequencies",
                   [](const RadarSystem& s) {
                     std::vector<double> f = s.sweep.frequencies();
                     const std::size_t n = f.size();
                     return owned(to_numpy(std::move(f), {n}));
                   })
      .def_prop_ro("measurement_shape",
                   [](const RadarSystem& s) {
                     return std::make_tuple(s.frequencies(), s.transmitters(), s.receivers());
                   })
      .def_prop_ro("uniform_frequencies", [](const RadarSystem& s) { return s.sweep.uniform(); })
      .def("__repr__", [](const RadarSystem& s) { return "nfmimo.System(" + describe(s) + ")"; })
      .def("__eq__",
           [](const RadarSystem& a, const RadarSystem& b) { return !describe_difference(a, b, 0.0); })
      .def("__getstate__",
           [](const RadarSystem& s) {
             return std::make_tuple(vec3_flat(s.array.tx()), vec3_flat(s.array.rx()), s.sweep.frequencies());
           })
      .def("__setstate__",
           [](RadarSystem& s,
              const std::tuple<std::vector<double>, std::vector<double>, std::vector<double>>& t) {
             new (&s) RadarSystem{ArrayGeometry(vec3_unflat(std::get<0>(t)), vec3_unflat(std::get<1>(t))),
                                  FrequencySweep(std::get<2>(t))};
           });

  nb::class_<ImagingGrid>(m, "Grid")
      .def_prop_ro(
          "x",
          [](const ImagingGrid& g) { return owned(to_numpy(g.x().values(), {std::size_t(g.x().size)})); })
      .def_prop_ro(
          "y",
          [](const ImagingGrid& g) { return owned(to_numpy(g.y().values(), {std::size_t(g.y().size)})); })
      .def_prop_ro(
          "z",
          [](const ImagingGrid& g) { return owned(to_numpy(g.z().values(), {std::size_t(g.z().size)})); })
      .def_prop_ro("shape",
                   [](const ImagingGrid& g) { return std::make_tuple(g.x().size, g.y().size, g.z().size); })
      .def("__repr__", [](const ImagingGrid& g) { return "nfmimo.Grid(" + describe(g) + ")"; })
      .def("__eq__",
           [](const ImagingGrid& a, const ImagingGrid& b) { return !describe_difference(a, b, 0.0); })
      .def("__getstate__",
           [](const ImagingGrid& g) {
             auto axis = [](const Axis& a) { return std::make_tuple(a.start, a.step, a.size); };
             return std::make_tuple(axis(g.x()), axis(g.y()), axis(g.z()));
           })
      .def("__setstate__",
           [](ImagingGrid& g,
              const std::tuple<std::tuple<double, double, int>, std::tuple<double, double, int>,
                               std::tuple<double, double, int>>& t) {
             auto axis = [](const std::tuple<double, double, int>& a) {
               return Axis{std::get<0>(a), std::get<1>(a), std::get<2>(a)};
             };
             new (&g) ImagingGrid(axis(std::get<0>(t)), axis(std::get<1>(t)), axis(std::get<2>(t)));
           });

  m.def("paper_system", &paper_system, "frequencies"_a = 15);
  m.def("paper_grid", &ImagingGrid::paper);
  m.def("system_from_arrays", &system_from_arrays, "tx_positions"_a, "rx_positions"_a, "frequencies"_a);
  m.def("grid_from_axes", &grid_from_axes, "x"_a, "y"_a, "z"_a);
  m.def("grid_linspace", [](double x0, double x1, int nx, double y0, double y1, int ny, double z0, double z1,
                            int nz) {
    require(nx >= 1 && ny >= 1 && nz >= 1, "grid: every axis needs at least one point");
    return ImagingGrid(Axis::linspace(x0, x1, nx), Axis::linspace(y0, y1, ny), Axis::linspace(z0, z1, nz));
  });
  m.def("read_system", &read_any_system, "path"_a);
  m.def("validate_grid", [](const ImagingGrid& g, const RadarSystem& s) { validate_grid(g, s, "grid"); });
}

}  // namespace nfmimo::python
