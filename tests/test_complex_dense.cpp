// The complex fully connected first stage of DeepDI / Deep2S+: fast path vs double reference, gradients vs
// finite differences, and initialisation to A^H reproducing the adjoint.
#include <gtest/gtest.h>

#include "models/learned/complex_dense.hpp"
#include "radar/cpu_operator.hpp"
#include "tests/test_util.hpp"

namespace nfmimo::nn {
namespace {

TEST(ComplexDense, ForwardAndBackwardMatchReference) {
  const int M = 37, V = 53, n = 3;
  const ComplexDense layer = [&] {
    ComplexDense l = ComplexDense::random(M, V, 7);
    const auto b = test::random_complex<float>(V, 8);
    l.bias().assign(b.begin(), b.end());
    return l;
  }();
  const auto y = test::random_complex<float>(std::size_t(n) * M, 9);
  const std::vector<float> scale = {0.5f, 2.0f, 1.25f};
  std::vector<float> out(std::size_t(n) * 2 * V);
  std::vector<double> ref(out.size());
  layer.forward(y.data(), n, out.data(), scale.data());
  complex_dense_forward_reference(layer, y.data(), n, ref.data(), scale.data());
  EXPECT_TRUE(test::relative_error_below(out, ref, 1e-5));  // float GEMM over 37 terms

  std::vector<float> g(out.size());
  std::vector<double> gd(out.size());
  for (std::size_t i = 0; i < g.size(); ++i) gd[i] = g[i] = std::sin(0.37 * i) + 0.1f;
  std::vector<cfloat> gw(std::size_t(V) * M), gb(V);
  std::vector<cdouble> gw_ref(gw.size()), gb_ref(gb.size());
  layer.backward(y.data(), n, g.data(), gw.data(), gb.data(), scale.data());
  complex_dense_backward_reference(layer, y.data(), n, gd.data(), gw_ref.data(), gb_ref.data(), scale.data());
  EXPECT_TRUE(test::relative_error_below(gw, gw_ref, 1e-5));
  EXPECT_TRUE(test::relative_error_below(gb, gb_ref, 1e-5));
}

// L = sum(c * out) is linear in W, so central differences are exact up to rounding: they check the convention
// dL/dRe(W) + j dL/dIm(W) = g conj(y).
TEST(ComplexDense, GradientMatchesFiniteDifferences) {
  const int M = 5, V = 4, n = 2;
  ComplexDense layer = ComplexDense::random(M, V, 3);
  const auto y = test::random_complex<float>(std::size_t(n) * M, 4);
  std::vector<double> c(std::size_t(n) * 2 * V);
  for (std::size_t i = 0; i < c.size(); ++i) c[i] = std::cos(1.3 * i);
  auto loss = [&](const ComplexDense& l) {
    std::vector<double> out(c.size());
    complex_dense_forward_reference(l, y.data(), n, out.data());
    double s = 0;
    for (std::size_t i = 0; i < c.size(); ++i) s += c[i] * out[i];
    return s;
  };
  std::vector<cdouble> gw(std::size_t(V) * M), gb(V);
  complex_dense_backward_reference(layer, y.data(), n, c.data(), gw.data(), gb.data());
  const float h = 0.25f;  // exact in float for these weights' magnitudes; the loss is linear
  for (std::size_t i = 0; i < gw.size(); ++i)
    for (int part = 0; part < 2; ++part) {
      ComplexDense plus = layer, minus = layer;
      plus.weights()[i] += part == 0 ? cfloat(h, 0) : cfloat(0, h);
      minus.weights()[i] -= part == 0 ? cfloat(h, 0) : cfloat(0, h);
      const double fd = (loss(plus) - loss(minus)) / (2.0 * h);
      const double analytic = part == 0 ? gw[i].real() : gw[i].imag();
      EXPECT_NEAR(fd, analytic, 1e-5 * (1 + std::abs(analytic))) << "weight " << i << " part " << part;
    }
}

// Deep2S+ starts from the physics: the layer initialised to A^H reproduces the exact adjoint.
TEST(ComplexDense, AdjointInitialisationReproducesTheAdjoint) {
  for (bool small : {true, false}) {
    const RadarSystem s = small ? test::small_system(false) : paper_system(5);
    const ImagingGrid g = small ? test::small_grid() : ImagingGrid::paper();
    const ComplexDense layer = ComplexDense::adjoint(s, g);
    const CpuOperator op(s, g);
    const int n = 2;
    const auto y = test::random_complex<float>(s.samples_per_frame() * n, 5);
    std::vector<float> out(std::size_t(n) * 2 * g.voxels());
    layer.forward(y.data(), n, out.data());
    std::vector<cfloat> x(std::size_t(n) * g.voxels()), dense(x.size());
    op.image(Method::Adjoint, y.data(), x.data(), n);
    for (int i = 0; i < n; ++i)
      for (std::size_t v = 0; v < g.voxels(); ++v)
        dense[i * g.voxels() + v] = {out[(std::size_t(i) * 2) * g.voxels() + v],
                                     out[(std::size_t(i) * 2 + 1) * g.voxels() + v]};
    // Both are float computations of the same double weights: 1e-5 covers rounding of weights and sums.
    EXPECT_TRUE(test::relative_error_below(dense, x, 1e-5)) << (small ? "small" : "paper K=5");
  }
}

TEST(ComplexDense, RandomInitialisationIsReproducibleWithTheStatedVariance) {
  const ComplexDense a = ComplexDense::random(400, 300, 11), b = ComplexDense::random(400, 300, 11),
                     c = ComplexDense::random(400, 300, 12);
  EXPECT_EQ(a.weights(), b.weights());
  EXPECT_NE(a.weights(), c.weights());
  double power = 0;
  for (const cfloat& w : a.weights()) power += std::norm(w);
  EXPECT_NEAR(power / a.weights().size(), 1.0 / 400, 0.02 / 400);  // 120 000 draws: ~0.4% standard error
}

}  // namespace
}  // namespace nfmimo::nn
