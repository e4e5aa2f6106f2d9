#include "data/provenance.hpp"

#include <sstream>

#include <fmt/format.h>

#include "data/hdf5.hpp"
#include "radar/error.hpp"

namespace nfmimo {

namespace {
constexpr const char* kAxisNames = "xyz";
}

std::string AxisMap::text() const {
  std::string s;
  for (int i = 0; i < 3; ++i)
    s += fmt::format("{}{}{}", i ? "," : "", sign[i] < 0 ? "-" : "", kAxisNames[source[i]]);
  return s;
}

std::string AxisMap::description() const {
  std::string s;
  for (int i = 0; i < 3; ++i)
    s += fmt::format("{}{} = {}file {}", i ? ", " : "", kAxisNames[i], sign[i] < 0 ? "-" : "",
                     kAxisNames[source[i]]);
  return s;
}

std::array<std::array<double, 3>, 3> AxisMap::matrix() const {
  std::array<std::array<double, 3>, 3> m{};
  for (int i = 0; i < 3; ++i) m[i][source[i]] = sign[i];
  return m;
}

std::array<double, 3> AxisMap::apply(const std::array<double, 3>& old) const {
  return {sign[0] * old[source[0]], sign[1] * old[source[1]], sign[2] * old[source[2]]};
}

AxisMap parse_axis_map(const std::string& text, const std::string& option) {
  AxisMap m;
  std::stringstream parts(text);
  std::string part;
  std::array<bool, 3> used{};
  int i = 0;
  const auto bad = [&](const std::string& why) {
    return InputError(
        fmt::format("{}: '{}' {}; expected three of x, y, z, each once, each optionally with a "
                    "sign, naming for the output x, y, z the file's axis (example: x,z,y)",
                    option, text, why));
  };
  while (std::getline(parts, part, ',')) {
    if (i == 3) throw bad("has more than three axes");
    int sign = 1;
    if (!part.empty() && (part[0] == '-' || part[0] == '+')) {
      sign = part[0] == '-' ? -1 : 1;
      part.erase(0, 1);
    }
    if (part.size() != 1 || part[0] < 'x' || part[0] > 'z') throw bad(fmt::format("has the axis '{}'", part));
    const int axis = part[0] - 'x';
    if (used[axis]) throw bad(fmt::format("uses {} twice", part));
    used[axis] = true;
    m.source[i] = axis;
    m.sign[i] = sign;
    ++i;
  }
  if (i != 3) throw bad("does not name three axes");
  return m;
}

void write_provenance(h5::File& f, const ImportProvenance& p) {
  f.write<std::int64_t>("/provenance/frequency_indices", h5::Dims{p.frequency_indices.size()},
                        p.frequency_indices.data());
  f.set_attribute(
      "/provenance/frequency_indices", "meaning",
      std::string("0-based indices into the source file's frequency axis (MATLAB index = value + 1)"));
  std::vector<double> matrix;
  for (const auto& row : p.axes.matrix()) matrix.insert(matrix.end(), row.begin(), row.end());
  f.write<double>("/provenance/axis_matrix", h5::Dims{3, 3}, matrix.data());
  f.set_attribute("/provenance/axis_matrix", "meaning",
                  std::string("position_nfmimo = axis_matrix @ position_file (after the unit conversion)"));
  f.set_attribute("/provenance", "importer", p.importer);
  f.set_attribute("/provenance", "source_file", p.source_file);
  f.set_attribute("/provenance", "source_format", p.source_format);
  f.set_attribute("/provenance", "source_frequency_count", p.source_frequency_count);
  f.set_attribute("/provenance", "axis_map", p.axes.text());
  f.set_attribute("/provenance", "axis_map_description", p.axes.description());
  for (const auto& [role, name] : p.fields) f.set_attribute("/provenance", "field_" + role, name);
  std::string assumptions;
  for (const auto& a : p.assumptions) assumptions += a + "\n";
  f.set_attribute("/provenance", "assumptions", assumptions);
}

}  // namespace nfmimo
