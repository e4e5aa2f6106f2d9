// Image-quality metrics: scikit-image agreement on fixed volumes, known answers, normalisation, bad input.
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "models/metrics.hpp"
#include "radar/error.hpp"

namespace nfmimo {
namespace {

namespace fs = std::filesystem;

// A fixed test volume: a few Gaussian blobs of different widths on a weak background, max exactly 1.
std::vector<double> blob_volume(VolumeShape s, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> U(0.0, 1.0);
  std::vector<double> v(s.voxels(), 0.0);
  for (int blob = 0; blob < 4; ++blob) {
    const double cx = U(rng) * s.nx, cy = U(rng) * s.ny, cz = U(rng) * s.nz, w = 0.8 + 2.5 * U(rng),
                 a = U(rng);
    for (int x = 0; x < s.nx; ++x)
      for (int y = 0; y < s.ny; ++y)
        for (int z = 0; z < s.nz; ++z) {
          const double d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy) + (z - cz) * (z - cz);
          v[(std::size_t(x) * s.ny + y) * s.nz + z] += a * std::exp(-d2 / (2 * w * w));
        }
  }
  double peak = 0;
  for (double& x : v) peak = std::max(peak, x += 0.02 * U(rng));
  for (double& x : v) x /= peak;
  return v;
}

// `truth` degraded the way reconstructions are: a shifted, blurred copy plus uniform noise, renormalised.
std::vector<double> degraded(const std::vector<double>& truth, VolumeShape s, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> U(-1.0, 1.0);
  std::vector<double> v(truth.size());
  double peak = 0;
  for (int x = 0; x < s.nx; ++x)
    for (int y = 0; y < s.ny; ++y)
      for (int z = 0; z < s.nz; ++z) {
        const int zs = std::min(z + 1, s.nz - 1);
        const std::size_t i = (std::size_t(x) * s.ny + y) * s.nz + z;
        const double shifted = 0.7 * truth[(std::size_t(x) * s.ny + y) * s.nz + zs] + 0.3 * truth[i];
        v[i] = std::abs(shifted + 0.08 * U(rng));
        peak = std::max(peak, v[i]);
      }
  for (double& x : v) x /= peak;
  return v;
}

void write_raw(const fs::path& path, const std::vector<double>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(double)));
  ASSERT_TRUE(f.good()) << path;
}

// Runs tests/python/skimage_metrics.py with Debian's python3 (the one with scikit-image).
nlohmann::json skimage_metrics(const std::vector<double>& est, const std::vector<double>& truth,
                               VolumeShape s) {
  const fs::path dir = fs::temp_directory_path() / ("nfmimo_metrics_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  write_raw(dir / "est.f64", est);
  write_raw(dir / "truth.f64", truth);
  const std::string cmd = "/usr/bin/python3 " + std::string(NFMIMO_SOURCE_DIR) +
                          "/tests/python/skimage_metrics.py " + (dir / "est.f64").string() + " " +
                          (dir / "truth.f64").string() + " " + std::to_string(s.nx) + " " +
                          std::to_string(s.ny) + " " + std::to_string(s.nz);
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    const int rc = ::pclose(p);
    EXPECT_EQ(rc, 0) << cmd << "\n" << out;
  }
  fs::remove_all(dir);
  return nlohmann::json::parse(out);
}

class MetricsVsSkimage : public ::testing::TestWithParam<VolumeShape> {};

// Double precision on both sides; only the summation order differs, so agreement to ~1e-12 is expected and
// 1e-9 leaves room without hiding a real difference (a wrong edge mode or covariance changes SSIM by >1e-3).
TEST_P(MetricsVsSkimage, PsnrAndBothSsimsAgree) {
  const VolumeShape s = GetParam();
  const auto truth = blob_volume(s, 11);
  const auto est = degraded(truth, s, 12);
  const nlohmann::json ref = skimage_metrics(est, truth, s);
  const ImageQuality q = image_quality_normalized(est, truth, s);
  EXPECT_NEAR(q.psnr_db, ref["psnr"].get<double>(), 1e-9);
  EXPECT_NEAR(q.ssim_3d, ref["ssim3d"].get<double>(), 1e-9);
  EXPECT_NEAR(q.ssim_2d, ref["ssim2d"].get<double>(), 1e-9);
  // The data are far from trivial: the metrics are in the informative range.
  EXPECT_GT(q.psnr_db, 10);
  EXPECT_LT(q.psnr_db, 40);
  EXPECT_GT(q.ssim_3d, 0.05);
  EXPECT_LT(q.ssim_3d, 0.98);
  EXPECT_LT(std::abs(q.ssim_3d - q.ssim_2d), 0.5);
}

// The paper's grid, and an odd shape where every axis has a different length (catches transposed strides).
INSTANTIATE_TEST_SUITE_P(Shapes, MetricsVsSkimage,
                         ::testing::Values(VolumeShape{25, 25, 49}, VolumeShape{13, 17, 12}),
                         [](const auto& info) {
                           return std::to_string(info.param.nx) + "x" + std::to_string(info.param.ny) + "x" +
                                  std::to_string(info.param.nz);
                         });

TEST(Metrics, PerfectReconstructionIsInfinitePsnrAndUnitSsim) {
  const VolumeShape s{12, 14, 16};
  const auto truth = blob_volume(s, 3);
  // A complex volume rotated by -90 degrees and scaled by 32 (both exact in float): normalising the
  // magnitudes makes the estimate identical to the truth.
  std::vector<cfloat> t(s.voxels()), e(s.voxels());
  for (std::size_t i = 0; i < t.size(); ++i) {
    t[i] = std::polar(static_cast<float>(truth[i]), 0.1f * i);
    e[i] = t[i] * cfloat(0.0f, -32.0f);
  }
  const ImageQuality q = image_quality(e, t, s);
  EXPECT_TRUE(std::isinf(q.psnr_db) && q.psnr_db > 0) << q.psnr_db;
  EXPECT_NEAR(q.ssim_3d, 1.0, 1e-12);
  EXPECT_NEAR(q.ssim_2d, 1.0, 1e-12);
  EXPECT_EQ(q.nmse, 0.0);
}

// Noise of known power that leaves the maximum in place: normalisation changes nothing, so the PSNR must be
// -10 log10(mean noise^2) exactly, and the NMSE is the noise energy over the truth's energy.
TEST(Metrics, KnownNoiseLevelGivesExpectedPsnr) {
  const VolumeShape s{9, 10, 11};
  const std::size_t V = s.voxels();
  std::vector<float> truth(V, 0.5f), est(V);
  truth[123] = 1.0f;
  const double sigma = 0.05;
  double noise_energy = 0, truth_energy = 0;
  for (std::size_t i = 0; i < V; ++i) {
    const double n = i == 123 ? 0.0 : (i % 2 ? sigma : -sigma);
    est[i] = static_cast<float>(truth[i] + n);
    noise_energy += (double(est[i]) - truth[i]) * (double(est[i]) - truth[i]);
    truth_energy += double(truth[i]) * truth[i];
  }
  const ImageQuality q = image_quality(std::span<const float>(est), std::span<const float>(truth), s);
  EXPECT_NEAR(q.psnr_db, -10 * std::log10(noise_energy / V), 1e-9);
  EXPECT_NEAR(q.psnr_db, 26.02, 0.01);  // -10 log10(0.05^2) = 26.0206 (V-1 of V voxels carry the noise)
  EXPECT_NEAR(q.nmse, noise_energy / truth_energy, 1e-12);
  EXPECT_LT(q.ssim_3d, 1.0);
}

TEST(Metrics, BlankEstimateHasUnitNmse) {
  const VolumeShape s{11, 11, 11};
  const auto truth = blob_volume(s, 5);
  const std::vector<double> zero(truth.size(), 0.0);
  EXPECT_DOUBLE_EQ(nmse(zero, truth), 1.0);
  EXPECT_NEAR(psnr_db(zero, truth), -10 * std::log10(mean_squared_error(zero, truth)), 1e-12);
  const ImageQuality q =
      image_quality(std::vector<cfloat>(truth.size()), std::vector<cfloat>(truth.begin(), truth.end()), s);
  EXPECT_DOUBLE_EQ(q.nmse, 1.0);
}

TEST(Metrics, SsimIsSymmetricAndBelowOneForDifferentVolumes) {
  const VolumeShape s{13, 12, 15};
  const auto a = blob_volume(s, 7), b = degraded(a, s, 8);
  EXPECT_NEAR(ssim_3d(a, b, s), ssim_3d(b, a, s), 1e-14);
  EXPECT_NEAR(ssim_2d_slices(a, b, s), ssim_2d_slices(b, a, s), 1e-14);
  EXPECT_LT(ssim_3d(a, b, s), 0.99);
}

// Axes shorter than the 11-tap window (which scikit-image refuses) are filtered with the periodic reflection
// and not cropped: the result is still a valid SSIM (1 for identical volumes, finite otherwise).
TEST(Metrics, ShortAxesAreHandled) {
  const VolumeShape s{5, 4, 6};
  const auto a = blob_volume(s, 9), b = degraded(a, s, 10);
  EXPECT_NEAR(ssim_3d(a, a, s), 1.0, 1e-12);
  const double v = ssim_3d(a, b, s);
  EXPECT_TRUE(std::isfinite(v));
  EXPECT_LT(v, 1.0);
}

TEST(Metrics, RejectsMismatchedVolumes) {
  const std::vector<double> a(10, 0.5), b(12, 0.5);
  EXPECT_THROW(psnr_db(a, b), InputError);
  EXPECT_THROW(ssim_3d(a, a, VolumeShape{2, 2, 2}), InputError);
  const std::vector<float> nan_volume(8, std::numeric_limits<float>::quiet_NaN());
  EXPECT_THROW(image_quality(std::span<const float>(nan_volume), std::span<const float>(nan_volume),
                             VolumeShape{2, 2, 2}),
               InputError);
}

}  // namespace
}  // namespace nfmimo
