#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>
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

namespace {
void strict_integers(CLI::App& app) {
  for (CLI::Option* opt : app.get_options()) {
    const std::string type = opt->get_type_name();
    if (type == "FLOAT" && opt->get_type_size() != 0) {
      // An empty value would read as 0, which no user means. NaN is left to each option's own range check,
      // whose message says what the option is for.
      opt->transform(CLI::Validator(
          [](std::string& text) -> std::string {
            char* end = nullptr;
            std::strtod(text.c_str(), &end);
            if (text.empty() || end != text.c_str() + text.size())
              return fmt::format("'{}' is not a number", text);
            return {};
          },
          "", "strict number"));
      continue;
    }
    if (type != "INT" && type != "UINT") continue;
    if (opt->get_type_size() == 0) continue;  // a flag
    const bool is_unsigned = type == "UINT";
    opt->transform(CLI::Validator(
        [is_unsigned](std::string& text) -> std::string {
          std::string digits = text;
          bool negative = false;
          if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) {
            negative = digits[0] == '-';
            digits.erase(0, 1);
          }
          if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
            return fmt::format("'{}' is not a whole number (write it in plain digits)", text);
          if (negative && is_unsigned)
            return fmt::format("{} is negative; expected a non-negative number", text);
          const std::size_t nz = digits.find_first_not_of('0');
          digits = nz == std::string::npos ? "0" : digits.substr(nz);  // "010" is ten, not octal eight
          const std::string normal = (negative ? "-" : "") + digits;
          bool fits = false;
          if (is_unsigned) {
            std::uint64_t v = 0;
            const auto r = std::from_chars(normal.data(), normal.data() + normal.size(), v);
            fits = r.ec == std::errc() && r.ptr == normal.data() + normal.size();
          } else {
            std::int64_t v = 0;
            const auto r = std::from_chars(normal.data(), normal.data() + normal.size(), v);
            fits = r.ec == std::errc() && r.ptr == normal.data() + normal.size();
          }
          if (!fits) return fmt::format("{} is out of range", text);
          text = normal;
          return {};
        },
        "", "strict integer"));
  }
  for (CLI::App* sub : app.get_subcommands({})) strict_integers(*sub);
}
}  // namespace

void make_integer_options_strict(CLI::App& app) { strict_integers(app); }

int max_threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return 4 * static_cast<int>(hw > 0 ? hw : 1);
}

void check_snr_db(double snr_db, const std::string& option) {
  require(std::isfinite(snr_db) && snr_db >= kMinSnrDb && snr_db <= kMaxSnrDb,
          fmt::format("{}: {} dB is not a usable SNR; give a number of dB in [{}, {}]", option, snr_db,
                      kMinSnrDb, kMaxSnrDb));
}

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
    require(n >= 1 && n <= 100000, fmt::format("--grid: '{}' needs a count in 1..100000", part));
    require(std::isfinite(a) && std::isfinite(b), fmt::format("--grid: '{}' has a non-finite bound", part));
    require(n == 1 || b > a, fmt::format("--grid: '{}' must increase", part));
    require(
        n > 1 || a == b,
        fmt::format("--grid: '{}' has one point but two different bounds; write '{}:{}:1' for one point at "
                    "{}, or give more points",
                    part, a, a, a));
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
