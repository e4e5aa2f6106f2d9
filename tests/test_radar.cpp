// Physics operators on the CPU: double reference, fast float path, adjointness, point targets, fast mode.
#include <algorithm>
#include <cmath>
#include <numeric>

#include <gtest/gtest.h>

#include "radar/cpu_operator.hpp"
#include "radar/error.hpp"
#include "radar/reference.hpp"
#include "tests/test_util.hpp"

namespace nfmimo {
namespace {

using test::random_complex;
using test::relative_error_below;

template <class T>
std::complex<double> inner(const std::vector<std::complex<T>>& a, const std::vector<std::complex<T>>& b) {
  std::complex<double> s = 0;  // <a, b> = sum conj(a) b
  for (std::size_t i = 0; i < a.size(); ++i)
    s += std::conj(std::complex<double>(a[i])) * std::complex<double>(b[i]);
  return s;
}

constexpr Method kMethods[] = {Method::Adjoint, Method::Backprojection, Method::Kirchhoff};

TEST(System, PaperGeometryAndGrid) {
  const RadarSystem s = paper_system(15);
  EXPECT_EQ(s.transmitters(), 12);
  EXPECT_EQ(s.receivers(), 13);
  EXPECT_EQ(s.frequencies(), 15);
  EXPECT_TRUE(s.sweep.uniform());
  EXPECT_NEAR(s.sweep.step(), 12e9 / 14, 1.0);
  EXPECT_DOUBLE_EQ(s.array.tx().front().x, -0.15);
  EXPECT_DOUBLE_EQ(s.array.tx().front().y, 0.15);  // (a, -a, 0)
  EXPECT_DOUBLE_EQ(s.array.rx().back().y, 0.15);   // (a, a, 0)
  const ImagingGrid g = ImagingGrid::paper();
  EXPECT_EQ(g.voxels(), 25u * 25u * 49u);
  EXPECT_NEAR(g.z()[48], 0.65, 1e-12);
  EXPECT_EQ(g.index(1, 2, 3), (1u * 25 + 2) * 49 + 3);
}

TEST(System, DetectsNonUniformSweep) {
  EXPECT_FALSE(test::small_system(false).sweep.uniform());
  EXPECT_TRUE(test::small_system(true).sweep.uniform());
  EXPECT_TRUE(FrequencySweep({10e9}).uniform());
}

TEST(System, RejectsBadSystems) {
  RadarSystem s = test::small_system();
  s.sweep = FrequencySweep({5e9, -1e9});
  EXPECT_THROW(validate_system(s, "x"), InputError);
  s.sweep = FrequencySweep({5e9, 0.0});
  EXPECT_THROW(validate_system(s, "x"), InputError);
  // A grid whose point (0, 0, 0) coincides with RX 1 at the origin.
  const ImagingGrid on_antenna(Axis::linspace(-0.1, 0.1, 3), Axis::linspace(-0.1, 0.1, 3),
                               Axis::linspace(0, 0.2, 3));
  EXPECT_THROW(validate_grid(on_antenna, test::small_system(), "g"), InputError);
  EXPECT_THROW(CpuOperator(test::small_system(), on_antenna), InputError);
  EXPECT_NO_THROW(validate_grid(test::small_grid(), test::small_system(), "g"));
}

TEST(System, DescribesDifferences) {
  const RadarSystem a = paper_system(15);
  EXPECT_FALSE(describe_difference(a, paper_system(15)).has_value());
  EXPECT_TRUE(describe_difference(a, paper_system(10)).has_value());
  RadarSystem b = a;
  b.sweep = FrequencySweep::linspace(4e9, 16e9 * (1 + 1e-5), 15);
  EXPECT_TRUE(describe_difference(a, b).has_value());
  b.sweep = FrequencySweep::linspace(4e9, 16e9 * (1 + 1e-8), 15);
  EXPECT_FALSE(describe_difference(a, b).has_value());
}

// The factorised per-antenna gains reproduce the weights written in the issue, term by term.
TEST(Reference, FactorisedGainsMatchIssueWeights) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> U(0.2, 1.0);
  for (Method m : kMethods)
    for (int i = 0; i < 100; ++i) {
      const double kappa = 80 + 250 * U(rng), rt = U(rng), rr = U(rng), dzt = 0.9 * rt, dzr = 0.8 * rr;
      const SideGain gt = side_gain(m, true, rt, dzt), gr = side_gain(m, false, rr, dzr);
      const cdouble w = cdouble(gt.c0, kappa * gt.c1) * cdouble(gr.c0, kappa * gr.c1) *
                        std::exp(cdouble(0, kappa * (rt + rr)));
      const cdouble ref = image_weight_reference(m, kappa, rt, rr, dzt, dzr);
      EXPECT_LE(std::abs(w - ref), 1e-12 * std::abs(ref)) << "method " << int(m);
    }
}

// <A x, y> = <x, A^H y> in double precision.
TEST(Reference, DotProductAdjointTestDouble) {
  for (bool uniform : {true, false}) {
    const RadarSystem s = test::small_system(uniform);
    const ImagingGrid g = test::small_grid();
    const int batch = 2;
    const auto x = random_complex<double>(g.voxels() * batch, 1);
    const auto y = random_complex<double>(s.samples_per_frame() * batch, 2);
    const auto Ax = forward_reference(s, g, x, batch);
    const auto AHy = image_reference(Method::Adjoint, s, g, y, batch);
    const cdouble lhs = inner(Ax, y), rhs = inner(x, AHy);
    EXPECT_LE(std::abs(lhs - rhs), 1e-12 * std::abs(lhs)) << lhs << " vs " << rhs;
  }
}

class FastCpu : public ::testing::TestWithParam<bool> {};

// Fast float path against the double reference: forward and each method, uniform and non-uniform sweeps.
// Tolerance 1e-5: float rounding of tables and sums (~1e-7 per term) plus the float recurrence-free tables;
// an error in a phase or a gain would show as O(1).
TEST_P(FastCpu, MatchesDoubleReference) {
  const RadarSystem s = test::small_system(GetParam());
  const ImagingGrid g = test::small_grid();
  const int batch = 3;
  const CpuOperator op(s, g);
  const auto xd = random_complex<double>(g.voxels() * batch, 11);
  const auto yd = random_complex<double>(s.samples_per_frame() * batch, 12);
  const auto xf = test::cast_complex<float, double>(xd);
  const auto yf = test::cast_complex<float, double>(yd);

  std::vector<cfloat> y(s.samples_per_frame() * batch);
  op.forward(xf.data(), y.data(), batch);
  EXPECT_TRUE(relative_error_below(y, forward_reference(s, g, xd, batch), 1e-5));

  for (Method m : kMethods) {
    std::vector<cfloat> x(g.voxels() * batch);
    op.image(m, yf.data(), x.data(), batch);
    EXPECT_TRUE(relative_error_below(x, image_reference(m, s, g, yd, batch), 1e-5)) << "method " << int(m);
  }
}
INSTANTIATE_TEST_SUITE_P(Sweeps, FastCpu, ::testing::Values(true, false));

// The float operators are adjoint to each other to float accuracy.
TEST(FastCpu, DotProductAdjointTestFloat) {
  const RadarSystem s = paper_system(5);
  const ImagingGrid g(Axis::linspace(-0.1, 0.1, 9), Axis::linspace(-0.1, 0.1, 7),
                      Axis::linspace(0.35, 0.6, 11));
  const CpuOperator op(s, g);
  const auto x = random_complex<float>(g.voxels(), 5);
  const auto y = random_complex<float>(s.samples_per_frame(), 6);
  std::vector<cfloat> Ax(y.size()), AHy(x.size());
  op.forward(x.data(), Ax.data(), 1);
  op.image(Method::Adjoint, y.data(), AHy.data(), 1);
  const cdouble lhs = inner(Ax, y), rhs = inner(x, AHy);
  EXPECT_LE(std::abs(lhs - rhs), 1e-5 * std::abs(lhs)) << lhs << " vs " << rhs;
}

// Paper geometry, full size: the fast path against the reference (one frame; the reference takes seconds).
TEST(FastCpu, PaperSizeMatchesReference) {
  const RadarSystem s = paper_system(5);
  const ImagingGrid g = ImagingGrid::paper();
  const CpuOperator op(s, g);
  const auto xd = random_complex<double>(g.voxels(), 21);
  const auto yd = random_complex<double>(s.samples_per_frame(), 22);
  std::vector<cfloat> y(s.samples_per_frame()), x(g.voxels());
  op.forward(test::cast_complex<float, double>(xd).data(), y.data(), 1);
  EXPECT_TRUE(relative_error_below(y, forward_reference(s, g, xd, 1), 1e-5));
  op.image(Method::Adjoint, test::cast_complex<float, double>(yd).data(), x.data(), 1);
  EXPECT_TRUE(relative_error_below(x, image_reference(Method::Adjoint, s, g, yd, 1), 1e-5));
}

// A point target exactly at a grid point images to a peak at that voxel, for every method.
TEST(FastCpu, PointTargetPeaksAtItsVoxel) {
  const RadarSystem s = paper_system(15);
  const ImagingGrid g = ImagingGrid::paper();
  const CpuOperator op(s, g);
  for (auto [ix, iy, iz] : {std::array{12, 12, 24}, std::array{5, 19, 10}, std::array{20, 3, 40}}) {
    std::vector<cfloat> x(g.voxels()), y(s.samples_per_frame());
    const std::size_t v = g.index(ix, iy, iz);
    x[v] = 1.0f;
    op.forward(x.data(), y.data(), 1);
    for (Method m : kMethods) {
      std::vector<cfloat> img(g.voxels());
      op.image(m, y.data(), img.data(), 1);
      const auto peak = std::max_element(img.begin(), img.end(),
                                         [](cfloat a, cfloat b) { return std::abs(a) < std::abs(b); }) -
                        img.begin();
      EXPECT_EQ(static_cast<std::size_t>(peak), v)
          << "method " << int(m) << " voxel " << ix << "," << iy << "," << iz;
    }
  }
}

// The fast FFT-mode adjoint is within its stated accuracy (1e-3 relative) of the exact one, on random data
// and on a point target, for K = 5, 15 and 40. The measured error is printed for docs/physics.md.
TEST(FastMode, AccuracyAgainstExact) {
  const ImagingGrid g = ImagingGrid::paper();
  for (int K : {5, 15, 40}) {
    const RadarSystem s = paper_system(K);
    const CpuOperator op(s, g);
    for (Method m : {Method::Adjoint, Method::Backprojection}) {
      const int batch = 2;
      auto y = random_complex<float>(s.samples_per_frame() * batch, 31);
      // Second frame: a point target (coherent sum), the case imaging cares about.
      std::vector<cfloat> x(g.voxels());
      x[g.index(8, 14, 30)] = 1;
      op.forward(x.data(), y.data() + s.samples_per_frame(), 1);
      std::vector<cfloat> exact(g.voxels() * batch), fast(g.voxels() * batch);
      op.image(m, y.data(), exact.data(), batch);
      op.image_fast(m, y.data(), fast.data(), batch);
      const auto res = relative_error_below(fast, exact, 1e-3);
      EXPECT_TRUE(res) << "K=" << K << " method " << int(m);
      std::printf("[ fast mode ] K=%d method=%d: %s\n", K, int(m), res.message());
    }
  }
}

TEST(FastMode, RefusesNonUniformSweepAndKirchhoff) {
  const CpuOperator nonuniform(test::small_system(false), test::small_grid());
  std::vector<cfloat> y(test::small_system(false).samples_per_frame()), x(test::small_grid().voxels());
  EXPECT_THROW(nonuniform.image_fast(Method::Adjoint, y.data(), x.data(), 1), InputError);
  const CpuOperator uniform(test::small_system(true), test::small_grid());
  EXPECT_THROW(uniform.image_fast(Method::Kirchhoff, y.data(), x.data(), 1), InputError);
}

}  // namespace
}  // namespace nfmimo
