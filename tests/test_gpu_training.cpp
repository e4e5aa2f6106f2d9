// Training on the GPU (label gpu; skipped without one): the device-resident backend through the trainer and
// the CLI, and its steps against the CPU backend on the same batch.
#include <filesystem>
#include <random>

#include <gtest/gtest.h>

#include "kernels/device.hpp"
#include "models/architectures.hpp"
#include "models/training_backend.hpp"
#include "tests/cli_util.hpp"

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
    // fp32 on both; the GPU sums in another order: losses agree to float accuracy of a few steps' drift.
    EXPECT_NEAR(b.loss, a.loss, 1e-4 * a.loss) << "step " << step;
    EXPECT_NEAR(b.gradient_norm, a.gradient_norm, 1e-3 * a.gradient_norm) << "step " << step;
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
