#include "synthesizer/scene.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/atomic_file.hpp"
#include "radar/error.hpp"
#include "radar/random.hpp"
#include "synthesizer/raster.hpp"

namespace nfmimo {
namespace {

using json = nlohmann::json;

constexpr const char* kKindNames[kObjectKinds] = {"ellipsoid", "cuboid", "cylinder", "plate", "point"};

std::string known_kinds() {
  std::string s;
  for (const char* n : kKindNames) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

// Sequential draws from one counter-based stream: draw j of sample i is a pure function of (seed, i, j).
class Draws {
 public:
  Draws(std::uint64_t seed, std::uint64_t stream) : rs_(seed, stream) {}
  double uniform() { return rs_.uniform(next_++); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  int integer(int lo, int hi) {  // uniform in [lo, hi]
    return lo + std::min(static_cast<int>(uniform() * (hi - lo + 1)), hi - lo);
  }
  void normal2(double* a, double* b) { rs_.normal2(next_++, a, b); }

 private:
  RandomStream rs_;
  std::uint64_t next_ = 0;
};

// --- JSON configuration ---

double number(const json& v, const std::string& key, const std::string& source) {
  if (!v.is_number())
    throw InputError(fmt::format("{}: '{}' must be a number (got {})", source, key, v.dump()));
  const double d = v.get<double>();
  require(std::isfinite(d), fmt::format("{}: '{}' must be finite", source, key));
  return d;
}

int integer(const json& v, const std::string& key, const std::string& source) {
  const double d = number(v, key, source);
  require(d == std::floor(d) && std::abs(d) < 1e9,
          fmt::format("{}: '{}' must be an integer (got {})", source, key, d));
  return static_cast<int>(d);
}

// A range given as a number (min = max), [min, max] or {"min": a, "max": b}.
template <class T, class Get>
void range(const json& v, const std::string& key, const std::string& source, T& lo, T& hi, Get get) {
  if (v.is_number()) {
    lo = hi = get(v, key, source);
  } else if (v.is_array() && v.size() == 2) {
    lo = get(v[0], key + "[0]", source);
    hi = get(v[1], key + "[1]", source);
  } else if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it)
      require(it.key() == "min" || it.key() == "max",
              fmt::format("{}: '{}' has an unknown key '{}' (expected min, max)", source, key, it.key()));
    if (v.contains("min")) lo = get(v["min"], key + ".min", source);
    if (v.contains("max")) hi = get(v["max"], key + ".max", source);
  } else {
    throw InputError(
        fmt::format("{}: '{}' must be a number, [min, max] or {{\"min\": .., \"max\": ..}} (got {})", source,
                    key, v.dump()));
  }
}

void parse_types(const json& v, SceneConfig& c, const std::string& source) {
  c.kind_weights.fill(0);
  if (v.is_array()) {
    for (const json& name : v) {
      require(name.is_string(),
              fmt::format("{}: 'types' must list object type names (got {})", source, name.dump()));
      c.kind_weights[static_cast<int>(parse_object_kind(name.get<std::string>(), source))] = 1;
    }
  } else if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      const double w = number(it.value(), "types." + it.key(), source);
      require(w >= 0, fmt::format("{}: weight of type '{}' must not be negative", source, it.key()));
      c.kind_weights[static_cast<int>(parse_object_kind(it.key(), source))] = w;
    }
  } else {
    throw InputError(fmt::format("{}: 'types' must be a list of names or an object of weights", source));
  }
}

// Box-Muller pairs give two normals per draw; a direction needs three.
void random_direction(Draws& d, double v[3]) {
  double a, b, c, e;
  d.normal2(&a, &b);
  d.normal2(&c, &e);
  double n = std::sqrt(a * a + b * b + c * c);
  if (n < 1e-12) a = 1, b = c = 0, n = 1;  // probability ~0; keeps the draw well defined
  v[0] = a / n, v[1] = b / n, v[2] = c / n;
}

}  // namespace

std::string to_string(ObjectKind kind) {
  const int i = static_cast<int>(kind);
  return i >= 0 && i < kObjectKinds ? kKindNames[i] : "unknown";
}

ObjectKind parse_object_kind(const std::string& name, const std::string& source) {
  for (int i = 0; i < kObjectKinds; ++i)
    if (name == kKindNames[i]) return static_cast<ObjectKind>(i);
  throw InputError(fmt::format("{}: unknown object type '{}' (known: {})", source, name, known_kinds()));
}

void validate_scene_config(const SceneConfig& c, const std::string& source) {
  require(c.min_objects >= 1 && c.min_objects <= c.max_objects && c.max_objects <= kMaxObjects,
          fmt::format("{}: objects per scene must satisfy 1 <= min <= max <= {} (got {} to {})", source,
                      kMaxObjects, c.min_objects, c.max_objects));
  double total = 0;
  for (double w : c.kind_weights) {
    require(std::isfinite(w) && w >= 0,
            fmt::format("{}: object type weights must be finite and >= 0", source));
    total += w;
  }
  require(total > 0, fmt::format("{}: no object type has a positive weight", source));
  require(
      std::isfinite(c.min_size) && c.min_size > 0 && c.min_size <= c.max_size && std::isfinite(c.max_size),
      fmt::format("{}: object sizes must satisfy 0 < min <= max (got {} to {} m)", source, c.min_size,
                  c.max_size));
  require(std::isfinite(c.min_magnitude) && c.min_magnitude > 0 && c.min_magnitude <= c.max_magnitude &&
              c.max_magnitude <= 1,
          fmt::format("{}: magnitudes must satisfy 0 < min <= max <= 1 (got {} to {})", source,
                      c.min_magnitude, c.max_magnitude));
  require(std::isfinite(c.smooth_depth) && c.smooth_depth >= 0 && c.smooth_depth <= 1,
          fmt::format("{}: smooth_magnitude must be in [0, 1] (got {})", source, c.smooth_depth));
  require(c.min_plate_voxels >= 1 && c.min_plate_voxels <= c.max_plate_voxels && c.max_plate_voxels <= 16,
          fmt::format("{}: plate thickness must satisfy 1 <= min <= max <= 16 voxels (got {} to {})", source,
                      c.min_plate_voxels, c.max_plate_voxels));
  require(c.supersampling >= 1 && c.supersampling <= 16,
          fmt::format("{}: supersampling must be in [1, 16] (got {})", source, c.supersampling));
  // Below -100 dB the noise overflows float32 (the file would hold infinities); above 300 dB it is below
  // float32's resolution.
  require(!c.noise || (std::isfinite(c.min_snr_db) && std::isfinite(c.max_snr_db) &&
                       c.min_snr_db <= c.max_snr_db && c.min_snr_db >= -100 && c.max_snr_db <= 300),
          fmt::format(
              "{}: the SNR range must be finite, within [-100, 300] dB, with min <= max (got {} to {} dB)",
              source, c.min_snr_db, c.max_snr_db));
}

SceneConfig parse_scene_config(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text, nullptr, true, /*ignore_comments=*/true);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number beyond double range
    throw InputError(fmt::format("{}: not valid JSON: {}", source, e.what()));
  }
  require(j.is_object(), fmt::format("{}: the configuration must be a JSON object", source));
  SceneConfig c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "objects") {
      range(v, key, source, c.min_objects, c.max_objects, integer);
    } else if (key == "types") {
      parse_types(v, c, source);
    } else if (key == "size_m") {
      range(v, key, source, c.min_size, c.max_size, number);
    } else if (key == "magnitude") {
      range(v, key, source, c.min_magnitude, c.max_magnitude, number);
    } else if (key == "smooth_magnitude") {
      c.smooth_depth = number(v, key, source);
    } else if (key == "phase") {
      require(v.is_string() && (v == "random" || v == "constant"),
              fmt::format("{}: 'phase' must be \"random\" (per voxel) or \"constant\" (per object)", source));
      c.phase = v == "random" ? PhaseModel::RandomPerVoxel : PhaseModel::ConstantPerObject;
    } else if (key == "plate_thickness_voxels") {
      range(v, key, source, c.min_plate_voxels, c.max_plate_voxels, integer);
    } else if (key == "supersampling") {
      c.supersampling = integer(v, key, source);
    } else if (key == "snr_db") {
      if (v.is_string() && v == "none") {
        c.noise = false;
      } else {
        c.noise = true;
        range(v, key, source, c.min_snr_db, c.max_snr_db, number);
      }
    } else {
      throw InputError(
          fmt::format("{}: unknown key '{}' (known: objects, types, size_m, magnitude, "
                      "smooth_magnitude, phase, plate_thickness_voxels, supersampling, snr_db)",
                      source, key));
    }
  }
  validate_scene_config(c, source);
  return c;
}

SceneConfig read_scene_config(const std::string& path) {
  require_regular_file(path);  // a FIFO or device would block or never end
  std::error_code ec;
  require(std::filesystem::file_size(path, ec) <= (1u << 20),
          fmt::format("{}: is larger than 1 MB; a scene configuration is a small JSON object", path));
  std::ifstream in(path);
  require(in.good(), fmt::format("{}: cannot read the configuration file", path));
  std::stringstream s;
  s << in.rdbuf();
  return parse_scene_config(s.str(), path);
}

std::string scene_config_json(const SceneConfig& c) {
  json j;
  j["objects"] = {{"min", c.min_objects}, {"max", c.max_objects}};
  json types = json::object();
  for (int i = 0; i < kObjectKinds; ++i) types[kKindNames[i]] = c.kind_weights[i];
  j["types"] = types;
  j["size_m"] = {{"min", c.min_size}, {"max", c.max_size}};
  j["magnitude"] = {{"min", c.min_magnitude}, {"max", c.max_magnitude}};
  j["smooth_magnitude"] = c.smooth_depth;
  j["phase"] = c.phase == PhaseModel::RandomPerVoxel ? "random" : "constant";
  j["plate_thickness_voxels"] = {{"min", c.min_plate_voxels}, {"max", c.max_plate_voxels}};
  j["supersampling"] = c.supersampling;
  if (c.noise)
    j["snr_db"] = {{"min", c.min_snr_db}, {"max", c.max_snr_db}};
  else
    j["snr_db"] = "none";
  return j.dump();
}

namespace {

double parse_db(const std::string& s, const std::string& whole) {
  try {
    std::size_t used = 0;
    const double v = std::stod(s, &used);
    if (s.find_first_not_of(" \t", used) == std::string::npos && std::isfinite(v)) return v;
  } catch (const std::exception&) {
  }
  throw InputError(fmt::format("--snr: '{}' is not a number of dB (use DB, MIN:MAX or none)", whole));
}

int parse_count(const std::string& s, const std::string& whole, const char* option) {
  try {
    std::size_t used = 0;
    const long v = std::stol(s, &used);
    if (s.find_first_not_of(" \t", used) == std::string::npos && v >= 0 && v <= 1000000)
      return static_cast<int>(v);
  } catch (const std::exception&) {
  }
  throw InputError(fmt::format("{}: '{}' is not a count or MIN:MAX", option, whole));
}

}  // namespace

void parse_snr_option(const std::string& text, SceneConfig& c) {
  if (text == "none") {
    c.noise = false;
    return;
  }
  const auto colon = text.find(':');
  c.noise = true;
  if (colon == std::string::npos) {
    c.min_snr_db = c.max_snr_db = parse_db(text, text);
  } else {
    c.min_snr_db = parse_db(text.substr(0, colon), text);
    c.max_snr_db = parse_db(text.substr(colon + 1), text);
    require(c.min_snr_db <= c.max_snr_db, fmt::format("--snr: '{}' needs MIN <= MAX", text));
  }
}

void parse_objects_option(const std::string& text, SceneConfig& c) {
  const auto colon = text.find(':');
  if (colon == std::string::npos) {
    c.min_objects = c.max_objects = parse_count(text, text, "--objects");
  } else {
    c.min_objects = parse_count(text.substr(0, colon), text, "--objects");
    c.max_objects = parse_count(text.substr(colon + 1), text, "--objects");
  }
}

void parse_types_option(const std::string& text, SceneConfig& c) {
  c.kind_weights.fill(0);
  std::stringstream s(text);
  std::string name;
  while (std::getline(s, name, ','))
    if (!name.empty()) c.kind_weights[static_cast<int>(parse_object_kind(name, "--types"))] = 1;
}

const std::vector<cfloat>& phase_table() {
  static const std::vector<cfloat> table = [] {
    std::vector<cfloat> t(kPhaseLevels);
    for (int i = 0; i < kPhaseLevels; ++i) t[i] = cfloat(std::polar(1.0, kTwoPi * i / kPhaseLevels));
    return t;
  }();
  return table;
}

void validate_scene_grid(const ImagingGrid& g, const std::string& source) {
  for (const Axis* a : {&g.x(), &g.y(), &g.z()})
    require(a->size >= 2 && a->step > 0,
            fmt::format("{}: scenes need a grid with at least two points along every axis", source));
}

Scene draw_scene(const SceneConfig& c, const ImagingGrid& g, std::uint64_t seed, std::uint64_t index) {
  Draws d(seed, stream_id(index, RandomDomain::Objects));
  const Axis* axes[3] = {&g.x(), &g.y(), &g.z()};
  const double step[3] = {g.x().step, g.y().step, g.z().step};
  const double half_diag = 0.5 * std::sqrt(step[0] * step[0] + step[1] * step[1] + step[2] * step[2]);
  double total_weight = 0;
  for (double w : c.kind_weights) total_weight += w;

  Scene scene;
  const int n = d.integer(c.min_objects, c.max_objects);
  for (int k = 0; k < n; ++k) {
    SceneObject o{};
    // Draw order is part of the reproducibility contract: kind, magnitude, phase, smooth field, then
    // geometry. Everything is drawn whatever the options, so switching smoothing or the phase model keeps the
    // shapes.
    double pick = d.uniform() * total_weight;
    int kind = kObjectKinds - 1;
    while (kind > 0 && c.kind_weights[kind] == 0) --kind;  // last kind with weight (rounding guard)
    for (int i = 0; i < kObjectKinds; ++i) {
      if (c.kind_weights[i] > 0 && pick < c.kind_weights[i]) {
        kind = i;
        break;
      }
      pick -= c.kind_weights[i];
    }
    o.kind = kind;
    o.magnitude = static_cast<float>(d.uniform(c.min_magnitude, c.max_magnitude));
    o.phase_index = std::min(static_cast<int>(d.uniform() * kPhaseLevels), kPhaseLevels - 1);
    double lin[3];
    random_direction(d, lin);
    const double lin_scale = d.uniform();
    for (int i = 0; i < 3; ++i) o.smooth_lin[i] = static_cast<float>(lin[i] * lin_scale);
    o.smooth_quad = static_cast<float>(d.uniform(-0.5, 0.5));

    if (static_cast<ObjectKind>(kind) == ObjectKind::Point) {
      for (int a = 0; a < 3; ++a) {
        const int i = d.integer(0, axes[a]->size - 1);
        o.lo[a] = o.hi[a] = i;
        o.centre[a] = (*axes[a])[i];
      }
      o.rot[0] = o.rot[4] = o.rot[8] = 1.f;
      scene.objects.push_back(o);
      continue;
    }

    double half[3];
    for (double& h : half) h = 0.5 * d.uniform(c.min_size, c.max_size);
    const int plate_voxels = d.integer(c.min_plate_voxels, c.max_plate_voxels);
    // Uniform random rotation: a normalised 4D Gaussian is a uniform unit quaternion.
    double q[4];
    d.normal2(&q[0], &q[1]);
    d.normal2(&q[2], &q[3]);
    double qn = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    if (qn < 1e-12) q[0] = 1, q[1] = q[2] = q[3] = 0, qn = 1;
    const double w = q[0] / qn, x = q[1] / qn, y = q[2] / qn, z = q[3] / qn;
    // M (world from local); rot = M^T, so row i of rot is local axis i in world coordinates.
    const double M[3][3] = {{1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)},
                            {2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)},
                            {2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)}};
    double rot[3][3];
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) rot[i][j] = M[j][i];
    if (static_cast<ObjectKind>(kind) == ObjectKind::Plate) {
      // One or two voxels thick along the normal (local axis 2): the voxel's width along that direction.
      const double width =
          std::abs(rot[2][0]) * step[0] + std::abs(rot[2][1]) * step[1] + std::abs(rot[2][2]) * step[2];
      half[2] = 0.5 * plate_voxels * width;
    }
    // Half extent of the rotated object along each world axis (exact for each shape).
    auto extents = [&](double e[3]) {
      for (int j = 0; j < 3; ++j) {
        switch (static_cast<ObjectKind>(kind)) {
          case ObjectKind::Ellipsoid:
            e[j] = std::sqrt(std::pow(rot[0][j] * half[0], 2) + std::pow(rot[1][j] * half[1], 2) +
                             std::pow(rot[2][j] * half[2], 2));
            break;
          case ObjectKind::Cylinder:
            e[j] = std::hypot(rot[0][j] * half[0], rot[1][j] * half[1]) + std::abs(rot[2][j]) * half[2];
            break;
          default:
            e[j] =
                std::abs(rot[0][j]) * half[0] + std::abs(rot[1][j]) * half[1] + std::abs(rot[2][j]) * half[2];
        }
      }
    };
    double e[3];
    extents(e);
    // An object larger than the grid is scaled down to fit (only possible on grids smaller than max_size).
    double fit = 1;
    for (int j = 0; j < 3; ++j) {
      const double span = axes[j]->last() - axes[j]->start;
      if (2 * e[j] > span) fit = std::min(fit, span / (2 * e[j]) * (1 - 1e-9));
    }
    if (fit < 1) {
      for (double& h : half) h *= fit;
      extents(e);
    }
    for (int j = 0; j < 3; ++j) {
      const double span = axes[j]->last() - axes[j]->start;
      o.centre[j] = axes[j]->start + e[j] + d.uniform() * std::max(span - 2 * e[j], 0.0);
      // Voxel i (cell [x_i - step/2, x_i + step/2]) can meet [c - e, c + e]; a margin covers float rounding.
      const double margin = 1e-6;
      const double lo = (o.centre[j] - e[j] - margin - axes[j]->start) / step[j] - 0.5;
      const double hi = (o.centre[j] + e[j] + margin - axes[j]->start) / step[j] + 0.5;
      o.lo[j] = std::clamp(static_cast<int>(std::ceil(lo)), 0, axes[j]->size - 1);
      o.hi[j] = std::clamp(static_cast<int>(std::floor(hi)), 0, axes[j]->size - 1);
    }
    for (int i = 0; i < 3; ++i) {
      o.half[i] = static_cast<float>(half[i]);
      o.inv_half[i] = static_cast<float>(1.0 / half[i]);
      for (int j = 0; j < 3; ++j) o.rot[3 * i + j] = static_cast<float>(rot[i][j]);
    }
    double bound = 0;
    switch (static_cast<ObjectKind>(kind)) {
      case ObjectKind::Ellipsoid:
        bound = std::max({half[0], half[1], half[2]});
        break;
      case ObjectKind::Cylinder:
        bound = std::hypot(std::max(half[0], half[1]), half[2]);
        break;
      default:
        bound = std::sqrt(half[0] * half[0] + half[1] * half[1] + half[2] * half[2]);
    }
    o.reject_radius2 = static_cast<float>(std::pow((bound + half_diag) * (1 + 1e-5) + 1e-6, 2));
    scene.objects.push_back(o);
  }
  return scene;
}

void rasterize_magnitude(const Scene& scene, const SceneConfig& c, const ImagingGrid& g, float* magnitude,
                         std::int32_t* winner) {
  const raster::Grid r = raster::make_grid(g, c);
  const int n = static_cast<int>(scene.objects.size());
  require(n <= kMaxObjects, fmt::format("a scene holds at most {} objects", kMaxObjects));
  const SceneObject* objects = scene.objects.data();
  std::size_t v = 0;
  for (int ix = 0; ix < r.nx; ++ix)
    for (int iy = 0; iy < r.ny; ++iy)
      for (int iz = 0; iz < r.nz; ++iz, ++v) {
        std::int32_t w;
        magnitude[v] = raster::voxel_value(objects, n, r, ix, iy, iz, &w);
        if (winner) winner[v] = w;
      }
}

void render_scene(const Scene& scene, const SceneConfig& c, const ImagingGrid& g, std::uint64_t seed,
                  std::uint64_t index, cfloat* target) {
  const std::size_t V = g.voxels();
  std::vector<float> magnitude(V);
  std::vector<std::int32_t> winner(V);
  rasterize_magnitude(scene, c, g, magnitude.data(), winner.data());
  float peak = 0.f;
  for (float m : magnitude) peak = std::max(peak, m);
  const RandomStream phase_stream(seed, stream_id(index, RandomDomain::Phase));
  const cfloat* table = phase_table().data();
  for (std::size_t v = 0; v < V; ++v) {
    if (magnitude[v] <= 0.f) {
      target[v] = cfloat(0.f, 0.f);
      continue;
    }
    const std::int32_t level = c.phase == PhaseModel::RandomPerVoxel
                                   ? raster::voxel_phase_index(phase_stream, v)
                                   : scene.objects[winner[v]].phase_index;
    const float s = raster::div(magnitude[v], peak);
    target[v] = cfloat(raster::mul(s, table[level].real()), raster::mul(s, table[level].imag()));
  }
}

void render_targets(const SceneConfig& c, const ImagingGrid& g, std::uint64_t seed, std::uint64_t first,
                    int count, cfloat* targets) {
  const std::size_t V = g.voxels();
  phase_table();  // build the table before the threads need it
#pragma omp parallel for schedule(dynamic)
  for (int i = 0; i < count; ++i) {
    const std::uint64_t index = first + static_cast<std::uint64_t>(i);
    render_scene(draw_scene(c, g, seed, index), c, g, seed, index, targets + std::size_t(i) * V);
  }
}

}  // namespace nfmimo
