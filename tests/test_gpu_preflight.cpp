// The GPU halves of the pre-flight (issue 13): what a static review predicted would fail on the first GPU
// run, each as a test that runs there (they skip without a GPU). The CPU halves are in test_preflight.cpp.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/device.hpp"
#include "kernels/device_buffer.hpp"
#include "kernels/gpu_imaging.hpp"
#include "kernels/gpu_normalise.hpp"
#include "kernels/gpu_timing.hpp"
#include "kernels/normalise.hpp"
#include "models/nn/architectures.hpp"
#include "models/nn/cuda/network.hpp"
#include "models/training/gpu_backend.hpp"
#include "models/nn/reference.hpp"
#include "radar/error.hpp"
#include "radar/system.hpp"
#include "tests/layer_cases.hpp"
#include "tests/test_util.hpp"

namespace nfmimo::nn {
namespace {

using test::random_input;
using test::random_parameters;
using test::relative_error_below;

using test::view;

class GpuPreflight : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  }
  void TearDown() override { set_conv_fusion(ConvFusion::Measure); }
};

const Precision kPrecisions[] = {Precision::Fp32, Precision::Tf32, Precision::Fp16, Precision::Bf16};

// The storage rounding of a precision (round to nearest even), so that the double reference sees the input
// the GPU computes on.
float round_to_storage(float v, Precision p) {
  if (p == Precision::Fp32 || p == Precision::Tf32) return v;
  std::uint32_t b;
  std::memcpy(&b, &v, 4);
  if (p == Precision::Bf16) {
    b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;
  } else {  // fp16: 10 mantissa bits; the test's values are well inside fp16's normal range
    b = (b + 0xfffu + ((b >> 13) & 1u)) & 0xffffe000u;
  }
  float r;
  std::memcpy(&r, &b, 4);
  return r;
}

// ---- 4. the 1-channel convolutions (first conv, out.conv, the ResNet stem) plan and compute at every
// precision
TEST_F(GpuPreflight, OneChannelConvolutionsRunAtEveryPrecision) {
  const Network in1 = test::single("c1", Shape{0, 1, 12, 10, 16}, [](Network& n) {
    n.conv("c", 0, 16, {3, 3, 3});
  });
  const Network out1 = test::single("k1", Shape{0, 16, 12, 10, 16}, [](Network& n) {
    n.conv("c", 0, 1, {1, 1, 1});
  });
  const Network out3 = test::single("k3", Shape{0, 16, 12, 10, 16}, [](Network& n) {
    n.conv("c", 0, 1, {3, 3, 3});
  });
  for (const Network* net : {&in1, &out1, &out3})
    for (Precision p : kPrecisions)
      for (Mode mode : {Mode::Inference, Mode::Training}) {
        SCOPED_TRACE(net->architecture() + " " + to_string(p) + (mode == Mode::Training ? " training" : ""));
        const Parameters params = random_parameters(*net, 5);
        ReferenceNetwork ref(*net, params);
        const Tensor<double> x = random_input(net->input_shape(4), 6);
        const Tensor<double> expected = ref.forward(x, mode);
        GpuNetwork gpu(*net, params, mode, p);
        const Tensor<float> xf = to_float(x);
        Tensor<float> y(net->output_shape(4));
        gpu.forward(xf.ptr(), y.ptr(), 4);
        EXPECT_TRUE(relative_error_below(view(y.data), view(expected.data), forward_tolerance(p)));
        if (mode == Mode::Training) {
          const Tensor<double> g = random_input(net->output_shape(4), 7);
          ref.backward(g);
          const Tensor<float> gf = to_float(g);
          gpu.backward(gf.ptr(), nullptr);
          const auto grads = gpu.gradients();
          for (const auto& [name, r] : ref.gradients())
            EXPECT_TRUE(relative_error_below(view(grads.at(name)), view(r), 3 * forward_tolerance(p)))
                << name;
        }
      }
}

// ---- 5. max-pool backward at 16-bit storage against the reference on the rounded input
// -----------------------
TEST_F(GpuPreflight, MaxPoolBackwardMatchesTheReferenceOnTheRoundedInput) {
  const Network net = test::single("pool", Shape{0, 8, 8, 6, 10}, [](Network& n) {
    n.max_pool("p", 0, {2, 2, 2});
  });
  for (Precision p : kPrecisions) {
    SCOPED_TRACE(to_string(p));
    Tensor<double> x = random_input(net.input_shape(3), 11);
    // Close values that 16-bit storage makes equal: the tie rule decides.
    // Offset to [1, 3]: inside fp16's normal range, where round_to_storage is exact.
    for (auto& v : x.data) v = 2.0 + std::round(v * 64) / 64 + 1e-4 * v;
    for (auto& v : x.data) v = round_to_storage(float(v), p);
    const Tensor<double> g = random_input(net.output_shape(3), 12);
    Tensor<double> gr = g;
    // Away from zero, where fp16 has subnormals that round_to_storage does not model.
    for (auto& v : gr.data) v = round_to_storage(float(0.5 + std::abs(v)), p);
    ReferenceNetwork ref(net, {});
    ref.forward(x, Mode::Training);
    const Tensor<double> dx = ref.backward(gr);
    GpuNetwork gpu(net, {}, Mode::Training, p);
    const Tensor<float> xf = to_float(x), gf = to_float(gr);
    Tensor<float> y(net.output_shape(3)), dxf(net.input_shape(3));
    gpu.forward(xf.ptr(), y.ptr(), 3);
    gpu.backward(gf.ptr(), dxf.ptr());
    // Pooling copies values: exact when the same element is chosen, way off when not.
    for (std::size_t i = 0; i < dx.size(); ++i) ASSERT_EQ(dxf.data[i], float(dx.data[i])) << "element " << i;
  }
}

// ---- 6. predict between forward and backward leaves the gradients unchanged -------------------------------
TEST_F(GpuPreflight, PredictBetweenForwardAndBackwardLeavesTheGradientsUnchanged) {
  const Network net = build_network("unet3d", 8, 8, 16, {.width = 4});
  const Parameters params = random_parameters(net, 31);
  const Tensor<float> x = to_float(random_input(net.input_shape(2), 32));
  const Tensor<float> other = to_float(random_input(net.input_shape(3), 33));
  const Tensor<float> g = to_float(random_input(net.output_shape(2), 34));
  for (Precision p : {Precision::Fp32, Precision::Bf16}) {
    SCOPED_TRACE(to_string(p));
    GpuNetwork plain(net, params, Mode::Training, p), interrupted(net, params, Mode::Training, p);
    Tensor<float> y(net.output_shape(2)), dx1(net.input_shape(2)), dx2(net.input_shape(2));
    Tensor<float> py(net.output_shape(3)), py2(net.output_shape(2));
    plain.forward(x.ptr(), y.ptr(), 2);
    plain.backward(g.ptr(), dx1.ptr());
    interrupted.forward(x.ptr(), y.ptr(), 2);
    interrupted.predict(other.ptr(), py.ptr(), 3);  // a size never planned: a new predict plan
    interrupted.predict(x.ptr(), py2.ptr(), 2);     // the training size
    interrupted.backward(g.ptr(), dx2.ptr());
    // cuDNN's filter-gradient algorithms may use atomics: equal up to their rounding.
    const double tol = 0.1 * forward_tolerance(p);
    EXPECT_TRUE(relative_error_below(view(dx2.data), view(dx1.data), tol));
    const auto a = plain.gradients(), b = interrupted.gradients();
    for (const auto& [name, ga] : a)
      EXPECT_TRUE(relative_error_below(view(b.at(name)), view(ga), tol) || ga == b.at(name)) << name;
  }
}

// ---- 7. GpuImagingPlan's scratch: one stream at a time, enforced
// ---------------------------------------------
TEST_F(GpuPreflight, ImagingPlanRefusesASecondStreamWhileTheFirstRuns) {
  const RadarSystem system = paper_system(15);
  const ImagingGrid grid = ImagingGrid::paper();
  const int batch = 64;
  GpuImagingPlan plan(system, grid, batch);
  DeviceBuffer<cfloat> x(grid.voxels() * batch), y(system.samples_per_frame() * batch);
  DeviceStream a, b;
  // A paper-geometry forward of 64 frames (37 GFLOP) takes milliseconds; the second call comes microseconds
  // later.
  plan.forward(x.data(), y.data(), batch, a.get());
  EXPECT_THROW(plan.forward(x.data(), y.data(), batch, b.get()), Error);
  a.synchronize();
  EXPECT_NO_THROW(plan.forward(x.data(), y.data(), batch, b.get()));  // the first stream is done: handed over
  b.synchronize();
  // Exact imaging uses no scratch: any stream, any time.
  plan.forward(x.data(), y.data(), batch, a.get());
  EXPECT_NO_THROW(plan.image(Method::Adjoint, ImagingMode::Exact, y.data(), x.data(), batch, b.get()));
  a.synchronize(), b.synchronize();
}

// ---- 8. planned sizes: no plan is built inside the training loop
// --------------------------------------------
TEST_F(GpuPreflight, PlannedStepAndValidationSizesAllocateNothingLater) {
  const Network net = build_network("unet3d", 8, 8, 16, {.width = 4});
  GpuTrainingBackend backend(net, random_parameters(net, 41), Precision::Bf16);
  const int batch = 4, val_count = 10, val_batch = 4;  // validation batches of 4, 4 and a tail of 2
  backend.plan_sizes({batch}, covering_batch_sizes(val_count, val_batch));
  const Tensor<float> x = to_float(random_input(net.input_shape(batch), 42));
  const Tensor<float> t = to_float(random_input(net.output_shape(batch), 43));
  OptimizerSettings o;
  // First-use host-call buffers (the step's scratch, predict's staging at the largest size); the tail of 2 is
  // first used below, where a plan built on demand would show as new device memory.
  std::vector<float> out(net.output_shape(val_batch).elements());
  backend.step(x.ptr(), t.ptr(), batch, o);
  backend.predict(x.ptr(), out.data(), val_batch);
  const std::size_t before = gpu_memory_used();
  for (int i = 0; i < 3; ++i) {
    backend.step(x.ptr(), t.ptr(), batch, o);
    for (int n : covering_batch_sizes(val_count, val_batch)) backend.predict(x.ptr(), out.data(), n);
  }
  EXPECT_EQ(gpu_memory_used(), before);
}

// ---- 9. the fused conv + bias + ReLU path and the plain one, each forced
// ------------------------------------
TEST_F(GpuPreflight, FusedAndUnfusedConvBiasReluBothMatchTheReference) {
  const Network net = test::single("cbr", Shape{0, 16, 8, 8, 8}, [](Network& n) {
    const int c = n.conv("c1", 0, 16, {3, 3, 3});
    const int r = n.relu("r1", c);
    const int c2 = n.conv("c2", r, 16, {3, 3, 3});
    n.relu("r2", c2);
  });
  const Parameters params = random_parameters(net, 51);
  const Tensor<double> x = random_input(net.input_shape(2), 52);
  ReferenceNetwork ref(net, params);
  const Tensor<double> expected = ref.forward(x, Mode::Inference);
  const Tensor<float> xf = to_float(x);
  for (Precision p : kPrecisions)
    for (ConvFusion f : {ConvFusion::Always, ConvFusion::Never}) {
      const bool fused = f == ConvFusion::Always;
      SCOPED_TRACE(to_string(p) + (fused ? " fused" : " plain"));
      set_conv_fusion(f);
      GpuNetwork gpu(net, params, Mode::Inference, p);
      gpu.plan(2);  // Always: cuDNN's refusal would throw here, with its reason
      EXPECT_EQ(gpu.fused_convolutions(2), fused ? 2 : 0);
      Tensor<float> y(net.output_shape(2));
      gpu.forward(xf.ptr(), y.ptr(), 2);
      EXPECT_TRUE(relative_error_below(view(y.data), view(expected.data), forward_tolerance(p)));
    }
}

// ---- the single normalisation: the CUDA half rounds as the CPU half
// ----------------------------------------
TEST_F(GpuPreflight, NormalisationKernelsRoundAsTheCpu) {
  const int frames = 4;
  const std::size_t V = 5000;
  std::vector<cfloat> a(frames * V);
  std::mt19937 rng(61);
  std::normal_distribution<float> n(0.f, 1.f);
  for (int f = 0; f < frames; ++f)
    for (std::size_t v = 0; v < V; ++v)
      a[f * V + v] = f == 1 ? cfloat(0, 0) : cfloat(n(rng), n(rng)) * float(f + 1);
  DeviceStream s;
  DeviceBuffer<cfloat> d_a(a.size());
  d_a.upload(a.data(), a.size(), s.get());
  for (NormaliseMode mode : {NormaliseMode::Magnitude, NormaliseMode::Complex}) {
    const std::size_t count = frames * V * (mode == NormaliseMode::Complex ? 2 : 1);
    std::vector<float> cpu(count), gpu(count);
    DeviceBuffer<float> d_out(count);
    normalise_by_frame_max(a.data(), frames, V, mode, cpu.data());
    normalise_by_sample_max(d_a.data(), d_out.data(), frames, V, mode, s.get());
    d_out.download(gpu.data(), count, s.get());
    s.synchronize();
    // hypotf against the C library's cabsf may differ in the last bit; the double products and the single
    // rounding are shared, so one ulp is all that may separate them.
    for (std::size_t i = 0; i < count; ++i)
      ASSERT_LE(std::abs(gpu[i] - cpu[i]), std::abs(cpu[i]) * 1.2e-7f) << "element " << i;
  }
  std::vector<float> cpu(frames), gpu(frames);
  DeviceBuffer<float> d_scales(frames);
  frame_max_scales(a.data(), frames, V, cpu.data());
  frame_max_scales_device(d_a.data(), frames, V, d_scales.data(), s.get());
  d_scales.download(gpu.data(), frames, s.get());
  s.synchronize();
  for (int f = 0; f < frames; ++f) EXPECT_LE(std::abs(gpu[f] - cpu[f]), cpu[f] * 1.2e-7f) << f;
  EXPECT_EQ(gpu[1], 1.0f);
}

}  // namespace
}  // namespace nfmimo::nn
