// Plug-and-play ADMM on the CPU (radar/pnp.hpp): options, the CG x-update against a dense double solve, the
// l1 special case against FISTA's l1 solution, the identity denoiser as theory says, scale equivariance.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include <Eigen/Dense>
#include <gtest/gtest.h>

#include "radar/cpu_operator.hpp"
#include "radar/error.hpp"
#include "radar/iterative.hpp"
#include "radar/pnp.hpp"
#include "radar/reference.hpp"
#include "tests/test_util.hpp"

namespace nfmimo {
namespace {

using test::random_complex;

// Tiny problems with thousands of operator calls: one thread (see test_iterative.cpp).
class SingleThread : public ::testing::Environment {
 public:
  void SetUp() override { omp_set_num_threads(1); }
};
const auto* const single_thread = ::testing::AddGlobalTestEnvironment(new SingleThread);

Eigen::MatrixXcd dense_operator(const RadarSystem& sys, const ImagingGrid& grid) {
  const std::size_t V = grid.voxels(), S = sys.samples_per_frame();
  Eigen::MatrixXcd A(S, V);
  std::vector<cdouble> e(V);
  for (std::size_t v = 0; v < V; ++v) {
    std::fill(e.begin(), e.end(), cdouble(0));
    e[v] = 1;
    const auto col = forward_reference(sys, grid, e, 1);
    for (std::size_t i = 0; i < S; ++i) A(i, v) = col[i];
  }
  return A;
}

// A few bright voxels on a weak random background.
std::vector<cfloat> test_scene(const ImagingGrid& g, unsigned seed) {
  auto x = random_complex<float>(g.voxels(), seed);
  for (auto& v : x) v *= 0.05f;
  x[g.index(1, 1, 2)] = {1.0f, 0.5f};
  x[g.index(3, 2, 4)] = {-0.7f, 0.2f};
  return x;
}

std::vector<cfloat> measure(const CpuOperator& op, const std::vector<cfloat>& x) {
  std::vector<cfloat> y(op.system().samples_per_frame());
  op.forward(x.data(), y.data(), 1);
  return y;
}

double relative_distance(const std::vector<cfloat>& a, const std::vector<cfloat>& b) {
  double d = 0, n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d += std::norm(std::complex<double>(a[i]) - std::complex<double>(b[i]));
    n += std::norm(std::complex<double>(b[i]));
  }
  return std::sqrt(d / n);
}

TEST(PnpOptions, RejectsBadValues) {
  EXPECT_NO_THROW(validate(default_pnp_options()));
  auto expect_refused = [](auto mutate, const std::string& word) {
    PnpOptions o = default_pnp_options();
    mutate(o);
    try {
      validate(o);
      ADD_FAILURE() << "accepted an invalid option (" << word << ")";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
    }
  };
  expect_refused([](PnpOptions& o) { o.rho = -0.1; }, "rho");
  expect_refused([](PnpOptions& o) { o.rho = 0; }, "rho");
  expect_refused([](PnpOptions& o) { o.rho = NAN; }, "rho");
  expect_refused([](PnpOptions& o) { o.max_iterations = 0; }, "iteration limit");
  expect_refused([](PnpOptions& o) { o.cg_iterations = 0; }, "cg_iterations");
  expect_refused([](PnpOptions& o) { o.cg_tolerance = -1; }, "CG tolerance");
  expect_refused([](PnpOptions& o) { o.tolerance = -1; }, "stopping tolerance");
}

// The x-update: CG on (A^H A + rho I) x = b matches a dense double solve with the literal reference operator,
// and its tracked residual is the true one. Float vectors: agreement to ~1e-5 relative (the operator's float
// rounding, amplified at most by the condition number (1 + rho_rel) / rho_rel = 11).
TEST(Pnp, ConjugateGradientSolvesItsSystem) {
  const RadarSystem sys = test::small_system();
  const ImagingGrid grid = test::small_grid();
  const Eigen::MatrixXcd A = dense_operator(sys, grid);
  const std::size_t V = grid.voxels();
  const CpuOperator op(sys, grid);
  const PnpOperator pop = pnp_operator(op);
  const double L = CpuIterativeSolver(op).lipschitz();
  const double rho = 0.1 * L;
  const auto b = random_complex<float>(V, 11);
  Eigen::VectorXcd bd(V);
  for (std::size_t i = 0; i < V; ++i) bd(i) = cdouble(b[i]);
  const Eigen::MatrixXcd M = A.adjoint() * A + rho * Eigen::MatrixXcd::Identity(V, V);
  const Eigen::VectorXcd xd = M.llt().solve(bd);
  std::vector<cfloat> expected(V);
  for (std::size_t i = 0; i < V; ++i) expected[i] = cfloat(xd(i));

  std::vector<cfloat> x(V, cfloat(0));
  const CgResult r = solve_regularised_normal_equations(pop, rho, b.data(), x.data(), 200, 1e-6);
  EXPECT_LT(r.steps, 200);
  EXPECT_LE(r.relative_residual, 1e-6);
  EXPECT_LT(relative_distance(x, expected), 1e-5);
  Eigen::VectorXcd xs(V);
  for (std::size_t i = 0; i < V; ++i) xs(i) = cdouble(x[i]);
  EXPECT_LT((M * xs - bd).norm() / bd.norm(), 1e-5);

  // A warm start at the solution needs no step; a capped solve stops at its cap with a larger residual.
  const CgResult warm = solve_regularised_normal_equations(pop, rho, b.data(), x.data(), 200, 1e-4);
  EXPECT_EQ(warm.steps, 0);
  std::vector<cfloat> capped(V, cfloat(0));
  const CgResult c = solve_regularised_normal_equations(pop, rho, b.data(), capped.data(), 2, 0);
  EXPECT_EQ(c.steps, 2);
  EXPECT_GT(c.relative_residual, 1e-3);
  EXPECT_LT(c.relative_residual, 1.0);

  // The tracked product (A^H A + rho I) x (ADMM's warm starts without an operator call) stays that of x, and
  // a solve continued from it reaches the same solution.
  std::vector<cfloat> tracked(V, cfloat(0)), xt(V, cfloat(0));
  solve_regularised_normal_equations(pop, rho, b.data(), xt.data(), 3, 0, tracked.data());
  Eigen::VectorXcd xtd(V);
  for (std::size_t i = 0; i < V; ++i) xtd(i) = cdouble(xt[i]);
  const Eigen::VectorXcd mxd = M * xtd;
  std::vector<cfloat> mx_expected(V);
  for (std::size_t i = 0; i < V; ++i) mx_expected[i] = cfloat(mxd(i));
  EXPECT_LT(relative_distance(tracked, mx_expected), 1e-5);
  solve_regularised_normal_equations(pop, rho, b.data(), xt.data(), 200, 1e-6, tracked.data());
  EXPECT_LT(relative_distance(xt, expected), 1e-5);
}

// With the magnitude soft threshold at lambda / rho_abs as the denoiser, pnp is ADMM for
// 0.5 ||Ax - y||^2 + lambda sum |x|: it converges to the l1 solution that FISTA (radar/iterative.hpp) finds,
// the primal residual ||x - z|| goes to 0, and the ADMM fixed-point residual never increases (He-Yuan).
TEST(Pnp, SoftThresholdDenoiserGivesTheL1Solution) {
  const RadarSystem sys = test::small_system();
  const ImagingGrid grid = test::small_grid();
  const std::size_t V = grid.voxels();
  const CpuOperator op(sys, grid);
  const CpuIterativeSolver fista(op);
  const auto y = measure(op, test_scene(grid, 3));

  IterativeOptions lo = default_iterative_options(Regularizer::L1);
  lo.lambda = 0.05;
  lo.max_iterations = 20000;
  lo.tolerance = 1e-7;
  std::vector<cfloat> x_l1(V);
  const IterativeReport l1 = fista.solve(y.data(), x_l1.data(), 1, lo).front();

  const PnpSolver solver(pnp_operator(op), fista.lipschitz());
  PnpOptions po;
  po.rho = 0.2;
  po.max_iterations = 3000;
  po.cg_iterations = 100;
  po.cg_tolerance = 1e-7;
  po.tolerance = 1e-7;
  const double rho_abs = po.rho * fista.lipschitz();
  FunctionDenoiser soft = soft_threshold_denoiser(V, float(l1.lambda / rho_abs));
  std::vector<cfloat> x(V);
  const PnpReport rep = solver.solve(y.data(), x.data(), 1, po, soft).front();

  EXPECT_DOUBLE_EQ(rep.rho, rho_abs);
  EXPECT_LT(relative_distance(x, x_l1), 1e-4)
      << rep.iterations << " ADMM iterations, FISTA " << l1.iterations;
  const double f_l1 = iterative_objective(op, Regularizer::L1, l1.lambda, x_l1.data(), y.data());
  const double f_pnp = iterative_objective(op, Regularizer::L1, l1.lambda, x.data(), y.data());
  EXPECT_NEAR(f_pnp, f_l1, 1e-5 * f_l1);
  ASSERT_GE(rep.primal_residual.size(), 10u);
  EXPECT_LT(rep.primal_residual.back(), 1e-5 * rep.primal_residual.front());
  // Monotone up to the float rounding of the x-update.
  for (std::size_t k = 1; k < rep.admm_change.size(); ++k)
    ASSERT_LE(rep.admm_change[k], rep.admm_change[k - 1] * (1 + 1e-3) + 1e-6 * rep.admm_change.front())
        << "iteration " << k + 1;
  // The sparse solution is not trivial: the threshold left the bright voxels.
  EXPECT_GT(std::abs(x[grid.index(1, 1, 2)]), 0.1f);
}

// Identity denoiser (g = 0): u stays 0, so z = x and the first iterate is the Tikhonov solution
// (A^H A + rho I)^{-1} A^H y; later iterates are the proximal-point (iterated Tikhonov) sequence, whose data
// residual decreases monotonically towards 0 (A has full row rank here: 48 samples, 120 voxels).
TEST(Pnp, IdentityDenoiserIsIteratedTikhonov) {
  const RadarSystem sys = test::small_system();
  const ImagingGrid grid = test::small_grid();
  const std::size_t V = grid.voxels();
  const Eigen::MatrixXcd A = dense_operator(sys, grid);
  const CpuOperator op(sys, grid);
  const double L = CpuIterativeSolver(op).lipschitz();
  const PnpSolver solver(pnp_operator(op), L);
  const auto y = measure(op, test_scene(grid, 4));
  FunctionDenoiser identity(
      V, [](const float* m, float* out, std::size_t n) { std::copy(m, m + n, out); }, "identity");
  PnpOptions o;
  o.rho = 0.1;
  o.cg_iterations = 200;
  o.cg_tolerance = 1e-7;
  o.tolerance = 0;

  Eigen::VectorXcd yd(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) yd(i) = cdouble(y[i]);
  const Eigen::MatrixXcd M = A.adjoint() * A + o.rho * L * Eigen::MatrixXcd::Identity(V, V);
  const Eigen::VectorXcd tikhonov = M.llt().solve(A.adjoint() * yd);
  std::vector<cfloat> expected(V);
  for (std::size_t i = 0; i < V; ++i) expected[i] = cfloat(tikhonov(i));

  double previous = INFINITY;
  for (int k : {1, 2, 4, 8, 16, 32, 64}) {
    o.max_iterations = k;
    std::vector<cfloat> x(V);
    const PnpReport rep = solver.solve(y.data(), x.data(), 1, o, identity).front();
    ASSERT_EQ(rep.iterations, k);
    for (double p : rep.primal_residual) EXPECT_LT(p, 1e-6) << "z = x (u stays 0)";
    if (k == 1) {
      EXPECT_LT(relative_distance(x, expected), 1e-5);
    }
    const double residual = std::sqrt([&] {
      double s = 0;
      const auto ax = measure(op, x);
      for (std::size_t i = 0; i < y.size(); ++i) s += std::norm(std::complex<double>(ax[i] - y[i]));
      return s;
    }() /
                                      [&] {
                                        double s = 0;
                                        for (const auto& v : y) s += std::norm(std::complex<double>(v));
                                        return s;
                                      }());
    EXPECT_LT(residual, previous) << "after " << k << " iterations";
    previous = residual;
  }
  EXPECT_LT(previous, 0.02);
}

// A denoiser that normalises its input by its maximum (as the network denoiser does) makes pnp
// scale-equivariant; zero measurements give zero; the stopping rule ends frames independently.
TEST(Pnp, ScaleEquivarianceZeroFramesAndStopping) {
  const RadarSystem sys = test::small_system();
  const ImagingGrid grid = test::small_grid();
  const std::size_t V = grid.voxels(), S = sys.samples_per_frame();
  const CpuOperator op(sys, grid);
  const PnpSolver solver(pnp_operator(op), CpuIterativeSolver(op).lipschitz());
  FunctionDenoiser relative_threshold(
      V,
      [](const float* m, float* out, std::size_t n) {
        const float peak = *std::max_element(m, m + n);
        for (std::size_t i = 0; i < n; ++i) out[i] = std::max(m[i] - 0.1f * peak, 0.0f);
      },
      "relative soft threshold");
  const auto y1 = measure(op, test_scene(grid, 7));
  std::vector<cfloat> y(3 * S, cfloat(0));
  std::copy(y1.begin(), y1.end(), y.begin());
  for (std::size_t i = 0; i < S; ++i) y[2 * S + i] = 1000.0f * y1[i];
  PnpOptions o = default_pnp_options();
  o.max_iterations = 200;
  o.tolerance = 1e-4;
  std::vector<cfloat> x(3 * V, cfloat(1));
  const auto reps = solver.solve(y.data(), x.data(), 3, o, relative_threshold);
  ASSERT_EQ(reps.size(), 3u);
  EXPECT_TRUE(reps[0].converged);
  EXPECT_LT(reps[0].iterations, o.max_iterations);
  EXPECT_TRUE(reps[1].converged);
  EXPECT_EQ(reps[1].iterations, 0);
  for (std::size_t i = 0; i < V; ++i) ASSERT_EQ(x[V + i], cfloat(0));
  std::vector<cfloat> a(x.begin(), x.begin() + V), b(x.begin() + 2 * V, x.end());
  for (auto& v : b) v /= 1000.0f;
  EXPECT_GT(std::abs(a[grid.index(1, 1, 2)]), 0.0f) << "a non-trivial result";
  EXPECT_LT(relative_distance(b, a), 1e-4);
  EXPECT_EQ(reps[2].iterations, reps[0].iterations);
}

}  // namespace
}  // namespace nfmimo
