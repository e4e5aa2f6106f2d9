// CUDA physics operators against the CPU references (label gpu; skipped without a GPU).
//
// Tolerances: float kernels vs the double reference at 1e-5 relative (float rounding of ~1e-7 per term,
// phases reduced in double before the float sincos; an indexing or phase error shows as O(1)). The fast FFT
// mode is compared with the CPU implementation of the same algorithm (1e-5: same arithmetic, different
// summation order) and with the exact adjoint at its stated accuracy (1e-3).
#include <gtest/gtest.h>

#include "kernels/device.hpp"
#include "kernels/gpu_imaging.hpp"
#include "radar/cpu_operator.hpp"
#include "radar/error.hpp"
#include "radar/reference.hpp"
#include "tests/test_util.hpp"

namespace nfmimo {
namespace {

using test::random_complex;
using test::relative_error_below;

class GpuImaging : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  }
};

TEST_F(GpuImaging, ForwardAndMethodsMatchDoubleReference) {
  for (bool uniform : {true, false}) {
    const RadarSystem s = test::small_system(uniform);
    const ImagingGrid g = test::small_grid();
    for (int batch : {1, 3, 9}) {  // exercises the 1-, 2- and 8-sample tiles
      const GpuImagingPlan plan(s, g, batch);
      const auto xd = random_complex<double>(g.voxels() * batch, 40 + batch);
      const auto yd = random_complex<double>(s.samples_per_frame() * batch, 50 + batch);
      std::vector<cfloat> y(s.samples_per_frame() * batch), x(g.voxels() * batch);
      plan.forward_host(test::cast_complex<float, double>(xd).data(), y.data(), batch);
      EXPECT_TRUE(relative_error_below(y, forward_reference(s, g, xd, batch), 1e-5)) << "batch " << batch;
      for (Method m : {Method::Adjoint, Method::Backprojection, Method::Kirchhoff}) {
        plan.image_host(m, ImagingMode::Exact, test::cast_complex<float, double>(yd).data(), x.data(), batch);
        EXPECT_TRUE(relative_error_below(x, image_reference(m, s, g, yd, batch), 1e-5))
            << "method " << int(m) << " batch " << batch << " uniform " << uniform;
      }
    }
  }
}

TEST_F(GpuImaging, PaperSizeMatchesFastCpu) {
  const RadarSystem s = paper_system(15);
  const ImagingGrid g = ImagingGrid::paper();
  const int batch = 5;
  const GpuImagingPlan plan(s, g, 4);  // host wrapper splits 5 frames into chunks of 4 and 1
  const CpuOperator cpu(s, g);
  const auto x = random_complex<float>(g.voxels() * batch, 61);
  const auto y = random_complex<float>(s.samples_per_frame() * batch, 62);
  std::vector<cfloat> gy(y.size()), cy(y.size()), gx(x.size()), cx(x.size());
  plan.forward_host(x.data(), gy.data(), batch);
  cpu.forward(x.data(), cy.data(), batch);
  EXPECT_TRUE(relative_error_below(gy, cy, 1e-5));
  for (Method m : {Method::Adjoint, Method::Backprojection, Method::Kirchhoff}) {
    plan.image_host(m, ImagingMode::Exact, y.data(), gx.data(), batch);
    cpu.image(m, y.data(), cx.data(), batch);
    EXPECT_TRUE(relative_error_below(gx, cx, 1e-5)) << "method " << int(m);
  }
}

TEST_F(GpuImaging, FastModeMatchesCpuFastModeAndExact) {
  const ImagingGrid g = ImagingGrid::paper();
  for (int K : {5, 15, 40}) {
    const RadarSystem s = paper_system(K);
    const int batch = 6;
    const GpuImagingPlan plan(s, g, 8);
    const CpuOperator cpu(s, g);
    const auto y = random_complex<float>(s.samples_per_frame() * batch, 70 + K);
    std::vector<cfloat> gx(g.voxels() * batch), cx(gx.size()), ex(gx.size());
    for (Method m : {Method::Adjoint, Method::Backprojection}) {
      plan.image_host(m, ImagingMode::Fast, y.data(), gx.data(), batch);
      cpu.image_fast(m, y.data(), cx.data(), batch);
      EXPECT_TRUE(relative_error_below(gx, cx, 1e-5)) << "K=" << K;
      cpu.image(m, y.data(), ex.data(), batch);
      EXPECT_TRUE(relative_error_below(gx, ex, 1e-3)) << "K=" << K;
    }
  }
}

TEST_F(GpuImaging, DotProductAdjointTest) {
  const RadarSystem s = paper_system(5);
  const ImagingGrid g(Axis::linspace(-0.1, 0.1, 9), Axis::linspace(-0.1, 0.1, 7),
                      Axis::linspace(0.35, 0.6, 11));
  const GpuImagingPlan plan(s, g, 1);
  const auto x = random_complex<float>(g.voxels(), 81);
  const auto y = random_complex<float>(s.samples_per_frame(), 82);
  std::vector<cfloat> Ax(y.size()), AHy(x.size());
  plan.forward_host(x.data(), Ax.data(), 1);
  plan.image_host(Method::Adjoint, ImagingMode::Exact, y.data(), AHy.data(), 1);
  cdouble lhs = 0, rhs = 0;
  for (std::size_t i = 0; i < y.size(); ++i) lhs += std::conj(cdouble(Ax[i])) * cdouble(y[i]);
  for (std::size_t i = 0; i < x.size(); ++i) rhs += std::conj(cdouble(x[i])) * cdouble(AHy[i]);
  EXPECT_LE(std::abs(lhs - rhs), 1e-5 * std::abs(lhs));
}

TEST_F(GpuImaging, RefusesBadRequests) {
  const GpuImagingPlan plan(test::small_system(false), test::small_grid(), 2);
  std::vector<cfloat> y(test::small_system(false).samples_per_frame()), x(test::small_grid().voxels());
  EXPECT_THROW(plan.image_host(Method::Adjoint, ImagingMode::Fast, y.data(), x.data(), 1), InputError);
  EXPECT_THROW(GpuImagingPlan(test::small_system(), test::small_grid(), 0), InputError);
}

}  // namespace
}  // namespace nfmimo
