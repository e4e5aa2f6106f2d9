// Random 3D extended-target scenes: the configuration, the objects a scene is made of, and the CPU
// rasteriser.
//
// A scene is 1 to 5 (configurable) objects - ellipsoids, cuboids, cylinders, thin plates and point scatterers
// - with random size, position (fully inside the grid) and 3D orientation, rasterised onto the imaging grid
// with sub-voxel supersampling. Sample i of a run depends only on (seed, i, configuration): every random draw
// comes from the counter-based RandomStream(seed, stream_id(i, domain)), never from a sequential generator.
// See docs/synthesizer.md for the configuration reference and the reproducibility contract.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "radar/complex.hpp"
#include "radar/physics.hpp"
#include "radar/system.hpp"

namespace nfmimo {

enum class ObjectKind : std::int32_t { Ellipsoid = 0, Cuboid = 1, Cylinder = 2, Plate = 3, Point = 4 };
inline constexpr int kObjectKinds = 5;
inline constexpr int kMaxObjects = 16;  // per scene (fixed stride of the GPU object tables)

std::string to_string(ObjectKind kind);
// InputError naming `source` and the known kinds for an unknown name.
ObjectKind parse_object_kind(const std::string& name, const std::string& source);

// Phase of the reflectivity: independent and uniform per voxel (the paper's random-phase scenes), or one
// uniform phase per object.
enum class PhaseModel : std::int32_t { RandomPerVoxel = 0, ConstantPerObject = 1 };

struct SceneConfig {
  int min_objects = 1, max_objects = 5;  // objects per scene, uniform in [min, max]
  // Relative frequency of each kind (index = ObjectKind); zero leaves a kind out.
  std::array<double, kObjectKinds> kind_weights = {1, 1, 1, 1, 1};
  double min_size = 0.02, max_size = 0.12;  // full extent along each object axis (m), uniform per axis
  double min_magnitude = 0.5, max_magnitude = 1.0;  // per object, uniform
  // 0: constant magnitude per object. d in (0, 1]: the magnitude varies smoothly across the object between
  // m (1 - d) and m (a random linear + quadratic field in the object's own coordinates).
  double smooth_depth = 0;
  PhaseModel phase = PhaseModel::RandomPerVoxel;
  int min_plate_voxels = 1, max_plate_voxels = 2;  // thickness of thin plates, in voxels along their normal
  int supersampling = 4;                           // samples per voxel and axis (S^3 per voxel)
  // Measurement noise: SNR in dB, fixed (min == max) or uniform in [min, max]; noise = false: noiseless.
  bool noise = true;
  double min_snr_db = 30, max_snr_db = 30;
};

// Parses a JSON configuration (docs/synthesizer.md). Keys left out keep their defaults; unknown keys, unknown
// object types and out-of-range values are InputErrors naming `source`.
SceneConfig parse_scene_config(const std::string& json_text, const std::string& source);
SceneConfig read_scene_config(const std::string& path);
// The complete configuration as canonical JSON (every key, sorted): what datasets store and compare on
// resume.
std::string scene_config_json(const SceneConfig& config);
void validate_scene_config(const SceneConfig& config, const std::string& source);

// SNR option text: "30" (dB), "20:40" (uniform range) or "none" (noiseless). InputError otherwise.
void parse_snr_option(const std::string& text, SceneConfig& config);
// Object count option text: "3" or "1:5".
void parse_objects_option(const std::string& text, SceneConfig& config);
// Object types option text: comma-separated kinds, each weighted 1 ("ellipsoid,cuboid").
void parse_types_option(const std::string& text, SceneConfig& config);

// One rasterisable object, all parameters drawn on the host in double precision and stored as the float /
// double values the rasteriser uses on every device (plain data, identical on the CPU and the GPU).
struct SceneObject {
  std::int32_t kind;          // ObjectKind
  std::int32_t phase_index;   // phase 2 pi phase_index / kPhaseLevels (constant-phase model)
  std::int32_t lo[3], hi[3];  // voxel index box (inclusive) outside which the object covers nothing
  double centre[3];           // metres
  float rot[9];               // row i = local axis i in world coordinates: u = rot (p - centre)
  float half[3];      // half extents (cuboid, plate), semi-axes (ellipsoid), radii + half height (cylinder)
  float inv_half[3];  // 1 / half
  float reject_radius2;  // (bounding radius + voxel half diagonal)^2: voxels farther away are empty
  float magnitude;       // in [min_magnitude, max_magnitude]
  float smooth_lin[3];   // smooth-magnitude field: s = 0.5 + 0.5 lin.w + quad (w.w - 0.5), w = u / half
  float smooth_quad;
};

struct Scene {
  std::vector<SceneObject> objects;
};

// Random stream ids: sample i uses stream (i << 2) | domain for each independent purpose.
enum class RandomDomain : std::uint64_t { Objects = 0, Phase = 1, Noise = 2, Snr = 3 };
NFMIMO_HD std::uint64_t stream_id(std::uint64_t sample, RandomDomain domain) {
  return (sample << 2) | static_cast<std::uint64_t>(domain);
}

// Phases are quantised to kPhaseLevels uniform levels and looked up in one table (built once in double,
// rounded to float), so the CPU and the GPU produce bit-identical targets without depending on their sin/cos.
inline constexpr int kPhaseLevels = 65536;
const std::vector<cfloat>& phase_table();  // [kPhaseLevels] exp(j 2 pi i / kPhaseLevels)

// Checks that a grid can hold scenes (at least two points per axis). InputError otherwise.
void validate_scene_grid(const ImagingGrid& grid, const std::string& source);

// The objects of sample `index` (host, double precision).
Scene draw_scene(const SceneConfig& config, const ImagingGrid& grid, std::uint64_t seed, std::uint64_t index);

// Rasterised magnitudes before normalisation, [V] (z fastest): per voxel the maximum over objects of
// coverage x magnitude. `winner` (optional, [V]) receives the index of that object, -1 for empty voxels.
void rasterize_magnitude(const Scene& scene, const SceneConfig& config, const ImagingGrid& grid,
                         float* magnitude, std::int32_t* winner = nullptr);

// The complete target of sample `index`: magnitudes scaled so that the largest is 1, phases applied. [V].
void render_scene(const Scene& scene, const SceneConfig& config, const ImagingGrid& grid, std::uint64_t seed,
                  std::uint64_t index, cfloat* target);

// draw_scene + render_scene for samples first .. first + count - 1 into targets [count, V] (OpenMP over
// samples).
void render_targets(const SceneConfig& config, const ImagingGrid& grid, std::uint64_t seed,
                    std::uint64_t first, int count, cfloat* targets);

}  // namespace nfmimo
