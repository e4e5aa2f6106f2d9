// Where an imported measurement file came from: the /provenance group every importer writes next to the
// measurement schema (docs/formats.md, "Imported measurements").
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nfmimo {

namespace h5 {
class File;
}

// new = matrix * old: each output axis is one source axis with a sign.
struct AxisMap {
  std::array<int, 3> source{0, 1, 2};  // which source axis (0 = x, 1 = y, 2 = z) each output axis takes
  std::array<int, 3> sign{1, 1, 1};
  std::string text() const;         // "x,z,y" (the option's spelling)
  std::string description() const;  // "x <- x, y <- z, z <- y"
  std::array<std::array<double, 3>, 3> matrix() const;
  std::array<double, 3> apply(const std::array<double, 3>& old) const;
};
// "x,z,y", "-x,z,y", ...: each of x, y, z exactly once, optionally with a sign. InputError otherwise.
AxisMap parse_axis_map(const std::string& text, const std::string& option = "--axes");

struct ImportProvenance {
  std::string importer;       // "tudelft", ...
  std::string source_file;    // absolute path
  std::string source_format;  // "MATLAB v5/v7 (libmatio)", ...
  long long source_frequency_count = 0;
  std::vector<std::int64_t> frequency_indices;  // 0-based into the source's frequency axis
  AxisMap axes;
  std::vector<std::pair<std::string, std::string>> fields;  // role -> the source's own field name
  std::vector<std::string> assumptions;                     // every assumption, also printed
};

// Writes /provenance (attributes and two small datasets) into an open file being written.
void write_provenance(h5::File& file, const ImportProvenance& provenance);

}  // namespace nfmimo
