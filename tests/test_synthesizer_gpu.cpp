// The synthesizer on the GPU (label gpu; skipped without one): targets bit-identical to the CPU's,
// measurements within float tolerance, the device-memory API, and datasets made on the GPU.
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#if NFMIMO_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#include "data/measurement_file.hpp"
#include "kernels/device.hpp"
#include "synthesizer/dataset.hpp"
#include "synthesizer/synthesizer.hpp"
#include "tests/test_util.hpp"

namespace nfmimo {
namespace {

namespace fs = std::filesystem;
using test::relative_error_below;

class GpuSynth : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda_unavailable_reason();
  }
};

// First voxel where two target buffers differ, for the failure message.
std::string first_difference(const std::vector<cfloat>& a, const std::vector<cfloat>& b, std::size_t V) {
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(cfloat)) != 0)
      return fmt::format("sample {} voxel {}: cpu ({}, {}) vs gpu ({}, {})", i / V, i % V, a[i].real(),
                         a[i].imag(), b[i].real(), b[i].imag());
  return "none";
}

std::vector<SceneConfig> configs() {
  SceneConfig plain;
  SceneConfig constant_smooth;
  constant_smooth.phase = PhaseModel::ConstantPerObject;
  constant_smooth.smooth_depth = 0.5;
  constant_smooth.max_objects = 8;
  SceneConfig points;
  points.kind_weights = {0, 0, 0, 1, 1};  // plates and points: the thinnest objects
  points.supersampling = 3;
  return {plain, constant_smooth, points};
}

// The same explicitly rounded formulas and phase table on both devices: identical bits, not just close
// values.
TEST_F(GpuSynth, TargetsBitIdenticalToCpu) {
  const RadarSystem s = paper_system(15);
  const ImagingGrid g = ImagingGrid::paper();
  const std::size_t V = g.voxels();
  const int n = 48;
  for (const SceneConfig& c : configs()) {
    const Synthesizer cpu(s, g, c, 123, DeviceKind::Cpu, 16), gpu(s, g, c, 123, DeviceKind::Cuda, 16);
    std::vector<cfloat> a(V * n), b(V * n);
    cpu.generate_targets(5000, n, a.data());
    gpu.generate_targets(5000, n, b.data());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(cfloat)), 0)
        << scene_config_json(c) << "\nfirst difference: " << first_difference(a, b, V);
  }
}

// Measurements: both forward models are within 1e-5 of the double reference (their own tests), so they agree
// within 2e-5; the noise uses the same Philox draws (device log/sin/cos differ by ulps) and the SNRs are
// equal.
TEST_F(GpuSynth, MeasurementsWithinFloatTolerance) {
  const RadarSystem s = paper_system(15);
  const ImagingGrid g = ImagingGrid::paper();
  for (bool noise : {false, true}) {
    SceneConfig c;
    c.noise = noise;
    c.min_snr_db = 10;
    c.max_snr_db = 30;
    const Synthesizer cpu(s, g, c, 9, DeviceKind::Cpu, 16), gpu(s, g, c, 9, DeviceKind::Cuda, 16);
    const SampleBatch a = cpu.batch(77, 20), b = gpu.batch(77, 20);
    EXPECT_EQ(std::memcmp(a.targets.data(), b.targets.data(), a.targets.size() * sizeof(cfloat)), 0);
    EXPECT_TRUE(relative_error_below(b.measurements, a.measurements, 2e-5)) << "noise " << noise;
    EXPECT_EQ(a.snr_db, b.snr_db);
  }
}

#if NFMIMO_HAVE_CUDA
// The trainer's API: device buffers on the caller's streams (switching streams between calls) give what the
// host API gives.
TEST_F(GpuSynth, DeviceApiMatchesHostApi) {
  const RadarSystem s = paper_system(10);
  const ImagingGrid g = ImagingGrid::paper();
  const SceneConfig c;
  const Synthesizer gpu(s, g, c, 31, DeviceKind::Cuda, 8);
  const std::size_t V = g.voxels(), S = s.samples_per_frame();
  cfloat *dx = nullptr, *dy = nullptr;
  float* ds = nullptr;
  ASSERT_EQ(cudaMalloc(&dx, 2 * 8 * V * sizeof(cfloat)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dy, 2 * 8 * S * sizeof(cfloat)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&ds, 2 * 8 * sizeof(float)), cudaSuccess);
  cudaStream_t s1, s2;
  ASSERT_EQ(cudaStreamCreate(&s1), cudaSuccess);
  ASSERT_EQ(cudaStreamCreate(&s2), cudaSuccess);
  gpu.generate_device(0, 8, dx, dy, ds, s1);
  gpu.generate_device(8, 8, dx + 8 * V, dy + 8 * S, ds + 8, s2);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<cfloat> x(16 * V), y(16 * S);
  std::vector<float> snr(16);
  cudaMemcpy(x.data(), dx, x.size() * sizeof(cfloat), cudaMemcpyDeviceToHost);
  cudaMemcpy(y.data(), dy, y.size() * sizeof(cfloat), cudaMemcpyDeviceToHost);
  cudaMemcpy(snr.data(), ds, snr.size() * sizeof(float), cudaMemcpyDeviceToHost);
  const SampleBatch h = gpu.batch(0, 16);
  EXPECT_EQ(std::memcmp(x.data(), h.targets.data(), x.size() * sizeof(cfloat)), 0);
  EXPECT_EQ(std::memcmp(y.data(), h.measurements.data(), y.size() * sizeof(cfloat)), 0);
  EXPECT_EQ(snr, h.snr_db);
  cudaStreamDestroy(s1);
  cudaStreamDestroy(s2);
  cudaFree(dx);
  cudaFree(dy);
  cudaFree(ds);
}
#endif

TEST_F(GpuSynth, DatasetOnGpuMatchesCpu) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("nfmimo-gpu-dataset-{}", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  DatasetSpec spec;
  spec.count = 40;
  spec.seed = 8;
  spec.system = paper_system(15);
  spec.grid = ImagingGrid::paper();
  DatasetRunOptions o;
  o.batch = 16;
  for (DeviceKind d : {DeviceKind::Cpu, DeviceKind::Cuda}) {
    o.device = d;
    o.output = (dir / (to_string(d) + ".h5")).string();
    ASSERT_TRUE(synthesize_dataset(spec, o).complete);
  }
  const MeasurementSet a = read_measurements((dir / "cpu.h5").string()),
                       b = read_measurements((dir / "cuda.h5").string());
  EXPECT_EQ(std::memcmp(a.targets.data(), b.targets.data(), a.targets.size() * sizeof(cfloat)), 0);
  EXPECT_TRUE(relative_error_below(b.measurements, a.measurements, 2e-5));
  EXPECT_EQ(read_dataset_info((dir / "cuda.h5").string()).device, "cuda");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace nfmimo
