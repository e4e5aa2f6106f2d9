#include "tools/python/src/arrays.hpp"

#include <limits>

namespace nfmimo::python {

std::string shape_text(const nb::ndarray<nb::ro>& a) {
  std::string s = "(";
  for (std::size_t i = 0; i < a.ndim(); ++i) s += fmt::format("{}{}", i ? ", " : "", a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string dims_text(const std::vector<std::size_t>& dims) {
  std::string s;
  for (std::size_t i = 0; i < dims.size(); ++i) s += fmt::format("{}{}", i ? ", " : "", dims[i]);
  return s;
}

std::vector<std::size_t> volume_dims(const ImagingGrid& g) {
  return {std::size_t(g.x().size), std::size_t(g.y().size), std::size_t(g.z().size)};
}

std::pair<const cfloat*, int> host_measurements(const InArray& y, const RadarSystem& system) {
  require(y.device_type() == kDlCpu, "y: expected a host (cpu) array");
  const std::size_t frames =
      check_array<cfloat>(y, "y",
                          {std::size_t(system.frequencies()), std::size_t(system.transmitters()),
                           std::size_t(system.receivers())},
                          "complex64");
  require(frames <= std::size_t(std::numeric_limits<int>::max()), "y: too many frames");
  return {static_cast<const cfloat*>(y.data()), static_cast<int>(frames)};
}

}  // namespace nfmimo::python
