// Iterative baselines on the CPU: options, step size, the TV prox, objective decrease as the theory says,
// sparse support recovery, the relative-weight rule.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include <Eigen/Dense>
#include <gtest/gtest.h>

#include "radar/cpu_operator.hpp"
#include "radar/error.hpp"
#include "radar/iterative.hpp"
#include "radar/reference.hpp"
#include "radar/simulation.hpp"
#include "tests/test_util.hpp"

namespace nfmimo {
namespace {

using test::random_complex;

// These problems are tiny (hundreds of voxels, thousands of operator calls): one thread. Spinning OpenMP
// barriers around micro-second regions are pathologically slow when the cores are shared with other jobs
// (seen: 30 s instead of 0.3 s for the FISTA bound test).
class SingleThread : public ::testing::Environment {
 public:
  void SetUp() override { omp_set_num_threads(1); }
};
const auto* const single_thread = ::testing::AddGlobalTestEnvironment(new SingleThread);

// A mid-sized problem: a 6 TX x 7 RX cross array (0.3 m aperture), 8 frequencies 4-16 GHz, and a 9 x 9 x 7
// grid with steps near the resolution (about 2 cm across, 1.25 cm in range at 12 GHz bandwidth), so that a
// sparse scene is identifiable: 336 measurements, 567 voxels.
RadarSystem mid_system() {
  return RadarSystem{ArrayGeometry::paper_cross(6, 7, 0.15), FrequencySweep::linspace(4e9, 16e9, 8)};
}
ImagingGrid mid_grid() {
  return ImagingGrid(Axis::linspace(-0.08, 0.08, 9), Axis::linspace(-0.08, 0.08, 9),
                     Axis::linspace(0.4, 0.49, 7));
}

std::vector<cfloat> measure(const CpuOperator& op, const std::vector<cfloat>& x) {
  std::vector<cfloat> y(op.system().samples_per_frame());
  op.forward(x.data(), y.data(), 1);
  return y;
}

// A scene with a few bright voxels on a noisy background, for the objective tests.
std::vector<cfloat> test_scene(const ImagingGrid& g, unsigned seed) {
  auto x = random_complex<float>(g.voxels(), seed);
  for (auto& v : x) v *= 0.05f;
  x[g.index(2, 2, 2)] = {1.0f, 0.5f};
  x[g.index(g.x().size - 2, 1, g.z().size / 2)] = {-0.7f, 0.2f};
  return x;
}

TEST(IterativeOptions, RejectsBadValues) {
  IterativeOptions o = default_iterative_options(Regularizer::L1);
  EXPECT_NO_THROW(validate(o));
  auto expect_refused = [](IterativeOptions bad, const std::string& word) {
    try {
      validate(bad);
      ADD_FAILURE() << "accepted an invalid option (" << word << ")";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
    }
  };
  o.lambda = -0.1;
  expect_refused(o, "lambda");
  o.lambda = NAN;
  expect_refused(o, "lambda");
  o = default_iterative_options(Regularizer::TotalVariation);
  o.max_iterations = 0;
  expect_refused(o, "iteration limit");
  o = default_iterative_options(Regularizer::TotalVariation);
  o.tolerance = -1;
  expect_refused(o, "tolerance");
  o = default_iterative_options(Regularizer::TotalVariation);
  o.tv_iterations = 0;
  expect_refused(o, "inner TV");
  o = default_iterative_options(Regularizer::TotalVariation);
  o.l1_weight = -1;
  expect_refused(o, "added l1");
  o = default_iterative_options(Regularizer::L1);
  o.l1_weight = 0.1;
  expect_refused(o, "option of tv");
  EXPECT_EQ(parse_acceleration("mfista"), Acceleration::MonotoneFista);
  EXPECT_THROW(parse_acceleration("adam"), InputError);
}

// The step size: the power-iteration estimate brackets ||A||^2 from a dense SVD of the double reference
// operator.
TEST(Iterative, PowerIterationMatchesDenseSpectralNorm) {
  const RadarSystem sys = test::small_system();
  const ImagingGrid grid = test::small_grid();
  const std::size_t V = grid.voxels(), S = sys.samples_per_frame();
  Eigen::MatrixXcd A(S, V);
  std::vector<cdouble> e(V);
  for (std::size_t v = 0; v < V; ++v) {
    std::fill(e.begin(), e.end(), cdouble(0));
    e[v] = 1;
    const auto col = forward_reference(sys, grid, e, 1);
    for (std::size_t i = 0; i < S; ++i) A(i, v) = col[i];
  }
  const double sigma = Eigen::JacobiSVD<Eigen::MatrixXcd>(A).singularValues()(0);
  const CpuOperator op(sys, grid);
  PowerIterationOptions p;
  const CpuIterativeSolver solver(op, p);
  // Lower end: the estimate reached ||A||^2 within 0.1 % (times the margin); upper end: the margin only.
  EXPECT_GE(solver.lipschitz(), p.margin * sigma * sigma * 0.999);
  EXPECT_LE(solver.lipschitz(), p.margin * sigma * sigma * 1.0001);
}

// The TV prox (with and without the added l1 term): the FGP iterate's duality gap, an independent certificate
// of optimality, falls towards zero; a warm start continues where it stopped; the result lies in [0, max b]
// (the maximum principle without l1) and beats simple competitors.
class TvProx : public ::testing::TestWithParam<float> {};

TEST_P(TvProx, ConvergesByDualityGap) {
  const float mu1 = GetParam();
  const ImagingGrid grid(Axis::linspace(0, 1, 7), Axis::linspace(0, 1, 6), Axis::linspace(1, 2, 8));
  const std::size_t V = grid.voxels();
  std::vector<float> b(V);
  const auto noise = random_complex<float>(V, 4);
  for (std::size_t i = 0; i < V; ++i) b[i] = std::abs(noise[i]) + (i % 48 < 20 ? 2.0f : 0.0f);
  const float mu = 0.3f;
  std::vector<float> p(3 * V, 0.0f);
  std::vector<float> m0(V);
  const double gap0 = tv_prox_duality_gap(grid, b, mu, p, mu1);
  tv_prox(grid, b, mu, 20, p, mu1);
  const double gap20 = tv_prox_duality_gap(grid, b, mu, p, mu1);
  const auto m = tv_prox(grid, b, mu, 400, p, mu1);  // warm start: 420 iterations in all
  const double gap420 = tv_prox_duality_gap(grid, b, mu, p, mu1);
  EXPECT_GT(gap0, 0);
  EXPECT_LT(gap20, 0.1 * gap0);
  EXPECT_LT(gap420, 1e-3 * gap0);
  EXPECT_GE(gap420, -1e-5 * gap0);  // weak duality, up to float rounding
  const auto [lo, hi] = std::minmax_element(b.begin(), b.end());
  for (float v : m) {
    EXPECT_GE(v, mu1 > 0 ? 0.0f : *lo - 1e-5f);
    EXPECT_LE(v, *hi + 1e-5f);
  }
  // The prox value beats the input itself, a flat volume at its mean and the l1 prox alone.
  auto prox_objective = [&](const std::vector<float>& v) {
    double s = 0;
    for (std::size_t i = 0; i < V; ++i) s += 0.5 * (double(v[i]) - b[i]) * (double(v[i]) - b[i]) + mu1 * v[i];
    return s + mu * total_variation(grid, v.data());
  };
  const float mean = std::accumulate(b.begin(), b.end(), 0.0f) / V;
  std::vector<float> shrunk(V);
  for (std::size_t i = 0; i < V; ++i) shrunk[i] = std::max(b[i] - mu1, 0.0f);
  EXPECT_LT(prox_objective(m), prox_objective(b));
  EXPECT_LT(prox_objective(m), prox_objective(std::vector<float>(V, mean)));
  EXPECT_LT(prox_objective(m), prox_objective(shrunk));
}

INSTANTIATE_TEST_SUITE_P(L1Term, TvProx, ::testing::Values(0.0f, 0.4f),
                         [](const auto& info) { return info.param > 0 ? "with_l1" : "plain"; });

std::vector<double> run(const CpuOperator& op, const CpuIterativeSolver& solver, const std::vector<cfloat>& y,
                        std::vector<cfloat>& x, Regularizer reg, Acceleration acc, int iterations,
                        double lambda) {
  IterativeOptions o = default_iterative_options(reg);
  o.acceleration = acc;
  o.max_iterations = iterations;
  o.tolerance = 0;
  o.lambda = lambda;
  x.assign(op.grid().voxels(), cfloat(0));
  return solver.solve(y.data(), x.data(), 1, o).front().objective;
}

// Theory: ISTA with an exact prox (l1) and MFISTA (both regularisers) decrease F monotonically; FISTA need
// not.
class MonotoneDecrease : public ::testing::TestWithParam<std::tuple<Regularizer, Acceleration, double>> {};

TEST_P(MonotoneDecrease, ObjectiveNeverIncreases) {
  const auto [reg, acc, l1_weight] = GetParam();
  const RadarSystem sys = mid_system();
  const ImagingGrid grid = mid_grid();
  const CpuOperator op(sys, grid);
  const CpuIterativeSolver solver(op);
  auto y = measure(op, test_scene(grid, 1));
  const auto noise = random_complex<float>(y.size(), 2);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] += 0.02f * std::abs(y[i]) * noise[i];
  std::vector<cfloat> x(grid.voxels());
  IterativeOptions o = default_iterative_options(reg);
  o.acceleration = acc;
  o.max_iterations = 60;
  o.tolerance = 0;
  o.lambda = 0.05;
  o.l1_weight = l1_weight;
  const IterativeReport rep = solver.solve(y.data(), x.data(), 1, o).front();
  ASSERT_EQ(rep.objective.size(), 61u);
  // Float operators: F is evaluated from float vectors, so allow rounding of ~1e-6 of F.
  for (std::size_t k = 1; k < rep.objective.size(); ++k)
    EXPECT_LE(rep.objective[k], rep.objective[k - 1] * (1 + 1e-6)) << "iteration " << k;
  EXPECT_LT(rep.objective.back(), 0.5 * rep.objective.front());
  // The tracked images A x reproduce F of the returned volume computed afresh.
  EXPECT_NEAR(rep.objective.back(),
              iterative_objective(op, reg, rep.lambda, x.data(), y.data(), rep.lambda_l1),
              1e-4 * rep.objective.back());
}

// Readable test names: regulariser, acceleration, and whether TV carries the l1 term.
std::string variant_name(
    const ::testing::TestParamInfo<std::tuple<Regularizer, Acceleration, double>>& info) {
  return to_string(std::get<0>(info.param)) + "_" + to_string(std::get<1>(info.param)) +
         (std::get<2>(info.param) > 0 ? "_with_l1" : "");
}

INSTANTIATE_TEST_SUITE_P(
    Variants, MonotoneDecrease,
    ::testing::Values(std::make_tuple(Regularizer::L1, Acceleration::None, 0.0),
                      std::make_tuple(Regularizer::L1, Acceleration::MonotoneFista, 0.0),
                      std::make_tuple(Regularizer::TotalVariation, Acceleration::MonotoneFista, 0.0),
                      std::make_tuple(Regularizer::TotalVariation, Acceleration::MonotoneFista, 0.01)),
    variant_name);

// FISTA's guarantee (Beck-Teboulle 2009, Thm 4.4): F(x_k) - F* <= 2 L ||x_0 - x*||^2 / (k + 1)^2, x_0 = 0.
// F* and x* come from a long MFISTA run, whose F is >= the true minimum, so the tested gap is never
// overstated.
TEST(Iterative, FistaMeetsItsConvergenceBound) {
  const RadarSystem sys = mid_system();
  const ImagingGrid grid = mid_grid();
  const CpuOperator op(sys, grid);
  const CpuIterativeSolver solver(op);
  const auto y = measure(op, test_scene(grid, 3));
  std::vector<cfloat> x_star, x;
  const double f_star =
      run(op, solver, y, x_star, Regularizer::L1, Acceleration::MonotoneFista, 1500, 0.05).back();
  const auto f = run(op, solver, y, x, Regularizer::L1, Acceleration::Fista, 200, 0.05);
  double r2 = 0;
  for (const auto& v : x_star) r2 += std::norm(std::complex<double>(v));
  const double L = solver.lipschitz();
  for (std::size_t k = 1; k < f.size(); ++k)
    EXPECT_LE(f[k] - f_star, 2 * L * r2 / double((k + 1) * (k + 1))) << "iteration " << k;
  // Acceleration matters: after 50 iterations FISTA is well ahead of ISTA.
  const auto f_ista = run(op, solver, y, x, Regularizer::L1, Acceleration::None, 50, 0.05);
  EXPECT_LT(f[50] - f_star, 0.5 * (f_ista[50] - f_star));
}

// Noiseless sparse scene: the l1 solution puts its largest voxels exactly on the scatterers and little
// elsewhere.
TEST(Iterative, L1RecoversSparseSupport) {
  const RadarSystem sys = mid_system();
  const ImagingGrid grid = mid_grid();
  const CpuOperator op(sys, grid);
  const CpuIterativeSolver solver(op);
  std::vector<cfloat> truth(grid.voxels());
  const std::vector<std::size_t> support = {grid.index(2, 3, 1), grid.index(6, 6, 4), grid.index(4, 1, 5),
                                            grid.index(7, 2, 2)};
  const cfloat amplitude[] = {{1.0f, 0.0f}, {0.0f, -0.8f}, {0.6f, 0.6f}, {-0.7f, 0.1f}};
  for (std::size_t i = 0; i < support.size(); ++i) truth[support[i]] = amplitude[i];
  const auto y = measure(op, truth);
  std::vector<cfloat> x(grid.voxels());
  IterativeOptions o = default_iterative_options(Regularizer::L1);
  o.lambda = 0.01;
  o.max_iterations = 500;
  o.tolerance = 1e-5;
  const IterativeReport rep = solver.solve(y.data(), x.data(), 1, o).front();
  double min_on = INFINITY, max_off = 0;
  for (std::size_t v = 0; v < x.size(); ++v) {
    const bool on = std::find(support.begin(), support.end(), v) != support.end();
    (on ? min_on : max_off) =
        on ? std::min(min_on, double(std::abs(x[v]))) : std::max(max_off, double(std::abs(x[v])));
  }
  EXPECT_GT(min_on, 0.5);
  EXPECT_LT(max_off, 0.05 * min_on) << "iterations " << rep.iterations;
  // Each recovered amplitude is close to the truth (the l1 bias is about lambda / column norm^2).
  for (std::size_t i = 0; i < support.size(); ++i)
    EXPECT_LT(std::abs(x[support[i]] - amplitude[i]), 0.1f * std::abs(amplitude[i])) << "scatterer " << i;
}

// The relative weight: lambda_rel >= 1 gives x = 0 for l1; solutions are equivariant under scaling of y.
TEST(Iterative, RelativeWeightRule) {
  const RadarSystem sys = test::small_system();
  const ImagingGrid grid = test::small_grid();
  const CpuOperator op(sys, grid);
  const CpuIterativeSolver solver(op);
  const auto y = measure(op, test_scene(grid, 5));
  std::vector<cfloat> x;
  run(op, solver, y, x, Regularizer::L1, Acceleration::Fista, 20, 1.0);
  for (const auto& v : x) ASSERT_EQ(v, cfloat(0));
  for (Regularizer reg : {Regularizer::L1, Regularizer::TotalVariation}) {
    std::vector<cfloat> ys(y), xs;
    for (auto& v : ys) v *= 1000.0f;
    run(op, solver, y, x, reg, Acceleration::Fista, 30, 0.1);
    run(op, solver, ys, xs, reg, Acceleration::Fista, 30, 0.1);
    for (auto& v : xs) v /= 1000.0f;
    EXPECT_TRUE(test::relative_error_below(xs, x, 1e-4)) << to_string(reg);
  }
}

// The stopping rule ends a frame before the limit and says so; several frames are solved independently.
TEST(Iterative, StopsOnRelativeChangePerFrame) {
  const RadarSystem sys = test::small_system();
  const ImagingGrid grid = test::small_grid();
  const CpuOperator op(sys, grid);
  const CpuIterativeSolver solver(op);
  const auto y0 = measure(op, test_scene(grid, 6)), y1 = measure(op, test_scene(grid, 7));
  std::vector<cfloat> y(y0);
  y.insert(y.end(), y1.begin(), y1.end());
  std::vector<cfloat> x(2 * grid.voxels()), x1(grid.voxels());
  IterativeOptions o = default_iterative_options(Regularizer::TotalVariation);
  o.tolerance = 1e-3;
  o.max_iterations = 2000;
  const auto reps = solver.solve(y.data(), x.data(), 2, o);
  ASSERT_EQ(reps.size(), 2u);
  for (const auto& r : reps) {
    EXPECT_TRUE(r.converged);
    EXPECT_LT(r.iterations, 2000);
    EXPECT_EQ(r.objective.size(), std::size_t(r.iterations) + 1);
  }
  solver.solve(y1.data(), x1.data(), 1, o);
  EXPECT_TRUE(std::equal(x1.begin(), x1.end(), x.begin() + grid.voxels()));
  o.max_iterations = 3;
  const auto capped = solver.solve(y.data(), x.data(), 2, o);
  EXPECT_EQ(capped[0].iterations, 3);
  EXPECT_FALSE(capped[0].converged);
}

}  // namespace
}  // namespace nfmimo
