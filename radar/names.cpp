#include "radar/names.hpp"

#include <fmt/format.h>

#include "radar/error.hpp"

namespace nfmimo {

std::string to_string(Method m) {
  switch (m) {
    case Method::Adjoint:
      return "adjoint";
    case Method::Backprojection:
      return "backprojection";
    case Method::Kirchhoff:
      return "kirchhoff";
  }
  return "unknown";
}

std::string to_string(ImagingMode m) { return m == ImagingMode::Exact ? "exact" : "fast"; }

Method parse_method(const std::string& name) {
  for (Method m : {Method::Adjoint, Method::Backprojection, Method::Kirchhoff})
    if (name == to_string(m)) return m;
  throw InputError(fmt::format(
      "unknown imaging method '{}' (analytic methods: adjoint, backprojection, kirchhoff)", name));
}

ImagingMode parse_mode(const std::string& name) {
  if (name == "exact") return ImagingMode::Exact;
  if (name == "fast") return ImagingMode::Fast;
  throw InputError(fmt::format("unknown mode '{}' (exact, fast)", name));
}

}  // namespace nfmimo
