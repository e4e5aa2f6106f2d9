#include "tools/model_lookup.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "models/learned/pipeline.hpp"
#include "models/weights.hpp"
#include "radar/error.hpp"

#ifndef NFMIMO_MODELS_DIR_DEFAULT
#define NFMIMO_MODELS_DIR_DEFAULT "models/trained"
#endif

namespace nfmimo {

namespace fs = std::filesystem;

std::string shipped_models_dir() {
  if (const char* env = std::getenv("NFMIMO_MODELS_DIR"); env && *env) return env;
  return NFMIMO_MODELS_DIR_DEFAULT;
}

std::vector<ShippedModel> list_shipped_models(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (it->path().extension() == ".h5" && name.find(".checkpoint.") == std::string::npos)
      files.push_back(it->path().string());
  }
  std::sort(files.begin(), files.end());
  std::vector<ShippedModel> models;
  for (const auto& path : files) {
    try {
      const nn::Model m = nn::read_model_header(path);
      models.push_back({path, m.architecture, m.role, m.system, m.grid});
    } catch (const Error&) {
      // Not a weights file of this nfmimo: not a candidate.
    }
  }
  return models;
}

namespace {

bool same_grid(const ImagingGrid& a, const ImagingGrid& b) { return !describe_difference(a, b); }

std::string grid_text(const ImagingGrid& g) {
  auto axis = [](const Axis& a) { return fmt::format("{:.6g}:{:.6g}:{}", a.start, a.last(), a.size); };
  return fmt::format("{},{},{}", axis(g.x()), axis(g.y()), axis(g.z()));
}

// The `train` command that makes a model of `architecture` for this system and grid.
std::string train_command(const std::string& method, const std::string& architecture,
                          const RadarSystem& system, const ImagingGrid& grid) {
  std::string data;
  if (!describe_difference(system, paper_system(system.frequencies())))
    data =
        fmt::format("--synthesize --system paper --freqs {}{} --snr 30", system.frequencies(),
                    same_grid(grid, ImagingGrid::paper()) ? "" : fmt::format(" --grid {}", grid_text(grid)));
  else
    data = "--data TRAIN.h5 --val VAL.h5 (measurement files of this system with /targets)";
  return fmt::format("nfmimo train --arch {} {} --time-budget 8m --out {}.h5", architecture, data, method);
}

}  // namespace

std::string default_model(const std::string& method, const RadarSystem& system, const ImagingGrid& grid,
                          const std::string& dir) {
  const nn::LearnedMethodSpec& spec = nn::learned_method_spec(method);
  const std::vector<ShippedModel> models = list_shipped_models(dir);
  for (const auto& m : models)
    if (m.architecture == spec.architecture && m.role == nn::kReconstructionRole &&
        !describe_difference(m.system, system) && same_grid(m.grid, grid))
      return m.path;
  std::string listing;
  for (const auto& m : models)
    listing += fmt::format("\n  {}: {} for {}; grid {}", fs::path(m.path).filename().string(),
                           m.role == nn::kDenoiserRole ? "pnp denoiser" : m.architecture, describe(m.system),
                           describe(m.grid));
  if (listing.empty()) listing = " none";
  throw InputError(fmt::format(
      "method '{}' needs a weights file, and no shipped model fits these measurements ({}; grid {}): give "
      "--model FILE, or train one with\n  {}\n(docs/training.md). Shipped models in {}:{}",
      method, describe(system), describe(grid), train_command(method, spec.architecture, system, grid), dir,
      listing));
}

}  // namespace nfmimo
