// Training on the GPU (label gpu; skipped without one): the device-resident backend through the trainer and
// the CLI, and its steps against the CPU backend on the same batch.
#include <filesystem>
#include <random>

#include <gtest/gtest.h>

#include "kernels/device.hpp"
#include "models/nn/architectures.hpp"
#include "models/training/backend.hpp"
#include "models/training/data.hpp"
#include "tests/cli_util.hpp"
#include "tests/test_util.hpp"

namespace nfmimo::nn {
namespace {

TEST(TrainGpu, StepsMatchTheCpuBackend) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  const Network net = build_network("unet3d", 8, 8, 8, {.width = 4});
  const Parameters initial = initial_parameters(net, 1);
  auto cpu = make_cpu_training_backend(net, initial);
  auto gpu = make_gpu_training_backend(net, initial, Precision::Fp32);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<float> input(4 * 512), target(4 * 512);
  for (auto& v : input) v = u(rng);
  for (auto& v : target) v = u(rng) < 0.05f ? u(rng) : 0.0f;
  OptimizerSettings s;
  for (int step = 0; step < 5; ++step) {
    const StepResult a = cpu->step(input.data(), target.data(), 4, s);
    const StepResult b = gpu->step(input.data(), target.data(), 4, s);
    ASSERT_TRUE(a.finite && b.finite);
    // Step 0 starts from the same weights: fp32 on both, other summation orders, so float accuracy. Adam then
    // amplifies rounding differences of near-zero gradient components (m / sqrt(v) is O(1) whatever their
    // size), so later steps are only held to the same trajectory.
    const double tol = step == 0 ? 1e-5 : 2e-2;
    EXPECT_NEAR(b.loss, a.loss, tol * a.loss) << "step " << step;
    EXPECT_NEAR(b.gradient_norm, a.gradient_norm, 10 * tol * a.gradient_norm) << "step " << step;
  }
}

// The GPU data path makes the host path's training pairs: same scenes (targets bit-identical before |x|), the
// adjoint within float tolerance (another summation order), the same normalisation.
TEST(TrainGpu, GpuSynthesizedSourceMatchesTheHostSource) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  for (const bool complex_input : {false, true}) {
    const SampleFormat f{paper_system(15), ImagingGrid::paper(), complex_input};
    const SynthesizedSourceSettings s{f, SceneConfig{}, 5, 4, 3, DeviceKind::Cpu};
    auto host = make_synthesized_source(s);
    auto gpu = make_gpu_synthesized_source(s);
    EXPECT_TRUE(gpu->device_resident());
    EXPECT_EQ(gpu->record_json(), host->record_json());
    HostBatch a, b;
    host->produce(2, 1, a);
    gpu->produce(2, 1, b);
    EXPECT_TRUE(test::relative_error_below(b.input, a.input, 2e-5));
    EXPECT_TRUE(test::relative_error_below(b.target, a.target, 1e-6));
  }
}

TEST(TrainGpu, TrainCommandRunsOnTheGpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  test::ScratchDir dir;
  const auto r = test::run_cli(
      "train --arch unet3d --width 2 --synthesize --system paper --freqs 4 "
      "--grid=-0.08:0.08:8,-0.08:0.08:8,0.4:0.55:8 --epoch-size 8 --batch 4 --val-count 4 --epochs 3 "
      "--device cuda --out " +
      dir / "g.h5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir / "g.h5"));
}

}  // namespace
}  // namespace nfmimo::nn
