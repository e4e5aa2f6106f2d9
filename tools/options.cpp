#include <filesystem>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "data/hdf5.hpp"
#include "data/measurement_file.hpp"
#include "radar/error.hpp"
#include "tools/commands.hpp"

namespace nfmimo {

namespace {
std::string& stored_command_line() {
  static std::string text;
  return text;
}
}  // namespace

void set_command_line(int argc, char** argv) {
  std::string& text = stored_command_line();
  text.clear();
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i == 0) arg = "nfmimo";  // the binary's path says nothing about the run
    const bool quote = arg.empty() || arg.find_first_of(" \t\"'$;&|") != std::string::npos;
    text += (i ? " " : "") + (quote ? "'" + arg + "'" : arg);
  }
}

const std::string& command_line() { return stored_command_line(); }

ImagingGrid parse_grid(const std::string& text) {
  if (text == "paper") return ImagingGrid::paper();
  std::vector<Axis> axes;
  std::stringstream parts(text);
  std::string part;
  while (std::getline(parts, part, ',')) {
    double a = 0, b = 0;
    int n = 0;
    char c1 = 0, c2 = 0;
    std::stringstream s(part);
    if (!(s >> a >> c1 >> b >> c2 >> n) || c1 != ':' || c2 != ':' || !(s >> std::ws).eof())
      throw InputError(fmt::format("--grid: '{}' is not 'first:last:count' (metres)", part));
    require(n >= 1, fmt::format("--grid: '{}' needs a positive count", part));
    require(n == 1 || b > a, fmt::format("--grid: '{}' must increase", part));
    axes.push_back(Axis::linspace(a, b, n));
  }
  require(axes.size() == 3, fmt::format("--grid: '{}' needs three axes 'x0:x1:nx,y0:y1:ny,z0:z1:nz'", text));
  return ImagingGrid(axes[0], axes[1], axes[2]);
}

SystemChoice resolve_system_option(const std::string& text, int freqs, bool freqs_given) {
  SystemChoice c;
  std::error_code ec;
  if (text == "paper" || !std::filesystem::is_regular_file(text, ec)) {
    if (text != "paper" && (text.find('/') != std::string::npos || text.find('.') != std::string::npos))
      throw InputError(
          fmt::format("--system: '{}' is neither a system name (paper) nor an existing file", text));
    require(freqs >= 1, fmt::format("--freqs must be positive (got {})", freqs));
    c.system = named_system(text, freqs);
    return c;
  }
  const h5::File f(text, h5::File::Mode::Read);
  c.system = read_system(f);
  require(
      !freqs_given || freqs == c.system.frequencies(),
      fmt::format("--freqs {} disagrees with --system {}, which holds K = {} frequencies (leave --freqs out)",
                  freqs, text, c.system.frequencies()));
  c.grid = read_grid(f);
  if (c.grid) validate_grid(*c.grid, c.system, f.path() + ": /grid");
  c.file = text;
  return c;
}

}  // namespace nfmimo
