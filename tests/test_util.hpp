// Shared helpers of the test suite: random data, error measures that check finiteness first and report the
// worst element, small systems for reference comparisons.
#pragma once

#include <cmath>
#include <complex>
#include <cstdlib>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "radar/complex.hpp"
#include "radar/system.hpp"

namespace nfmimo::test {

// A read-only span over a vector of any allocator (the layer APIs take spans; tests hold vectors).
template <class T, class A>
std::span<const T> view(const std::vector<T, A>& v) {
  return {v.data(), v.size()};
}

template <class T>
std::vector<std::complex<T>> random_complex(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<std::complex<T>> v(n);
  for (auto& z : v) z = {static_cast<T>(g(rng)), static_cast<T>(g(rng))};
  return v;
}

template <class To, class From>
std::vector<std::complex<To>> cast_complex(std::span<const std::complex<From>> v) {
  std::vector<std::complex<To>> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i)
    out[i] = {static_cast<To>(v[i].real()), static_cast<To>(v[i].imag())};
  return out;
}

// ||a - b|| / ||b|| (2-norm over all elements); a gtest failure names the first non-finite element and the
// worst element if the tolerance is exceeded.
template <class A, class B>
::testing::AssertionResult relative_error_below(std::span<const A> a, std::span<const B> b, double tol) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "sizes differ: " << a.size() << " vs " << b.size();
  double num = 0, den = 0, worst = -1;
  std::size_t worst_i = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const std::complex<double> za(std::real(a[i]), std::imag(a[i])), zb(std::real(b[i]), std::imag(b[i]));
    if (!std::isfinite(za.real()) || !std::isfinite(za.imag()))
      return ::testing::AssertionFailure() << "element " << i << " is not finite: " << za;
    const double d = std::norm(za - zb);
    num += d;
    den += std::norm(zb);
    if (d > worst) worst = d, worst_i = i;
  }
  if (den == 0)
    return ::testing::AssertionFailure() << "the reference is all zeros: the comparison proves nothing";
  const double rel = std::sqrt(num / den);
  if (rel <= tol) return ::testing::AssertionSuccess() << "relative error " << rel;
  return ::testing::AssertionFailure()
         << "relative error " << rel << " exceeds " << tol << "; worst element " << worst_i << ": "
         << std::complex<double>(std::real(a[worst_i]), std::imag(a[worst_i])) << " vs "
         << std::complex<double>(std::real(b[worst_i]), std::imag(b[worst_i]));
}

template <class A, class B>
::testing::AssertionResult relative_error_below(const std::vector<A>& a, const std::vector<B>& b,
                                                double tol) {
  return relative_error_below(std::span<const A>(a), std::span<const B>(b), tol);
}

// A small, deliberately irregular system for the slow double reference: 3 TX, 4 RX at different heights,
// 4 uniform frequencies, and a 5 x 4 x 6 grid.
// A gradient that is exactly zero in exact arithmetic (a convolution bias followed by a training-mode batch
// norm: the batch mean removes it) is rounding noise in the double reference (~1e-15) and ~1e-6 or exactly
// zero in float backends. Such gradients are checked to be negligible instead of compared relatively (which
// would compare noise); others are compared at `tol`.
inline ::testing::AssertionResult gradient_matches(const std::vector<float>& fast,
                                                   const std::vector<double>& ref, double tol) {
  double norm = 0;
  for (double v : ref) norm += v * v;
  if (std::sqrt(norm) < 1e-10) {
    for (std::size_t i = 0; i < fast.size(); ++i)
      if (!(std::abs(fast[i]) < 1e-4))
        return ::testing::AssertionFailure() << "element " << i << " should be ~0: " << fast[i];
    return ::testing::AssertionSuccess();
  }
  return relative_error_below(std::span<const float>(fast), std::span<const double>(ref), tol);
}

inline RadarSystem small_system(bool uniform = true) {
  std::vector<Vec3> tx = {{-0.1, -0.05, 0.0}, {0.02, 0.08, 0.01}, {0.09, -0.11, -0.02}};
  std::vector<Vec3> rx = {{-0.07, 0.1, 0.0}, {0.0, 0.0, 0.0}, {0.12, 0.03, 0.015}, {-0.02, -0.13, 0.0}};
  std::vector<double> f = uniform ? std::vector<double>{5e9, 7.5e9, 10e9, 12.5e9}
                                  : std::vector<double>{4.1e9, 6.0e9, 9.7e9, 15.2e9};
  return RadarSystem{ArrayGeometry(tx, rx), FrequencySweep(f)};
}

inline ImagingGrid small_grid() {
  return ImagingGrid(Axis::linspace(-0.08, 0.08, 5), Axis::linspace(-0.06, 0.06, 4),
                     Axis::linspace(0.3, 0.45, 6));
}

}  // namespace nfmimo::test
