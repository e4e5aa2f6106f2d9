// GPU vs CPU parity of the iterative l1 / TV solvers (label gpu; skips without a GPU).
#include <cmath>

#include <gtest/gtest.h>

#include "kernels/device.hpp"
#include "kernels/gpu_imaging.hpp"
#include "kernels/gpu_iterative.hpp"
#include "kernels/imager.hpp"
#include "kernels/iterative_solver.hpp"
#include "radar/cpu_operator.hpp"
#include "radar/error.hpp"
#include "radar/iterative.hpp"
#include "tests/test_util.hpp"

namespace nfmimo {
namespace {

#define SKIP_WITHOUT_GPU() \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

RadarSystem mid_system() {
  return RadarSystem{ArrayGeometry::paper_cross(6, 7, 0.15), FrequencySweep::linspace(4e9, 16e9, 8)};
}
ImagingGrid mid_grid() {
  return ImagingGrid(Axis::linspace(-0.08, 0.08, 9), Axis::linspace(-0.08, 0.08, 9),
                     Axis::linspace(0.4, 0.49, 7));
}

// Frames: a few bright voxels on a weak random background, measured by the CPU operator plus 2 % noise.
std::vector<cfloat> measurements(const CpuOperator& op, int frames) {
  const std::size_t V = op.grid().voxels(), S = op.system().samples_per_frame();
  std::vector<cfloat> y(frames * S);
  for (int n = 0; n < frames; ++n) {
    auto x = test::random_complex<float>(V, 10 + n);
    for (auto& v : x) v *= 0.05f;
    x[(37 * (n + 1)) % V] = {1.0f, 0.3f};
    x[(101 * (n + 2)) % V] = {-0.5f, 0.6f};
    op.forward(x.data(), y.data() + n * S, 1);
    const auto noise = test::random_complex<float>(S, 50 + n);
    for (std::size_t i = 0; i < S; ++i) y[n * S + i] += 0.02f * std::abs(y[n * S + i]) * noise[i];
  }
  return y;
}

class IterativeGpuParity : public ::testing::TestWithParam<std::tuple<Regularizer, Acceleration, double>> {};

// Float operators on both sides with different summation orders (~1e-6 relative per operator call); over 40
// iterations of a contraction-like map the differences stay within ~1e-4 of the volume, so 1e-3 is the bound.
TEST_P(IterativeGpuParity, MatchesCpuIterateByIterate) {
  SKIP_WITHOUT_GPU();
  const auto [reg, acc, l1_weight] = GetParam();
  const CpuOperator op(mid_system(), mid_grid());
  const GpuImagingPlan plan(mid_system(), mid_grid(), 4);
  const CpuIterativeSolver cpu(op);
  const GpuIterativeSolver gpu(plan);
  EXPECT_NEAR(gpu.lipschitz(), cpu.lipschitz(), 1e-4 * cpu.lipschitz());
  const int frames = 3;
  const auto y = measurements(op, frames);
  IterativeOptions o = default_iterative_options(reg);
  o.acceleration = acc;
  o.l1_weight = l1_weight;
  o.max_iterations = 40;
  o.tolerance = 0;
  std::vector<cfloat> xc(frames * op.grid().voxels()), xg(xc.size());
  const auto rc = cpu.solve(y.data(), xc.data(), frames, o);
  const auto rg = gpu.solve(y.data(), xg.data(), frames, o);
  EXPECT_TRUE(test::relative_error_below(xg, xc, 1e-3));
  ASSERT_EQ(rg.size(), rc.size());
  for (int n = 0; n < frames; ++n) {
    EXPECT_EQ(rg[n].iterations, rc[n].iterations);
    EXPECT_NEAR(rg[n].lambda, rc[n].lambda, 1e-5 * rc[n].lambda);
    EXPECT_NEAR(rg[n].lambda_l1, rc[n].lambda_l1, 1e-5 * rc[n].lambda);
    ASSERT_EQ(rg[n].objective.size(), rc[n].objective.size());
    for (std::size_t k = 0; k < rc[n].objective.size(); ++k)
      EXPECT_NEAR(rg[n].objective[k], rc[n].objective[k], 1e-4 * rc[n].objective[k])
          << "frame " << n << " iter " << k;
  }
}

// Readable test names: regulariser, acceleration, and whether TV carries the l1 term.
std::string variant_name(
    const ::testing::TestParamInfo<std::tuple<Regularizer, Acceleration, double>>& info) {
  return to_string(std::get<0>(info.param)) + "_" + to_string(std::get<1>(info.param)) +
         (std::get<2>(info.param) > 0 ? "_with_l1" : "");
}

INSTANTIATE_TEST_SUITE_P(
    Variants, IterativeGpuParity,
    ::testing::Values(std::make_tuple(Regularizer::L1, Acceleration::Fista, 0.0),
                      std::make_tuple(Regularizer::L1, Acceleration::MonotoneFista, 0.0),
                      std::make_tuple(Regularizer::TotalVariation, Acceleration::Fista, 0.0),
                      std::make_tuple(Regularizer::TotalVariation, Acceleration::MonotoneFista, 0.0),
                      std::make_tuple(Regularizer::TotalVariation, Acceleration::Fista, 0.02)),
    variant_name);

// Per-frame stopping inside a batch: frames that converge early are frozen while others go on, and each frame
// ends where the CPU (frame by frame) ends it; frames beyond max_batch go in further chunks.
TEST(IterativeGpu, PerFrameStoppingMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const CpuOperator op(mid_system(), mid_grid());
  const GpuImagingPlan plan(mid_system(), mid_grid(), 2);
  const CpuIterativeSolver cpu(op);
  const GpuIterativeSolver gpu(plan);
  const int frames = 5;
  auto y = measurements(op, frames);
  const std::size_t S = op.system().samples_per_frame();
  for (std::size_t i = 0; i < S; ++i) y[S + i] *= 1e-3f;  // a weak frame: same relative behaviour, scaled
  IterativeOptions o = default_iterative_options(Regularizer::TotalVariation);
  o.tolerance = 2e-3;
  o.max_iterations = 300;
  std::vector<cfloat> xc(frames * op.grid().voxels()), xg(xc.size());
  const auto rc = cpu.solve(y.data(), xc.data(), frames, o);
  const auto rg = gpu.solve(y.data(), xg.data(), frames, o);
  for (int n = 0; n < frames; ++n) {
    EXPECT_TRUE(rc[n].converged);
    EXPECT_EQ(rg[n].converged, rc[n].converged);
    // The stopping iteration may move by one where the change sits at the tolerance within float rounding.
    EXPECT_NEAR(rg[n].iterations, rc[n].iterations, 1) << "frame " << n;
  }
  EXPECT_TRUE(test::relative_error_below(xg, xc, 2e-3));
}

// The paper's system and grid through the Imager-level factory (what the CLI uses).
TEST(IterativeGpu, PaperSystemThroughFactory) {
  SKIP_WITHOUT_GPU();
  const RadarSystem sys = paper_system(15);
  const ImagingGrid grid = ImagingGrid::paper();
  const Imager cpu_imager(sys, grid, DeviceKind::Cpu, 1), gpu_imager(sys, grid, DeviceKind::Cuda, 1);
  const auto cpu = make_iterative_solver(cpu_imager), gpu = make_iterative_solver(gpu_imager);
  EXPECT_NEAR(gpu->lipschitz(), cpu->lipschitz(), 1e-3 * cpu->lipschitz());
  const auto y = measurements(*cpu_imager.cpu(), 1);
  for (Regularizer reg : {Regularizer::L1, Regularizer::TotalVariation}) {
    IterativeOptions o = default_iterative_options(reg);
    o.max_iterations = 15;
    o.tolerance = 0;
    std::vector<cfloat> xc(grid.voxels()), xg(grid.voxels());
    cpu->solve(y.data(), xc.data(), 1, o);
    gpu->solve(y.data(), xg.data(), 1, o);
    EXPECT_TRUE(test::relative_error_below(xg, xc, 1e-3)) << to_string(reg);
  }
}

TEST(IterativeGpu, RefusesBatchBeyondPlan) {
  SKIP_WITHOUT_GPU();
  const GpuImagingPlan plan(mid_system(), mid_grid(), 2);
  const GpuIterativeSolver gpu(plan);
  EXPECT_THROW(gpu.solve_device(nullptr, nullptr, 3, default_iterative_options(Regularizer::L1), nullptr),
               InputError);
}

}  // namespace
}  // namespace nfmimo
