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
#include "models/nn/architectures.hpp"
#include "models/nn/cuda/algorithm_choice.hpp"
#include "models/nn/cuda/thin_conv.hpp"
#include "models/nn/cuda/thin_conv_math.hpp"
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

// ---- 4. thin convolutions (one input or one output channel) run on the backend's direct kernels
// ---------------------------------------------------------------------------------------------------------
TEST(Preflight, ThinConvolutionsAreTheOneChannelConvolutionsOfEveryArchitecture) {
  using Names = std::vector<std::string>;
  const auto thin = [](const Network& net, ThinConvolution policy) {
    Names names;
    for (const Op& op : net.ops())
      if (runs_thin_kernel(net, op, policy)) names.push_back(op.name);
    return names;
  };
  const ArchitectureOptions small{.width = 4, .blocks = 2};
  const Network unet3d = build_network("unet3d", 8, 8, 16, small);
  EXPECT_EQ(thin(unet3d, ThinConvolution::Direct), (Names{"enc1.block1.conv", "out.conv"}));
  EXPECT_EQ(thin(build_network("unet2d", 8, 8, 16, small), ThinConvolution::Direct),
            (Names{"enc1.block1.conv", "out.conv"}));
  EXPECT_EQ(thin(build_network("resnet", 8, 8, 16, small), ThinConvolution::Direct),
            (Names{"stem.conv", "out.conv"}));
  // Two input channels (real and imaginary): only the last convolution is thin.
  EXPECT_EQ(thin(build_network("cv-unet3d", 8, 8, 16, small), ThinConvolution::Direct), (Names{"out.conv"}));
  EXPECT_EQ(thin(unet3d, ThinConvolution::Cudnn), Names{});
  // A one-channel transposed convolution stays with cuDNN.
  const Network up = test::single("up", Shape{0, 1, 4, 4, 4}, [](Network& n) {
    n.conv_transpose("t", 0, 1, {2, 2, 2}, {2, 2, 2});
  });
  EXPECT_EQ(thin(up, ThinConvolution::Direct), Names{});
  EXPECT_TRUE(is_thin_convolution(1, 32));
  EXPECT_TRUE(is_thin_convolution(64, 1));
  EXPECT_FALSE(is_thin_convolution(2, 32));
}

// The direct kernels' sums (thin_conv_math.hpp, the code the CUDA kernels run) on the host, against the
// double reference: forward, the input gradient and the filter gradient over the kernels' own partition of
// the rows into chunks and lanes. Inputs and weights are rounded to float first, so the only difference is
// float32 accumulation over at most a few hundred terms: a relative error of a few 1e-7; 1e-5 leaves room
// and still catches a wrong index (an error of order 1).
TEST(Preflight, ThinConvolutionSumsMatchTheReference) {
  struct Case {
    const char* name;
    int in_channels, out_channels;
    Triple kernel, stride;
  };
  const Case cases[] = {
      {"first conv 1->8 3x3x3", 1, 8, {3, 3, 3}, {1, 1, 1}},
      {"out.conv 8->1 1x1x1", 8, 1, {1, 1, 1}, {1, 1, 1}},
      {"out.conv 8->1 3x3x3", 8, 1, {3, 3, 3}, {1, 1, 1}},
      {"unet2d first conv 1->4 3x3x1", 1, 4, {3, 3, 1}, {1, 1, 1}},
      {"even kernel, strides 3->1 2x3x4", 3, 1, {2, 3, 4}, {2, 1, 3}},  // asymmetric 'same' padding
  };
  constexpr double kTolerance = 1e-5;
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    // 2 x 12 x 10 x 9 = 2160 output rows at stride 1: more than the 512 chunks, so chunks hold several rows
    // and the row lanes matter.
    const int N = 2;
    const Network net = test::single("thin", Shape{0, k.in_channels, 12, 10, 9}, [&](Network& n) {
      n.conv("c", 0, k.out_channels, k.kernel, true, k.stride);
    });
    const Op& op = net.ops()[1];
    ASSERT_TRUE(runs_thin_kernel(net, op, ThinConvolution::Direct));
    const Parameters params = random_parameters(net, 71);  // float: the reference sees what the kernels see
    Tensor<double> x = random_input(net.input_shape(N), 72);
    for (auto& v : x.data) v = float(v);
    Tensor<double> g = random_input(net.output_shape(N), 73);
    for (auto& v : g.data) v = float(v);
    ReferenceNetwork ref(net, params);
    const Tensor<double> y_ref = ref.forward(x, Mode::Training);
    const Tensor<double> dx_ref = ref.backward(g);
    const std::vector<double>& dw_ref = ref.gradients().at("c.weight");

    const Shape is = net.input_shape(N), os = net.output_shape(N);
    const thin::Geometry geo{{is.n, is.c, is.x, is.y, is.z},
                             {os.n, os.c, os.x, os.y, os.z},
                             op.kernel[0],
                             op.kernel[1],
                             op.kernel[2],
                             op.stride[0],
                             op.stride[1],
                             op.stride[2],
                             op.pad_lo[0],
                             op.pad_lo[1],
                             op.pad_lo[2]};
    // The backend's layouts: activations channels-last, the filter [K, kx, ky, kz, C].
    const auto channels_last = [](const Tensor<double>& t) {
      const Shape s = t.shape;
      std::vector<float> out(t.size());
      const thin::Dims d{s.n, s.c, s.x, s.y, s.z};
      for (int n = 0; n < s.n; ++n)
        for (int c = 0; c < s.c; ++c)
          for (int a = 0; a < s.x; ++a)
            for (int b = 0; b < s.y; ++b)
              for (int l = 0; l < s.z; ++l) out[thin::offset(d, n, a, b, l, c)] = float(t.at(n, c, a, b, l));
      return out;
    };
    const auto logical = [](const std::vector<float>& cl, const Shape& s) {
      std::vector<double> out(cl.size());
      const thin::Dims d{s.n, s.c, s.x, s.y, s.z};
      std::size_t i = 0;
      for (int n = 0; n < s.n; ++n)
        for (int c = 0; c < s.c; ++c)
          for (int a = 0; a < s.x; ++a)
            for (int b = 0; b < s.y; ++b)
              for (int l = 0; l < s.z; ++l) out[i++] = cl[thin::offset(d, n, a, b, l, c)];
      return out;
    };
    const int C = k.in_channels, K = k.out_channels, T = thin::taps(geo);
    const std::vector<float>& w_logical = params.at("c.weight").values;  // [K, C, taps]
    std::vector<float> w(w_logical.size());
    for (int o = 0; o < K; ++o)
      for (int c = 0; c < C; ++c)
        for (int t = 0; t < T; ++t)
          w[(std::size_t(o) * T + t) * C + c] = w_logical[(std::size_t(o) * C + c) * T + t];
    const std::vector<float>& bias = params.at("c.bias").values;
    const std::vector<float> xs = channels_last(x), gs = channels_last(g);
    const auto load = [](const std::vector<float>& v) { return [&v](std::size_t i) { return v[i]; }; };

    std::vector<float> y(os.elements());
    for (std::size_t e = 0; e < y.size(); ++e)
      y[e] = thin::forward_element(geo, e, load(xs), load(w), bias[e % std::size_t(K)]);
    EXPECT_TRUE(test::relative_error_below(test::view(logical(y, os)), test::view(y_ref.data), kTolerance));

    std::vector<float> dx(is.elements());
    for (std::size_t e = 0; e < dx.size(); ++e)
      dx[e] = thin::backward_data_element(geo, e, load(gs), load(w));
    EXPECT_TRUE(test::relative_error_below(test::view(logical(dx, is)), test::view(dx_ref.data), kTolerance));

    // The filter gradient as the two kernels compute it: per chunk, the lanes in lane order; then chunks.
    const thin::FilterPartition part = thin::filter_partition(geo);
    const std::size_t rows = thin::rows(geo.out);
    const int W = thin::filter_weights(geo);
    ASSERT_EQ(std::size_t(W), dw_ref.size());
    std::vector<double> dw(dw_ref.size());
    for (int weight = 0; weight < W; ++weight) {
      float total = 0.f;
      for (int b = 0; b < part.chunks; ++b) {
        const std::size_t r0 = thin::chunk_begin(rows, part.chunks, b),
                          r1 = thin::chunk_begin(rows, part.chunks, b + 1);
        float chunk = 0.f;
        for (int m = 0; m < part.lanes; ++m)
          chunk += thin::filter_sum(geo, weight, r0 + std::size_t(m), r1, std::size_t(part.lanes), load(xs),
                                    load(gs));
        total += chunk;
      }
      const int o = weight / (T * C), t = (weight / C) % T, c = weight % C;
      dw[(std::size_t(o) * C + c) * T + t] = total;  // back to the logical [K, C, taps]
    }
    EXPECT_TRUE(test::relative_error_below(test::view(dw), test::view(dw_ref), kTolerance));
  }
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
