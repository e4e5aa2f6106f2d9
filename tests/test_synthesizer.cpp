// The synthesizer on the CPU: rasterised volumes, scene statistics, measurements against the double
// reference, the SNR of the stored noise, determinism, datasets (shards, merge, resume, interruption) and bad
// input.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "data/hdf5.hpp"
#include "data/measurement_file.hpp"
#include "radar/cpu_operator.hpp"
#include "radar/error.hpp"
#include "radar/reference.hpp"
#include "synthesizer/dataset.hpp"
#include "synthesizer/synthesizer.hpp"
#include "tests/test_util.hpp"

namespace nfmimo {
namespace {

namespace fs = std::filesystem;
using test::relative_error_below;

SceneConfig only(ObjectKind kind, int objects = 1) {
  SceneConfig c;
  c.kind_weights.fill(0);
  c.kind_weights[static_cast<int>(kind)] = 1;
  c.min_objects = c.max_objects = objects;
  return c;
}

// A coarse grid over the paper's volume (same extents, fewer voxels) for tests that need the slow reference.
ImagingGrid coarse_grid() {
  return ImagingGrid(Axis::linspace(-0.15, 0.15, 13), Axis::linspace(-0.15, 0.15, 13),
                     Axis::linspace(0.35, 0.65, 25));
}

double analytic_volume(const SceneObject& o) {
  const double a = o.half[0], b = o.half[1], c = o.half[2];
  switch (static_cast<ObjectKind>(o.kind)) {
    case ObjectKind::Ellipsoid:
      return 4.0 / 3.0 * kPi * a * b * c;
    case ObjectKind::Cylinder:
      return kPi * a * b * 2 * c;
    default:
      return 8 * a * b * c;
  }
}

// Fresh empty folder per test (removed at the end).
class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            fmt::format("nfmimo-synth-{}-{}", ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                        getpid());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::vector<char> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

// --- Scenes ---

// Supersampled volumes (S = 4, 64 samples per voxel) of random ellipsoids and cuboids of 2-12 cm, randomly
// rotated, match the analytic volume within 2 %; an object cut off by the grid edge would fail. Cylinders and
// plates are checked too (plates are 1-2 voxels thin, so their boundary error is larger: 5 %).
TEST(Scenes, RasterisedVolumesMatchAnalyticVolumes) {
  const ImagingGrid g = ImagingGrid::paper();
  const double voxel = g.x().step * g.y().step * g.z().step;
  std::vector<float> mag(g.voxels());
  for (auto [kind, tol] : {std::pair{ObjectKind::Ellipsoid, 0.02}, std::pair{ObjectKind::Cuboid, 0.02},
                           std::pair{ObjectKind::Cylinder, 0.02}, std::pair{ObjectKind::Plate, 0.05}}) {
    const SceneConfig c = only(kind);
    double worst = 0;
    for (std::uint64_t i = 0; i < 40; ++i) {
      const Scene s = draw_scene(c, g, 5, i);
      ASSERT_EQ(s.objects.size(), 1u);
      rasterize_magnitude(s, c, g, mag.data());
      const double raster = std::accumulate(mag.begin(), mag.end(), 0.0) / s.objects[0].magnitude * voxel;
      const double exact = analytic_volume(s.objects[0]);
      worst = std::max(worst, std::abs(raster / exact - 1));
      EXPECT_NEAR(raster / exact, 1.0, tol)
          << to_string(kind) << " sample " << i << ": " << raster << " vs " << exact << " m^3";
    }
    std::printf("[ volumes ] %s: worst relative volume error %.4f over 40 objects\n", to_string(kind).c_str(),
                worst);
  }
}

// Edges are partial voxels: a large ellipsoid has fully covered voxels (1) and many fractional ones.
TEST(Scenes, EdgesArePartialVoxels) {
  const ImagingGrid g = ImagingGrid::paper();
  SceneConfig c = only(ObjectKind::Ellipsoid);
  c.min_size = c.max_size = 0.1;
  const Scene s = draw_scene(c, g, 1, 0);
  std::vector<float> mag(g.voxels());
  rasterize_magnitude(s, c, g, mag.data());
  const float m = s.objects[0].magnitude;
  int full = 0, partial = 0;
  for (float v : mag) {
    if (v == m)
      ++full;
    else if (v > 0)
      ++partial;
  }
  EXPECT_GT(full, 100);
  EXPECT_GT(partial, 50);
}

// Object counts, kinds, magnitudes, sizes and orientations follow the configuration.
TEST(Scenes, ParameterStatisticsMatchConfiguration) {
  const ImagingGrid g = ImagingGrid::paper();
  SceneConfig c;
  c.kind_weights = {1, 2, 0, 1, 0};  // ellipsoid 25 %, cuboid 50 %, plate 25 %
  const int scenes = 3000;
  std::map<int, int> counts, kinds;
  std::vector<double> magnitudes;
  double axis_mean[3] = {}, axis_sq[3] = {};
  int objects = 0;
  for (int i = 0; i < scenes; ++i) {
    const Scene s = draw_scene(c, g, 11, i);
    ++counts[static_cast<int>(s.objects.size())];
    for (const SceneObject& o : s.objects) {
      ++kinds[o.kind];
      ++objects;
      magnitudes.push_back(o.magnitude);
      EXPECT_GE(o.magnitude, 0.5f);
      EXPECT_LE(o.magnitude, 1.0f);
      for (int a = 0; a < (o.kind == static_cast<int>(ObjectKind::Plate) ? 2 : 3); ++a) {
        EXPECT_GE(2 * o.half[a], 0.02f * 0.9999f);
        EXPECT_LE(2 * o.half[a], 0.12f * 1.0001f);
      }
      for (int j = 0; j < 3; ++j) {  // local axis 2 (the normal of plates) in world coordinates
        axis_mean[j] += o.rot[6 + j];
        axis_sq[j] += o.rot[6 + j] * o.rot[6 + j];
      }
    }
  }
  for (int n = 1; n <= 5; ++n)  // uniform: 600 each, binomial sigma ~22
    EXPECT_NEAR(counts[n], scenes / 5.0, 5 * std::sqrt(scenes * 0.2 * 0.8)) << n << " objects";
  EXPECT_EQ(counts.size(), 5u);
  EXPECT_EQ(kinds.count(static_cast<int>(ObjectKind::Cylinder)), 0u);
  EXPECT_EQ(kinds.count(static_cast<int>(ObjectKind::Point)), 0u);
  const double sigma = std::sqrt(objects * 0.25 * 0.75);
  EXPECT_NEAR(kinds[static_cast<int>(ObjectKind::Ellipsoid)], objects * 0.25, 5 * sigma);
  EXPECT_NEAR(kinds[static_cast<int>(ObjectKind::Cuboid)], objects * 0.5, 5 * std::sqrt(objects * 0.25));
  // Uniform in [0.5, 1]: mean 0.75, standard deviation 0.5 / sqrt(12).
  const double mean = std::accumulate(magnitudes.begin(), magnitudes.end(), 0.0) / magnitudes.size();
  EXPECT_NEAR(mean, 0.75, 5 * 0.1443 / std::sqrt(magnitudes.size()));
  // Uniform orientation: each component of a random unit vector has mean 0 and mean square 1/3.
  for (int j = 0; j < 3; ++j) {
    EXPECT_NEAR(axis_mean[j] / objects, 0.0, 5 * std::sqrt(1.0 / 3 / objects));
    EXPECT_NEAR(axis_sq[j] / objects, 1.0 / 3, 5 * std::sqrt(4.0 / 45 / objects));
  }
}

// Every scene is scaled so that its largest magnitude is 1; random phases are uniform and independent between
// neighbouring voxels.
TEST(Scenes, ScaledToUnitPeakWithUniformRandomPhase) {
  const ImagingGrid g = ImagingGrid::paper();
  const SceneConfig c;
  const int n = 40;
  std::vector<cfloat> x(g.voxels() * n);
  render_targets(c, g, 3, 0, n, x.data());
  std::vector<int> bins(16, 0);
  int voxels = 0;
  cdouble resultant = 0, neighbour = 0;
  int pairs = 0;
  for (int i = 0; i < n; ++i) {
    const cfloat* X = x.data() + i * g.voxels();
    float peak = 0;
    for (std::size_t v = 0; v < g.voxels(); ++v) peak = std::max(peak, std::abs(X[v]));
    EXPECT_NEAR(peak, 1.0f, 1e-6f) << "sample " << i;
    for (std::size_t v = 0; v < g.voxels(); ++v) {
      if (X[v] == cfloat(0)) continue;
      const double phase = std::arg(cdouble(X[v]));
      ++bins[std::min(15, static_cast<int>((phase + kPi) / kTwoPi * 16))];
      resultant += std::polar(1.0, phase);
      ++voxels;
      if (v + 1 < g.voxels() && X[v + 1] != cfloat(0)) {
        neighbour += std::polar(1.0, phase - std::arg(cdouble(X[v + 1])));
        ++pairs;
      }
    }
  }
  ASSERT_GT(voxels, 10000);
  const double expected = voxels / 16.0;
  for (int b = 0; b < 16; ++b) EXPECT_NEAR(bins[b], expected, 5 * std::sqrt(expected)) << "phase bin " << b;
  EXPECT_LT(std::abs(resultant) / voxels, 5 / std::sqrt(double(voxels)));
  EXPECT_LT(std::abs(neighbour) / pairs, 5 / std::sqrt(double(pairs)));
}

TEST(Scenes, ConstantPhasePerObject) {
  const ImagingGrid g = ImagingGrid::paper();
  SceneConfig c = only(ObjectKind::Cuboid, 3);
  c.phase = PhaseModel::ConstantPerObject;
  std::vector<cfloat> x(g.voxels());
  std::vector<float> mag(g.voxels());
  std::vector<std::int32_t> winner(g.voxels());
  for (std::uint64_t i = 0; i < 5; ++i) {
    const Scene s = draw_scene(c, g, 2, i);
    render_scene(s, c, g, 2, i, x.data());
    rasterize_magnitude(s, c, g, mag.data(), winner.data());
    int checked = 0;
    for (std::size_t v = 0; v < g.voxels(); ++v) {
      if (winner[v] < 0) {
        EXPECT_EQ(x[v], cfloat(0));
        continue;
      }
      const double expected = kTwoPi * s.objects[winner[v]].phase_index / kPhaseLevels;
      EXPECT_LT(std::abs(std::remainder(std::arg(cdouble(x[v])) - expected, kTwoPi)), 1e-5) << "voxel " << v;
      ++checked;
    }
    EXPECT_GT(checked, 10);
  }
}

// Magnitudes: overlapping objects take the maximum; fully covered voxels carry their object's magnitude
// relative to the scene's largest; the smooth option varies within [m (1 - depth), m] and is not constant.
TEST(Scenes, MagnitudesFollowObjectsAndSmoothOption) {
  const ImagingGrid g = ImagingGrid::paper();
  SceneConfig c = only(ObjectKind::Ellipsoid, 4);
  std::vector<float> mag(g.voxels());
  std::vector<std::int32_t> winner(g.voxels());
  for (std::uint64_t i = 0; i < 5; ++i) {
    const Scene s = draw_scene(c, g, 9, i);
    rasterize_magnitude(s, c, g, mag.data(), winner.data());
    for (std::size_t v = 0; v < g.voxels(); ++v)
      if (winner[v] >= 0) {
        EXPECT_LE(mag[v], s.objects[winner[v]].magnitude);
      }
  }
  c.smooth_depth = 0.6;
  c.min_objects = c.max_objects = 1;
  c.min_size = c.max_size = 0.1;
  for (std::uint64_t i = 0; i < 5; ++i) {
    const Scene s = draw_scene(c, g, 9, i);
    const float m = s.objects[0].magnitude;
    rasterize_magnitude(s, c, g, mag.data(), winner.data());
    float lo = 2, hi = 0;
    int full = 0;
    for (float v : mag)
      if (v > 0) lo = std::min(lo, v), hi = std::max(hi, v);
    for (std::size_t v = 0; v < g.voxels(); ++v) full += mag[v] > 0;
    EXPECT_LE(hi, m * 1.000001f);
    EXPECT_GT(hi - lo, 0.05f * m) << "smooth magnitude should vary across the object";
    EXPECT_GT(full, 100);
  }
}

// Found by tests/fuzz/fuzz_synth_config: a number beyond double range made nlohmann::json throw out_of_range,
// which escaped as an internal error (exit 1) instead of a message naming the file.
TEST(Scenes, ConfigurationNumberOutOfRangeIsAnInputError) {
  for (const char* text : {"1e309", R"({"size_m": 1e999})", R"({"objects": -1e400})"}) {
    try {
      parse_scene_config(text, "cfg.json");
      ADD_FAILURE() << text << " was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
    }
  }
}

TEST(Scenes, ConfigurationRoundTripsAndRejectsBadInput) {
  SceneConfig c;
  c.min_objects = 2;
  c.kind_weights = {1, 0, 0.5, 0, 3};
  c.phase = PhaseModel::ConstantPerObject;
  c.smooth_depth = 0.25;
  c.min_snr_db = 10;
  c.max_snr_db = 40;
  const std::string j = scene_config_json(c);
  EXPECT_EQ(scene_config_json(parse_scene_config(j, "x")), j);
  // Comments, shorthand ranges and type lists.
  const SceneConfig d = parse_scene_config(R"({ // scenes for the test
      "objects": 3, "types": ["ellipsoid", "point"], "size_m": [0.03, 0.05], "snr_db": "none"})",
                                           "cfg");
  EXPECT_EQ(d.min_objects, 3);
  EXPECT_EQ(d.max_objects, 3);
  EXPECT_EQ(d.kind_weights[static_cast<int>(ObjectKind::Cuboid)], 0);
  EXPECT_FALSE(d.noise);
  auto message = [](const std::string& text) {
    try {
      parse_scene_config(text, "cfg.json");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(R"({"types": ["sphere"]})").find("unknown object type 'sphere'"), std::string::npos);
  EXPECT_NE(message(R"({"typo": 1})").find("unknown key 'typo'"), std::string::npos);
  EXPECT_NE(message(R"({"objects": [3, 1]})").find("objects per scene"), std::string::npos);
  EXPECT_NE(message(R"({"size_m": "big"})").find("size_m"), std::string::npos);
  EXPECT_NE(message(R"({"phase": "wild"})").find("phase"), std::string::npos);
  EXPECT_NE(message("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(message(R"({"snr_db": [40, 10]})").find("SNR"), std::string::npos);
  SceneConfig e;
  EXPECT_THROW(parse_snr_option("abc", e), InputError);
  EXPECT_THROW(parse_snr_option("10:x", e), InputError);
  EXPECT_THROW(parse_snr_option("40:10", e), InputError);
  EXPECT_NO_THROW(parse_snr_option("20:40", e));
  EXPECT_EQ(e.max_snr_db, 40);
  EXPECT_THROW(parse_types_option("cube", e), InputError);
}

// The documented example configuration parses and spells out the defaults.
TEST(Scenes, DocumentedExampleIsTheDefault) {
  const SceneConfig c = read_scene_config(std::string(NFMIMO_SOURCE_DIR) + "/docs/scenes.json");
  EXPECT_EQ(scene_config_json(c), scene_config_json(SceneConfig{}));
}

// --- Measurements ---

// Noiseless measurements are A x of the stored targets: the fast float forward model against the
// double-precision reference (1e-5: the float operator's tested accuracy).
TEST(Measurements, NoiselessEqualForwardReference) {
  const RadarSystem s = paper_system(5);
  const ImagingGrid g = coarse_grid();
  SceneConfig c;
  c.noise = false;
  const Synthesizer synth(s, g, c, 21, DeviceKind::Cpu, 4);
  const int n = 4;
  const SampleBatch b = synth.batch(100, n);
  std::vector<cdouble> xd(b.targets.begin(), b.targets.end());
  EXPECT_TRUE(relative_error_below(b.measurements, forward_reference(s, g, xd, n), 1e-5));
  for (float v : b.snr_db) EXPECT_TRUE(std::isinf(v) && v > 0);
}

// With noise: y - A x is noise at the stored SNR, within 0.2 dB over a batch (per sample SNR drawn in a
// range).
TEST(Measurements, NoiseLevelMatchesStoredSnr) {
  const RadarSystem s = paper_system(15);
  const ImagingGrid g = coarse_grid();
  SceneConfig c;
  c.min_snr_db = 5;
  c.max_snr_db = 35;
  const Synthesizer synth(s, g, c, 4, DeviceKind::Cpu, 16);
  const int n = 16;
  const SampleBatch b = synth.batch(0, n);
  const CpuOperator op(s, g);
  std::vector<cfloat> clean(b.measurements.size());
  op.forward(b.targets.data(), clean.data(), n);
  const std::size_t S = s.samples_per_frame();
  double measured = 0, expected = 0;
  float lo = 100, hi = -100;
  for (int i = 0; i < n; ++i) {
    double signal = 0, noise = 0;
    for (std::size_t k = 0; k < S; ++k) {
      signal += std::norm(cdouble(clean[i * S + k]));
      noise += std::norm(cdouble(b.measurements[i * S + k]) - cdouble(clean[i * S + k]));
    }
    ASSERT_GT(noise, 0) << "sample " << i;
    measured += noise;
    expected += signal / std::pow(10.0, b.snr_db[i] / 10.0);
    lo = std::min(lo, b.snr_db[i]), hi = std::max(hi, b.snr_db[i]);
    EXPECT_FLOAT_EQ(b.snr_db[i], static_cast<float>(sample_snr_db(c, 4, i)));
  }
  EXPECT_NEAR(10 * std::log10(measured / expected), 0.0, 0.2);
  EXPECT_GE(lo, 5.f);
  EXPECT_LE(hi, 35.f);
  EXPECT_GT(hi - lo, 5.f) << "SNRs should spread over the range";
}

// Sample i depends only on (seed, i, configuration): any batch split, thread count or starting point gives
// the same bytes; another seed gives other scenes.
TEST(Measurements, DeterministicAcrossBatchesThreadsAndOffsets) {
  const RadarSystem s = paper_system(5);
  const ImagingGrid g = coarse_grid();
  const SceneConfig c;
  const std::size_t V = g.voxels(), S = s.samples_per_frame();
  const Synthesizer a(s, g, c, 7, DeviceKind::Cpu, 6), b(s, g, c, 7, DeviceKind::Cpu, 2);
  const SampleBatch ref = a.batch(100, 6);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const SampleBatch split = b.batch(100, 6);
  omp_set_num_threads(threads);
  const SampleBatch longer = a.batch(97, 9);
  EXPECT_EQ(std::memcmp(ref.targets.data(), split.targets.data(), V * 6 * sizeof(cfloat)), 0);
  EXPECT_EQ(std::memcmp(ref.measurements.data(), split.measurements.data(), S * 6 * sizeof(cfloat)), 0);
  EXPECT_EQ(std::memcmp(ref.targets.data(), longer.targets.data() + 3 * V, V * 6 * sizeof(cfloat)), 0);
  EXPECT_EQ(std::memcmp(ref.measurements.data(), longer.measurements.data() + 3 * S, S * 6 * sizeof(cfloat)),
            0);
  EXPECT_EQ(std::memcmp(ref.snr_db.data(), longer.snr_db.data() + 3, 6 * sizeof(float)), 0);
  const Synthesizer other(s, g, c, 8, DeviceKind::Cpu, 6);
  EXPECT_NE(std::memcmp(ref.targets.data(), other.batch(100, 6).targets.data(), V * 6 * sizeof(cfloat)), 0);
}

TEST(Measurements, CpuBackendRefusesDevicePointersAndBadGrids) {
  const SceneConfig c;
  const Synthesizer synth(paper_system(5), coarse_grid(), c, 1, DeviceKind::Cpu, 2);
  EXPECT_THROW(synth.generate_device(0, 1, nullptr, nullptr, nullptr, nullptr), InputError);
  if (cuda_device_count() == 0) {
    EXPECT_THROW(Synthesizer(paper_system(5), coarse_grid(), c, 1, DeviceKind::Cuda), InputError);
  }
  const ImagingGrid flat(Axis::linspace(-0.1, 0.1, 5), Axis::linspace(-0.1, 0.1, 5),
                         Axis::linspace(0.5, 0.5, 1));
  EXPECT_THROW(Synthesizer(paper_system(5), flat, c, 1, DeviceKind::Cpu), InputError);
}

// --- Datasets ---

DatasetSpec small_spec(std::int64_t count) {
  DatasetSpec spec;
  spec.count = count;
  spec.seed = 42;
  spec.system = paper_system(5);
  spec.grid = coarse_grid();
  spec.config.min_snr_db = 15;
  spec.config.max_snr_db = 25;
  return spec;
}

DatasetRunOptions run_options(const std::string& out, int batch = 4) {
  DatasetRunOptions o;
  o.output = out;
  o.batch = batch;
  o.device = DeviceKind::Cpu;
  return o;
}

void expect_same_contents(const std::string& a, const std::string& b) {
  const MeasurementSet x = read_measurements(a), y = read_measurements(b);
  ASSERT_EQ(x.frames, y.frames);
  EXPECT_EQ(x.targets, y.targets);
  EXPECT_EQ(x.measurements, y.measurements);
  EXPECT_EQ(x.snr_db, y.snr_db);
  const DatasetInfo ia = read_dataset_info(a), ib = read_dataset_info(b);
  EXPECT_FALSE(describe_difference(ia.spec, ib.spec, false).has_value());
}

// A dataset holds exactly what the in-memory generator makes, in the measurement-file schema, and says how it
// was made. The same command gives a byte-identical file whatever the thread count.
TEST(Datasets, FileHoldsGeneratorSamplesAndIsReproducible) {
  const TempDir dir;
  const DatasetSpec spec = small_spec(10);
  const DatasetRunResult r = synthesize_dataset(spec, run_options(dir / "a.h5"));
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.written, 10);
  EXPECT_FALSE(fs::exists(dir / "a.h5.partial"));
  const MeasurementSet m = read_measurements(dir / "a.h5");
  const Synthesizer synth(spec.system, spec.grid, spec.config, spec.seed, DeviceKind::Cpu, 16);
  const SampleBatch b = synth.batch(0, 10);
  EXPECT_EQ(m.frames, 10);
  EXPECT_EQ(m.targets, b.targets);
  EXPECT_EQ(m.measurements, b.measurements);
  EXPECT_EQ(m.snr_db, b.snr_db);
  const DatasetInfo info = read_dataset_info(dir / "a.h5");
  EXPECT_TRUE(info.complete);
  EXPECT_EQ(info.rows, 10);
  EXPECT_EQ(info.spec.seed, 42u);
  EXPECT_EQ(scene_config_json(info.spec.config), scene_config_json(spec.config));

  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  synthesize_dataset(spec, run_options(dir / "b.h5"));
  omp_set_num_threads(threads);
  EXPECT_TRUE(file_bytes(dir / "a.h5") == file_bytes(dir / "b.h5")) << "same command, different thread count";
  // Another batch size changes the HDF5 layout, never the contents.
  synthesize_dataset(spec, run_options(dir / "c.h5", 3));
  expect_same_contents(dir / "a.h5", dir / "c.h5");
}

TEST(Datasets, GzipKeepsContents) {
  const TempDir dir;
  const DatasetSpec spec = small_spec(6);
  synthesize_dataset(spec, run_options(dir / "plain.h5"));
  DatasetRunOptions o = run_options(dir / "gzip.h5");
  o.gzip_level = 4;
  synthesize_dataset(spec, o);
  expect_same_contents(dir / "plain.h5", dir / "gzip.h5");
  EXPECT_LT(fs::file_size(dir / "gzip.h5"), fs::file_size(dir / "plain.h5") / 2)
      << "targets are mostly zeros";
}

// n shards hold exactly the samples of one run; merged in any order they equal it.
TEST(Datasets, ShardsMergeIntoTheSingleRun) {
  const TempDir dir;
  DatasetSpec spec = small_spec(11);
  synthesize_dataset(spec, run_options(dir / "all.h5"));
  std::vector<std::string> shards;
  for (int i : {2, 0, 1}) {
    spec.shard_index = i;
    spec.shard_count = 3;
    const std::string path = dir / fmt::format("shard{}.h5", i);
    synthesize_dataset(spec, run_options(path, 2));
    EXPECT_EQ(read_dataset_info(path).rows, spec.end() - spec.first());
    shards.push_back(path);
  }
  EXPECT_EQ(merge_datasets(shards, dir / "merged.h5", {}), 11);
  expect_same_contents(dir / "all.h5", dir / "merged.h5");
  const DatasetInfo merged = read_dataset_info(dir / "merged.h5");
  EXPECT_TRUE(merged.complete);
  EXPECT_EQ(merged.spec.shard_count, 1);

  // Missing, overlapping and foreign shards are refused, and nothing is written.
  EXPECT_THROW(merge_datasets({shards[0], shards[1]}, dir / "bad.h5", {}), InputError);
  EXPECT_THROW(merge_datasets({shards[0], shards[1], shards[2], shards[2]}, dir / "bad.h5", {}), InputError);
  DatasetSpec other = small_spec(11);
  other.seed = 43;
  other.shard_index = 2;
  other.shard_count = 3;
  synthesize_dataset(other, run_options(dir / "other.h5"));
  EXPECT_THROW(merge_datasets({shards[1], shards[2], dir / "other.h5"}, dir / "bad.h5", {}), InputError);
  EXPECT_THROW(merge_datasets(shards, dir / "merged.h5", {}), InputError) << "exists without force";
  EXPECT_FALSE(fs::exists(dir / "bad.h5"));
}

// An interrupted run leaves a valid OUT.partial (complete = 0) holding every completed batch and no OUT;
// --resume finishes it, even after a torn batch, with the same contents as an uninterrupted run.
TEST(Datasets, InterruptedRunResumes) {
  const TempDir dir;
  const DatasetSpec spec = small_spec(9);
  synthesize_dataset(spec, run_options(dir / "whole.h5"));

  DatasetRunOptions o = run_options(dir / "run.h5", 2);
  o.stop_after = 5;
  DatasetRunResult r = synthesize_dataset(spec, o);
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.in_file, 5);
  EXPECT_EQ(r.path, dir / "run.h5.partial");
  EXPECT_FALSE(fs::exists(dir / "run.h5"));
  const MeasurementSet part = read_measurements(dir / "run.h5.partial");  // a valid measurement file
  EXPECT_EQ(part.frames, 5);
  EXPECT_FALSE(read_dataset_info(dir / "run.h5.partial").complete);

  // Without --resume or --force the partial file is protected.
  EXPECT_THROW(synthesize_dataset(spec, run_options(dir / "run.h5")), InputError);
  // Resuming with other settings is refused.
  DatasetSpec wrong = spec;
  wrong.seed = 1;
  DatasetRunOptions ro = run_options(dir / "run.h5", 3);
  ro.resume = true;
  EXPECT_THROW(synthesize_dataset(wrong, ro), InputError);

  // A torn batch: one dataset got a row the others did not.
  {
    h5::File f(dir / "run.h5.partial", h5::File::Mode::ReadWrite);
    std::vector<cfloat> junk(spec.grid.voxels(), cfloat(9, 9));
    f.append("/targets", junk.data(), 1);
  }
  // A cancelled resume (the signal path) writes nothing more but keeps the file valid.
  std::atomic<bool> cancel{true};
  ro.cancel = &cancel;
  r = synthesize_dataset(spec, ro);
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.in_file, 5);
  ro.cancel = nullptr;
  r = synthesize_dataset(spec, ro);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.written, 4);
  EXPECT_FALSE(fs::exists(dir / "run.h5.partial"));
  expect_same_contents(dir / "whole.h5", dir / "run.h5");
  // Resuming a complete file is a no-op.
  r = synthesize_dataset(spec, ro);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.written, 0);
}

// A cancel request (what SIGINT sets) mid-run stops after the batch in progress.
TEST(Datasets, CancelStopsAfterCurrentBatch) {
  const TempDir dir;
  const DatasetSpec spec = small_spec(12);
  std::atomic<bool> cancel{false};
  DatasetRunOptions o = run_options(dir / "c.h5", 2);
  o.cancel = &cancel;
  o.progress = [&](std::int64_t done, std::int64_t) {
    if (done >= 2) cancel = true;
  };
  const DatasetRunResult r = synthesize_dataset(spec, o);
  EXPECT_FALSE(r.complete);
  EXPECT_GE(r.in_file, 2);
  EXPECT_LT(r.in_file, 12);
  EXPECT_EQ(read_measurements(dir / "c.h5.partial").frames, r.in_file);
}

TEST(Datasets, RefusesBadSpecsAndExistingOutputs) {
  const TempDir dir;
  DatasetSpec spec = small_spec(4);
  synthesize_dataset(spec, run_options(dir / "x.h5"));
  const auto before = file_bytes(dir / "x.h5");
  EXPECT_THROW(synthesize_dataset(spec, run_options(dir / "x.h5")), InputError);
  EXPECT_TRUE(before == file_bytes(dir / "x.h5")) << "the existing file must be untouched";
  DatasetRunOptions resume = run_options(dir / "new.h5");
  resume.resume = true;  // nothing to resume: starts
  EXPECT_TRUE(synthesize_dataset(spec, resume).complete);
  EXPECT_THROW(synthesize_dataset(spec, run_options(dir / "no-such-folder/x.h5")), InputError);
  for (auto change : std::vector<std::function<void(DatasetSpec&)>>{
           [](DatasetSpec& s) { s.count = 0; }, [](DatasetSpec& s) { s.count = -3; },
           [](DatasetSpec& s) { s.shard_index = 3, s.shard_count = 2; },
           [](DatasetSpec& s) { s.shard_count = 5; },  // more shards than samples
           [](DatasetSpec& s) { s.config.min_objects = 0; }}) {
    DatasetSpec bad = small_spec(4);
    change(bad);
    EXPECT_THROW(synthesize_dataset(bad, run_options(dir / "bad.h5")), InputError);
  }
  int i = 0, n = 0;
  EXPECT_THROW(parse_shard_option("3/2", i, n), InputError);
  EXPECT_THROW(parse_shard_option("-1/2", i, n), InputError);
  EXPECT_THROW(parse_shard_option("1/0", i, n), InputError);
  EXPECT_THROW(parse_shard_option("a/b", i, n), InputError);
  EXPECT_THROW(parse_shard_option("1", i, n), InputError);
  EXPECT_NO_THROW(parse_shard_option("1/2", i, n));
  EXPECT_FALSE(fs::exists(dir / "bad.h5"));
}

}  // namespace
}  // namespace nfmimo
