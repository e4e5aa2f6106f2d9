// The CPU halves of the GPU pre-flight (issue 13): contracts that the CPU and the GPU backends share, checked
// here where they can run. The GPU halves are in test_gpu_preflight.cpp.
#include <cmath>
#include <complex>
#include <cstring>
#include <fstream>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/normalise.hpp"
#include "models/nn/cuda/algorithm_choice.hpp"
#include "models/learned/composite.hpp"
#include "models/nn/cpu/network.hpp"
#include "models/learned/pipeline.hpp"
#include "models/nn/reference.hpp"
#include "models/training/backend.hpp"
#include "models/training/data.hpp"
#include "radar/error.hpp"
#include "tests/cli_util.hpp"
#include "tests/layer_cases.hpp"
#include "tests/test_util.hpp"

namespace nfmimo::nn {
namespace {

using test::random_input;
using test::random_parameters;

// ---- 1. the CLI binary is found where the tests run, not only where they were built
// -------------------------
TEST(Preflight, CliBinaryFromEnvironmentBesideOrAboveTheTestElseBaked) {
  test::ScratchDir dir;
  const auto touch = [](const std::filesystem::path& p) {
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << "#!/bin/sh\n";
  };
  const auto bin = dir.path() / "bundle" / "bin";
  const auto self = bin / "test_gpu_training";
  // Nothing beside or above: the baked path.
  EXPECT_EQ(test::resolve_cli_binary(nullptr, self, "/baked/nfmimo"), "/baked/nfmimo");
  // The build tree's layout: build/tests/test_x and build/nfmimo.
  touch(dir.path() / "bundle" / "nfmimo");
  EXPECT_EQ(test::resolve_cli_binary(nullptr, self, "/baked/nfmimo"),
            (dir.path() / "bundle" / "nfmimo").string());
  // The bundle's layout: bin/test_x beside bin/nfmimo wins over the folder above.
  touch(bin / "nfmimo");
  EXPECT_EQ(test::resolve_cli_binary(nullptr, self, "/baked/nfmimo"), (bin / "nfmimo").string());
  // The device script's variable wins over everything; an empty one counts as unset.
  EXPECT_EQ(test::resolve_cli_binary("/device/run/nfmimo", self, "/baked/nfmimo"), "/device/run/nfmimo");
  EXPECT_EQ(test::resolve_cli_binary("", self, "/baked/nfmimo"), (bin / "nfmimo").string());
  // This test binary itself: build/tests/test_preflight finds build/nfmimo, which runs.
  EXPECT_EQ(test::run_cli("--version").exit_code, 0) << test::cli_binary();
}

// ---- 3. fp32 never runs as TF32
// -----------------------------------------------------------------------------
TEST(Preflight, Fp32NeverTakesATensorCoreAlgorithm) {
  // cuDNN's order: fastest first. The fastest two run on tensor cores, the third is FMA.
  const std::vector<AlgorithmCandidate> mixed = {
      {6, true, false, 0, 0.1f}, {1, true, false, 0, 0.2f}, {0, true, true, 0, 0.5f}, {2, false, true, 0, 0}};
  EXPECT_EQ(choose_algorithm(mixed, Precision::Fp32, "conv"), 2u);
  EXPECT_EQ(choose_algorithm(mixed, Precision::Tf32, "conv"), 0u);
  EXPECT_EQ(choose_algorithm(mixed, Precision::Bf16, "conv"), 0u);
  // Only tensor-core algorithms ran: fp32 fails and says why (the old rule fell back to the TF32 one).
  const std::vector<AlgorithmCandidate> tensor_only = {{6, true, false, 0, 0.1f}, {0, false, true, 0, 0}};
  try {
    choose_algorithm(tensor_only, Precision::Fp32, "'enc1.conv1'");
    FAIL() << "fp32 accepted a TF32 algorithm";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("TF32"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("enc1.conv1"), std::string::npos) << e.what();
  }
  EXPECT_EQ(choose_algorithm(tensor_only, Precision::Fp16, "conv"), 0u);
  EXPECT_THROW(choose_algorithm({{0, false, true, 0, 0}}, Precision::Tf32, "conv"), Error);
}

// ---- 5. one max-pool tie rule: the first maximum in window order (x, then y, then z)
// -------------------------- Rounding to bf16 makes equal values out of close ones; the rule must then agree
// everywhere. Here the ties are exact in float: the CPU executor's gradients must equal the reference's,
// element for element.
TEST(Preflight, MaxPoolTiesGoToTheFirstMaximumInBothCpuImplementations) {
  const Network net = test::single("pool", Shape{0, 2, 4, 4, 4}, [](Network& n) {
    n.max_pool("p", 0, {2, 2, 2});
  });
  const Shape in = net.input_shape(2);
  Tensor<double> x(in);
  std::mt19937 rng(3);
  // Values from a set of 3: most 2x2x2 windows hold their maximum two or more times.
  for (auto& v : x.data) v = double(std::uniform_int_distribution<int>(0, 2)(rng)) * 0.25;
  const Tensor<double> r = random_input(net.output_shape(2), 4);
  ReferenceNetwork ref(net, {});
  ref.forward(x, Mode::Training);
  const Tensor<double> dx = ref.backward(r);
  CpuNetwork cpu(net, {}, Mode::Training);
  const Tensor<float> xf = to_float(x), rf = to_float(r);
  Tensor<float> y(net.output_shape(2)), dxf(in);
  cpu.forward(xf.ptr(), y.ptr(), 2);
  cpu.backward(rf.ptr(), dxf.ptr());
  int ties = 0;
  for (std::size_t i = 0; i < dx.size(); ++i) EXPECT_EQ(double(dxf.data[i]), double(float(dx.data[i]))) << i;
  for (std::size_t i = 0; i < x.size(); ++i) ties += x.data[i] == 0.5;
  ASSERT_GT(ties, int(x.size()) / 4) << "the input has too few ties to test the rule";
}

// ---- 6. predict between forward and backward does not change the gradients
// ----------------------------------
TEST(Preflight, PredictBetweenForwardAndBackwardLeavesTheGradientsUnchanged) {
  // Batch norm (its coefficients and batch statistics are what a shared predict would overwrite), pooling and
  // a second convolution, so that every kind of saved state is on the path.
  const Network net = test::single("bn", Shape{0, 2, 6, 6, 6}, [](Network& n) {
    const int c = n.conv("c1", 0, 4, {3, 3, 3});
    const int b = n.batch_norm("bn", c);
    const int r = n.relu("r", b);
    const int p = n.max_pool("p", r, {2, 2, 2});
    n.conv("c2", p, 1, {3, 3, 3});
  });
  const Parameters params = random_parameters(net, 21);
  const Tensor<float> x = to_float(random_input(net.input_shape(3), 22));
  const Tensor<float> other = to_float(random_input(net.input_shape(2), 23));
  const Tensor<float> g = to_float(random_input(net.output_shape(3), 24));

  CpuNetwork plain(net, params, Mode::Training), interrupted(net, params, Mode::Training);
  Tensor<float> y(net.output_shape(3)), dx_plain(net.input_shape(3)), dx_interrupted(net.input_shape(3));
  plain.forward(x.ptr(), y.ptr(), 3);
  plain.backward(g.ptr(), dx_plain.ptr());

  interrupted.forward(x.ptr(), y.ptr(), 3);
  Tensor<float> predicted(net.output_shape(2)), predicted3(net.output_shape(3));
  interrupted.predict(other.ptr(), predicted.ptr(), 2);  // another batch size
  interrupted.predict(x.ptr(), predicted3.ptr(), 3);     // the same batch size
  interrupted.backward(g.ptr(), dx_interrupted.ptr());

  EXPECT_EQ(dx_plain.data, dx_interrupted.data);
  for (const auto& [name, grad] : plain.gradients())
    EXPECT_EQ(grad, interrupted.gradients().at(name)) << name;
  for (const auto& [name, t] : plain.parameters())
    EXPECT_EQ(t.values, interrupted.parameters().at(name).values) << name;

  // predict is the inference-mode output with the running statistics the forward left.
  CpuNetwork inference(net, interrupted.parameters(), Mode::Inference);
  Tensor<float> expected(net.output_shape(2));
  inference.forward(other.ptr(), expected.ptr(), 2);
  EXPECT_EQ(predicted.data, expected.data);
}

// ---- 8. the sizes a trainer plans up front
// --------------------------------------------------------------------
TEST(Preflight, CoveringBatchSizesAreTheBatchAndTheTail) {
  EXPECT_EQ(covering_batch_sizes(256, 64), (std::vector<int>{64}));
  EXPECT_EQ(covering_batch_sizes(250, 64), (std::vector<int>{64, 58}));
  EXPECT_EQ(covering_batch_sizes(10, 64), (std::vector<int>{10}));
  EXPECT_EQ(covering_batch_sizes(64, 64), (std::vector<int>{64}));
  EXPECT_TRUE(covering_batch_sizes(0, 64).empty());
}

// ---- the single per-frame max normalisation
// ---------------------------------------------------------------- The formulas the four copies had
// (models/learned/pipeline.cpp, models/learned/composite.cpp, models/training/data.cpp; the GPU kernels now
// evaluate the shared ones), written out once more as the oracle: the CPU outputs must stay bit-identical.
void old_normalise(const cfloat* adjoint, int frames, std::size_t V, bool complex_input, float* input) {
  for (int f = 0; f < frames; ++f) {
    const cfloat* a = adjoint + std::size_t(f) * V;
    double peak = 0;
    for (std::size_t v = 0; v < V; ++v) peak = std::max(peak, double(std::abs(a[v])));
    const double scale = peak > 0 ? 1.0 / peak : 1.0;
    if (complex_input) {
      float* re = input + std::size_t(f) * 2 * V;
      float* im = re + V;
      for (std::size_t v = 0; v < V; ++v)
        re[v] = float(a[v].real() * scale), im[v] = float(a[v].imag() * scale);
    } else {
      float* m = input + std::size_t(f) * V;
      for (std::size_t v = 0; v < V; ++v) m[v] = float(std::abs(a[v]) * scale);
    }
  }
}

void old_scales(const cfloat* adjoint, int frames, std::size_t V, float* scales) {
  for (int f = 0; f < frames; ++f) {
    const cfloat* a = adjoint + std::size_t(f) * V;
    double peak = 0;
    for (std::size_t v = 0; v < V; ++v) peak = std::max(peak, double(std::abs(a[v])));
    scales[f] = peak > 0 ? float(1.0 / peak) : 1.0f;
  }
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Preflight, OneNormalisationBitIdenticalToTheFormerCopies) {
  const int frames = 5;
  const std::size_t V = 1013;
  std::vector<cfloat> a(frames * V);
  std::mt19937 rng(77);
  std::normal_distribution<float> n(0.f, 1.f);
  for (int f = 0; f < frames; ++f) {
    // Scales over many decades, a frame of zeros, and a tiny frame near the denormals.
    const float scale = f == 2 ? 0.f : std::pow(10.f, float(3 * f - 6));
    for (std::size_t v = 0; v < V; ++v) a[f * V + v] = cfloat(n(rng), n(rng)) * scale;
  }
  for (bool complex_input : {false, true}) {
    const std::size_t per = V * (complex_input ? 2 : 1);
    std::vector<float> expected(frames * per), got(frames * per), via_pipeline(frames * per);
    old_normalise(a.data(), frames, V, complex_input, expected.data());
    normalise_by_frame_max(a.data(), frames, V,
                           complex_input ? NormaliseMode::Complex : NormaliseMode::Magnitude, got.data());
    normalise_network_input(a.data(), frames, V, complex_input, via_pipeline.data());
    EXPECT_TRUE(same_bits(expected, got)) << (complex_input ? "complex" : "magnitude");
    EXPECT_TRUE(same_bits(expected, via_pipeline)) << (complex_input ? "complex" : "magnitude");
  }
  std::vector<float> expected(frames), got(frames), via_composite(frames);
  old_scales(a.data(), frames, V, expected.data());
  frame_max_scales(a.data(), frames, V, got.data());
  measurement_scales(a.data(), frames, V, via_composite.data());
  EXPECT_TRUE(same_bits(expected, got));
  EXPECT_TRUE(same_bits(expected, via_composite));
  EXPECT_EQ(got[2], 1.0f);  // the all-zero frame
  std::vector<float> targets(frames * V), old_targets(frames * V);
  normalised_target_magnitudes(a.data(), frames, V, targets.data());
  old_normalise(a.data(), frames, V, false, old_targets.data());
  EXPECT_TRUE(same_bits(old_targets, targets));
}

}  // namespace
}  // namespace nfmimo::nn
