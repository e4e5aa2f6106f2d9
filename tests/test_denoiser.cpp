// The pnp denoiser's pieces (models/learned/denoiser.hpp): the training pairs follow the documented noise
// model and are reproducible; NetworkDenoiser normalises by the peak (scale-equivariant, zeros stay zero) and
// refuses a model that is not a denoiser.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>

#include "models/learned/denoiser.hpp"
#include "radar/error.hpp"
#include "tests/test_util.hpp"

namespace nfmimo {
namespace {

ImagingGrid tiny_grid() {
  return ImagingGrid(Axis::linspace(-0.08, 0.08, 8), Axis::linspace(-0.08, 0.08, 8),
                     Axis::linspace(0.4, 0.55, 8));
}

TEST(DenoiserPairs, FollowTheNoiseModel) {
  nn::DenoiserSourceSettings s;
  s.grid = tiny_grid();
  s.sigma_max = 0.1;
  const int n = 24;
  const std::size_t V = s.grid.voxels();
  std::vector<float> in(n * V), target(n * V), in2(n * V), target2(n * V);
  nn::make_denoiser_pairs(s, 5, 100, n, in.data(), target.data());
  nn::make_denoiser_pairs(s, 5, 100, n, in2.data(), target2.data());
  EXPECT_EQ(in, in2) << "deterministic";
  EXPECT_EQ(target, target2);
  double lo = INFINITY, hi = 0;
  for (int k = 0; k < n; ++k) {
    const float* t = target.data() + k * V;
    const float* x = in.data() + k * V;
    EXPECT_NEAR(*std::max_element(t, t + V), 1.0f, 1e-6) << "targets have a maximum of 1";
    // sigma estimated from the voxels far from the clip at 0 (target >= 0.5).
    double sum = 0, count = 0;
    for (std::size_t v = 0; v < V; ++v) {
      ASSERT_GE(x[v], 0.0f) << "inputs are clipped at 0";
      if (t[v] >= 0.5f) sum += double(x[v] - t[v]) * (x[v] - t[v]), count += 1;
    }
    if (count < 50) continue;  // too few bright voxels for an estimate
    const double sigma = std::sqrt(sum / count);
    EXPECT_LT(sigma, 0.1 * 1.3) << "sample " << k;
    lo = std::min(lo, sigma);
    hi = std::max(hi, sigma);
  }
  EXPECT_LT(lo, 0.04) << "sigma is drawn per sample in [0, sigma_max]";
  EXPECT_GT(hi, 0.06);
  // sigma_max = 0: the input is the target.
  s.sigma_max = 0;
  nn::make_denoiser_pairs(s, 5, 100, 2, in.data(), target.data());
  for (std::size_t v = 0; v < 2 * V; ++v) ASSERT_EQ(in[v], target[v]);
}

TEST(NetworkDenoiser, NormalisesByThePeakAndChecksTheRole) {
  const ImagingGrid grid = tiny_grid();
  const std::size_t V = grid.voxels();
  nn::Model model = nn::make_model("unet3d", paper_system(4), grid, nn::ArchitectureOptions{2, 8}, 3);
  EXPECT_THROW(nn::NetworkDenoiser(model, DeviceKind::Cpu), InputError);
  model.role = nn::kDenoiserRole;
  nn::NetworkDenoiser d(model, DeviceKind::Cpu);
  const auto r = test::random_complex<float>(V, 9);
  std::vector<float> m(V), m_scaled(V), out(V), out_scaled(V);
  for (std::size_t i = 0; i < V; ++i) m[i] = std::abs(r[i]), m_scaled[i] = 250.0f * m[i];
  d.denoise(m.data(), out.data());
  d.denoise(m_scaled.data(), out_scaled.data());
  for (auto& v : out_scaled) v /= 250.0f;
  EXPECT_TRUE(test::relative_error_below(out_scaled, out, 1e-5));
  EXPECT_GT(*std::max_element(out.begin(), out.end()), 0.0f);
  std::vector<float> zeros(V, 0.0f);
  d.denoise(zeros.data(), out.data());
  for (float v : out) ASSERT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace nfmimo
