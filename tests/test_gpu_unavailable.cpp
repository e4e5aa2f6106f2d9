// The GPU network backend's interface where no GPU is usable (this machine, CI, and a build without CUDA):
// every entry point refuses with the reason, never a silent CPU fallback; and the precision rules of the
// learned methods. Skipped where a GPU is present (test_gpu_network covers that side).
#include <gtest/gtest.h>

#include "data/measurement_file.hpp"
#include "kernels/device.hpp"
#include "models/nn/architectures.hpp"
#include "models/nn/cuda/network.hpp"
#include "models/learned/gpu_pipeline.hpp"
#include "models/training/gpu_backend.hpp"
#include "models/learned/pipeline.hpp"
#include "models/weights.hpp"
#include "radar/error.hpp"
#include "tests/cli_util.hpp"
#include "tests/test_util.hpp"

namespace nfmimo::nn {
namespace {

ImagingGrid tiny_grid() {
  return ImagingGrid(Axis::linspace(-0.08, 0.08, 8), Axis::linspace(-0.06, 0.06, 9),
                     Axis::linspace(0.3, 0.45, 8));
}

template <class F>
void expect_refused(F&& f, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << what << " was accepted without a GPU";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_TRUE(m.find("GPU") != std::string::npos || m.find("CUDA") != std::string::npos ||
                m.find("cuda") != std::string::npos)
        << what << ": " << m;
    EXPECT_NE(m.find(cuda_unavailable_reason()), std::string::npos) << what << " does not say why: " << m;
  }
}

class WithoutGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present";
  }
};

TEST_F(WithoutGpu, EveryEntryPointRefusesWithTheReason) {
  const Network net = build_network("resnet", 4, 4, 4, {.width = 2, .blocks = 1});
  const Parameters p = initial_parameters(net, 1);
  expect_refused([&] { GpuNetwork(net, p, Mode::Inference, Precision::Fp16); }, "GpuNetwork");
  expect_refused([&] { make_gpu_training_backend(net, p, Precision::Bf16); }, "make_gpu_training_backend");
  expect_refused([&] { GpuTrainingBackend(net, p, Precision::Fp32); }, "GpuTrainingBackend");
  const Model m = make_model("unet3d", test::small_system(), tiny_grid(), {.width = 2}, 1);
  expect_refused(
      [&] {
        GpuLearnedPipeline(m.system, m.grid, m.network(), m.parameters, false, Precision::Fp16,
                           ImagingMode::Exact, 4);
      },
      "GpuLearnedPipeline");
  expect_refused([&] { LearnedPipeline("deep2s", m, DeviceKind::Cuda); }, "LearnedPipeline on cuda");
  // `auto` picks the CPU, at fp32.
  LearnedPipeline pipeline("deep2s", m, DeviceKind::Auto);
  EXPECT_EQ(pipeline.device(), DeviceKind::Cpu);
  EXPECT_EQ(pipeline.gpu(), nullptr);
}

// `nfmimo reconstruct --method deep2s --device cuda`: exit code 2, the reason, no output file.
TEST_F(WithoutGpu, ReconstructOnCudaExitsWithCode2AndWritesNothing) {
  test::ScratchDir dir;
  const Model m = make_model("unet3d", test::small_system(), tiny_grid(), {.width = 2}, 1);
  write_model(dir / "model.h5", m);
  MeasurementSet set;
  set.system = m.system;
  set.grid = m.grid;
  set.frames = 1;
  set.measurements = test::random_complex<float>(m.system.samples_per_frame(), 3);
  write_measurements(dir / "in.h5", set);
  const std::size_t before = dir.file_count();
  const auto r = test::run_cli("reconstruct " + (dir / "in.h5") + " --out " + (dir / "out.h5") +
                               " --method deep2s --device cuda --model " + (dir / "model.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("cuda"), std::string::npos) << r.output;
  EXPECT_EQ(dir.file_count(), before) << r.output;
}

TEST(LearnedPrecision, ParsingDefaultsAndTheCpuRule) {
  EXPECT_EQ(parse_inference_precision("fp32"), Precision::Fp32);
  EXPECT_EQ(parse_inference_precision("tf32"), Precision::Tf32);
  EXPECT_EQ(parse_inference_precision("fp16"), Precision::Fp16);
  EXPECT_EQ(parse_inference_precision("bf16"), Precision::Bf16);
  try {
    parse_inference_precision("fp8");
    ADD_FAILURE() << "fp8 was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("fp32, tf32, fp16, bf16"), std::string::npos) << e.what();
  }
  EXPECT_EQ(default_gpu_precision(), Precision::Fp16);
  // The CPU runs fp32 only: other precisions are refused on the CPU, whatever the machine.
  const Model m = make_model("unet3d", test::small_system(), tiny_grid(), {.width = 2}, 1);
  for (Precision p : {Precision::Tf32, Precision::Fp16, Precision::Bf16})
    EXPECT_THROW(LearnedPipeline("deep2s", m, DeviceKind::Cpu, ImagingMode::Exact, 8, p), InputError);
  EXPECT_NO_THROW(LearnedPipeline("deep2s", m, DeviceKind::Cpu, ImagingMode::Exact, 8, Precision::Fp32));
}

}  // namespace
}  // namespace nfmimo::nn
