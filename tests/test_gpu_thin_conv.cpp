// The thin convolutions (one input or one output channel) on the cuDNN backend's direct kernels
// (models/nn/cuda/thin_conv.cu; issue 13, pre-flight 4), against the double reference and against cuDNN
// (label gpu; every test skips without a GPU). The kernels' index arithmetic is also checked on the host,
// without a GPU, by tests/test_preflight.cpp.
//
// Tolerances (relative 2-norm over the whole tensor), per precision, reusing forward_tolerance: fp32 1e-4
// (float32 FMA accumulation of at most 27 * 8 products, far below), tf32 2e-3 (the direct kernels compute
// tf32 in full float32: only cuDNN's comparison uses the looser bound), fp16 1e-2 and bf16 3e-2 (storage
// rounding of the input, the weights and the output: 2^-11 and 2^-9 relative each). Gradients: twice the
// forward bound in fp32 and tf32 and 3x in the 16-bit types, as in test_gpu_network.cpp, because the
// upstream gradient is rounded to storage too and the filter gradient sums rounded products over the
// batch and the volume. First settings for the device run, not measured values; a failure reports the
// measured error.
#include <cmath>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/device.hpp"
#include "models/nn/cuda/network.hpp"
#include "models/nn/reference.hpp"
#include "radar/error.hpp"
#include "tests/layer_cases.hpp"
#include "tests/test_util.hpp"

namespace nfmimo::nn {
namespace {

using test::gradient_matches;
using test::random_input;
using test::random_parameters;
using test::relative_error_below;
using test::view;

class GpuThinConv : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  }
  void TearDown() override { set_thin_convolution(ThinConvolution::Direct); }
};

const Precision kPrecisions[] = {Precision::Fp32, Precision::Tf32, Precision::Fp16, Precision::Bf16};

double gradient_tolerance(Precision p) {
  return (p == Precision::Fp32 || p == Precision::Tf32 ? 2 : 3) * forward_tolerance(p);
}

// The thin convolutions of the paper's networks, each with what follows it there (so the bias and
// activation epilogue, the folded batch norm and the bias left to a training batch norm are all exercised),
// and one with an even kernel and strides (asymmetric padding, a stride that skips inputs).
struct ThinCase {
  std::string name;
  Shape input;
  std::function<void(Network&)> add;
};
std::vector<ThinCase> thin_cases() {
  return {
      {"first_conv_1to8_3x3x3_bn_relu", Shape{0, 1, 11, 9, 12},
       [](Network& n) {
         const int c = n.conv("c", 0, 8, {3, 3, 3});
         n.relu("r", n.batch_norm("bn", c));
       }},
      {"stem_1to8_3x3x3_relu", Shape{0, 1, 11, 9, 12},
       [](Network& n) {
         n.relu("r", n.conv("c", 0, 8, {3, 3, 3}));
       }},
      {"out_8to1_1x1x1_sigmoid", Shape{0, 8, 11, 9, 12},
       [](Network& n) {
         n.sigmoid("s", n.conv("c", 0, 1, {1, 1, 1}));
       }},
      {"out_8to1_3x3x3", Shape{0, 8, 11, 9, 12},
       [](Network& n) {
         n.conv("c", 0, 1, {3, 3, 3});
       }},
      {"unet2d_first_1to8_3x3x1", Shape{0, 1, 11, 9, 12},
       [](Network& n) {
         n.conv("c", 0, 8, {3, 3, 1});
       }},
      {"strided_3to1_2x3x4", Shape{0, 3, 11, 9, 12},
       [](Network& n) {
         n.conv("c", 0, 1, {2, 3, 4}, true, {2, 1, 3});
       }},
  };
}

constexpr int kBatch = 3;

// Forward (both modes), the input gradient and every parameter gradient against the double reference, on the
// direct kernels; then a second backward gives bit-identical gradients (the kernels' reductions are
// deterministic).
TEST_F(GpuThinConv, DirectKernelsMatchTheReference) {
  for (const ThinCase& tc : thin_cases())
    for (Precision p : kPrecisions) {
      SCOPED_TRACE(tc.name + " " + to_string(p));
      const Network net = test::single(tc.name, tc.input, tc.add);
      const Parameters params = random_parameters(net, 81);
      const Tensor<double> x = random_input(net.input_shape(kBatch), 82);
      const Tensor<double> g = random_input(net.output_shape(kBatch), 83);
      const Tensor<float> xf = to_float(x), gf = to_float(g);
      set_thin_convolution(ThinConvolution::Direct);
      for (const Mode mode : {Mode::Inference, Mode::Training}) {
        SCOPED_TRACE(mode == Mode::Inference ? "inference" : "training");
        ReferenceNetwork ref(net, params);
        const Tensor<double> expected = ref.forward(x, mode);
        GpuNetwork gpu(net, params, mode, p);
        gpu.plan(kBatch);
        ASSERT_EQ(gpu.thin_convolutions(kBatch), 1);
        EXPECT_EQ(gpu.fused_convolutions(kBatch), 0);
        Tensor<float> y(net.output_shape(kBatch));
        gpu.forward(xf.ptr(), y.ptr(), kBatch);
        EXPECT_TRUE(relative_error_below(view(y.data), view(expected.data), forward_tolerance(p)))
            << "forward";
        if (mode == Mode::Inference) continue;

        const Tensor<double> dx_ref = ref.backward(g);
        Tensor<float> dx(net.input_shape(kBatch));
        gpu.backward(gf.ptr(), dx.ptr());
        const double tol = gradient_tolerance(p);
        EXPECT_TRUE(relative_error_below(view(dx.data), view(dx_ref.data), tol)) << "input gradient";
        const Gradients grads = gpu.gradients();
        ASSERT_EQ(grads.size(), ref.gradients().size());
        for (const auto& [name, r] : ref.gradients())
          EXPECT_TRUE(gradient_matches(grads.at(name), r, tol)) << name;

        Tensor<float> dx2(net.input_shape(kBatch));
        gpu.backward(gf.ptr(), dx2.ptr());
        EXPECT_EQ(dx2.data, dx.data) << "input gradient, second backward";
        const Gradients again = gpu.gradients();
        for (const auto& [name, v] : grads) EXPECT_EQ(again.at(name), v) << name << ", second backward";
      }
    }
}

// The same layers on cuDNN (set_thin_convolution(Cudnn)) and on the direct kernels agree within the
// precision's bound (each is within it of the exact result). A cuDNN refusal (no algorithm for the NHWC
// filter with a dimension of 1, or no FMA algorithm in fp32: what the direct kernels are for) is reported,
// not failed; the test fails only if nothing could be compared.
TEST_F(GpuThinConv, DirectKernelsAgreeWithCudnn) {
  int compared = 0;
  for (const ThinCase& tc : thin_cases())
    for (Precision p : kPrecisions) {
      SCOPED_TRACE(tc.name + " " + to_string(p));
      const Network net = test::single(tc.name, tc.input, tc.add);
      const Parameters params = random_parameters(net, 91);
      const Tensor<float> x = to_float(random_input(net.input_shape(kBatch), 92));
      const Tensor<float> g = to_float(random_input(net.output_shape(kBatch), 93));
      struct Result {
        Tensor<float> y, dx;
        Gradients grads;
      };
      // The policy is read when a plan is built: plan(kBatch) right after setting it.
      const auto run = [&](ThinConvolution policy) {
        set_thin_convolution(policy);
        GpuNetwork gpu(net, params, Mode::Training, p);
        gpu.plan(kBatch);
        EXPECT_EQ(gpu.thin_convolutions(kBatch), policy == ThinConvolution::Direct ? 1 : 0);
        Result r{Tensor<float>(net.output_shape(kBatch)), Tensor<float>(net.input_shape(kBatch)), {}};
        gpu.forward(x.ptr(), r.y.ptr(), kBatch);
        gpu.backward(g.ptr(), r.dx.ptr());
        r.grads = gpu.gradients();
        return r;
      };
      const Result direct = run(ThinConvolution::Direct);
      Result cudnn;
      try {
        cudnn = run(ThinConvolution::Cudnn);
      } catch (const Error& e) {
        std::cout << "[ note     ] cuDNN refuses " << tc.name << " in " << to_string(p) << ": " << e.what()
                  << "\n";
        continue;
      }
      ++compared;
      // Both sides carry the precision's error: their difference is within twice the bound.
      const double tol = 2 * forward_tolerance(p), gtol = 2 * gradient_tolerance(p);
      EXPECT_TRUE(relative_error_below(view(direct.y.data), view(cudnn.y.data), tol)) << "forward";
      EXPECT_TRUE(relative_error_below(view(direct.dx.data), view(cudnn.dx.data), gtol)) << "input gradient";
      for (const auto& [name, v] : cudnn.grads) {
        const std::vector<double> reference(v.begin(), v.end());
        EXPECT_TRUE(gradient_matches(direct.grads.at(name), reference, gtol)) << name;
      }
    }
  EXPECT_GT(compared, 0) << "cuDNN refused every thin convolution: nothing was compared";
}

}  // namespace
}  // namespace nfmimo::nn
