// DeepDI and Deep2S+ (models/learned/composite.hpp): the dense layer initialised to A^H reproduces the
// adjoint through the whole deep2s-plus pipeline (at initialisation the CV U-Net sees what cv-deep2s feeds
// it, and the outputs agree); gradients through dense layer + network against finite differences of a
// double-precision reference of the composite, and the fast CPU backend's step against that reference; a
// short training lowers the loss; weights files keep the dense layer and refuse a damaged one; the training
// data is the scaled measurements.
#include <cmath>
#include <cstring>
#include <random>

#include <gtest/gtest.h>

#include "data/hdf5.hpp"
#include "kernels/device.hpp"
#include "models/nn/architectures.hpp"
#include "models/learned/complex_dense.hpp"
#include "models/learned/composite.hpp"
#include "models/training/optimizer.hpp"
#include "models/learned/pipeline.hpp"
#include "models/nn/reference.hpp"
#include "models/training/data.hpp"
#include "models/weights.hpp"
#include "radar/error.hpp"
#include "radar/reference.hpp"
#include "synthesizer/synthesizer.hpp"
#include "tests/cli_util.hpp"
#include "tests/test_util.hpp"

namespace nfmimo::nn {
namespace {

// K = 4 of the paper's array on an 8^3 grid (the U-Net's smallest), M = 4 * 12 * 13 = 624 measurements.
RadarSystem tiny_system() { return paper_system(4); }
ImagingGrid tiny_grid() {
  return ImagingGrid(Axis::linspace(-0.08, 0.08, 8), Axis::linspace(-0.08, 0.08, 8),
                     Axis::linspace(0.4, 0.55, 8));
}

std::vector<cfloat> scene_measurements(int frames, std::uint64_t seed) {
  const Synthesizer synth(tiny_system(), tiny_grid(), SceneConfig{}, seed, DeviceKind::Cpu);
  return synth.batch(0, frames).measurements;
}

TEST(Deep2SPlus, DenseLayerAtInitialisationReproducesTheNormalisedAdjoint) {
  const RadarSystem s = tiny_system();
  const ImagingGrid g = tiny_grid();
  const std::size_t V = g.voxels(), M = s.samples_per_frame();
  const int frames = 3;
  const std::vector<cfloat> y = scene_measurements(frames, 5);
  const Model plus = make_model("deep2s-plus", s, g, {.width = 2}, 7);
  const Model cv = make_model("cv-unet3d", s, g, {.width = 2}, 7);
  ASSERT_EQ(plus.parameters.at(kDenseWeight).shape, (std::vector<int>{int(V), int(M), 2}));

  // The U-Net's input of Deep2S+ against cv-deep2s's (the CPU adjoint, normalised) and against the double
  // reference A^H y / max |A^H y|. Tolerance: both sum M = 624 float products (GEMM against the operator's
  // factorised sums): ~1e-6 relative to the peak, 2e-5 leaves room without hiding a wrong scale or conjugate.
  LearnedPipeline p_plus("deep2s-plus", plus, DeviceKind::Cpu);
  LearnedPipeline p_cv("cv-deep2s", cv, DeviceKind::Cpu);
  std::vector<float> in_plus(frames * 2 * V), in_cv(in_plus.size());
  p_plus.network_input(y.data(), frames, in_plus.data());
  p_cv.network_input(y.data(), frames, in_cv.data());
  EXPECT_TRUE(test::relative_error_below(in_plus, in_cv, 2e-5));

  std::vector<cdouble> yd(y.begin(), y.end());
  const std::vector<cdouble> a = image_reference(Method::Adjoint, s, g, yd, frames);
  std::vector<double> expected(in_plus.size());
  for (int f = 0; f < frames; ++f) {
    double peak = 0;
    for (std::size_t v = 0; v < V; ++v) peak = std::max(peak, std::abs(a[f * V + v]));
    ASSERT_GT(peak, 0);
    for (std::size_t v = 0; v < V; ++v) {
      expected[(2 * f) * V + v] = a[f * V + v].real() / peak;
      expected[(2 * f + 1) * V + v] = a[f * V + v].imag() / peak;
    }
  }
  EXPECT_TRUE(test::relative_error_below(in_plus, expected, 2e-5));

  // Same seed, same graph: the U-Nets are identical, so the whole pipelines agree.
  std::vector<float> out_plus(frames * V), out_cv(out_plus.size());
  LearnedPipeline r_plus("deep2s-plus", plus, DeviceKind::Cpu);
  LearnedPipeline r_cv("cv-deep2s", cv, DeviceKind::Cpu);
  r_plus.run(y.data(), frames, out_plus.data());
  r_cv.run(y.data(), frames, out_cv.data());
  EXPECT_TRUE(test::relative_error_below(out_plus, out_cv, 1e-4));  // 2e-5 inputs through fp32 convolutions
}

TEST(DeepDI, StartsFromRandomWeightsAndScalesItsInput) {
  const Model m = make_model("deepdi", tiny_system(), tiny_grid(), {.width = 2}, 3);
  const auto& w = m.parameters.at(kDenseWeight).values;
  double power = 0;
  for (float x : w) power += double(x) * x;
  // Complex variance 1 / M per weight: mean |w|^2 = 1 / M (about 2e-3 relative spread over 320k weights).
  EXPECT_NEAR(power / (w.size() / 2), 1.0 / tiny_system().samples_per_frame(), 0.05 / 624);
  // The input is scaled: multiplying a frame's measurements by 1000 changes nothing.
  std::vector<cfloat> y = scene_measurements(1, 9), y1000 = y;
  for (auto& v : y1000) v *= 1000.0f;
  LearnedPipeline p("deepdi", m, DeviceKind::Cpu);
  std::vector<float> a(tiny_grid().voxels()), b(a.size());
  p.run(y.data(), 1, a.data());
  p.run(y1000.data(), 1, b.data());
  EXPECT_TRUE(test::relative_error_below(b, a, 1e-5));
}

// ---- gradients ------------------------------------------------------------------------------------------

// The composite in double: x = W y + b (complex), [Re, Im] channels, ReferenceNetwork in training mode (batch
// statistics, running statistics not updated), loss mse against `target`.
struct DoubleComposite {
  Network net;
  int M, V, n;
  std::vector<cdouble> w, b, y;
  std::vector<double> target;
  std::unique_ptr<ReferenceNetwork> ref;

  Tensor<double> dense(const std::vector<cdouble>& weights) const {
    Tensor<double> x(net.input_shape(n));
    for (int i = 0; i < n; ++i)
      for (int v = 0; v < V; ++v) {
        cdouble s = b[v];
        for (int m = 0; m < M; ++m) s += weights[std::size_t(v) * M + m] * y[std::size_t(i) * M + m];
        x.data[(std::size_t(i) * 2) * V + v] = s.real();
        x.data[(std::size_t(i) * 2 + 1) * V + v] = s.imag();
      }
    return x;
  }
  double loss(const std::vector<cdouble>& weights) {
    const Tensor<double> out = ref->forward(dense(weights), Mode::Training, false);
    double l = 0;
    for (std::size_t i = 0; i < out.data.size(); ++i)
      l += (out.data[i] - target[i]) * (out.data[i] - target[i]);
    return l / double(out.data.size());
  }
  // d(loss)/d(W) in the real-parameter convention: dRe + j dIm.
  std::vector<cdouble> gradient() {
    const Tensor<double> out = ref->forward(dense(w), Mode::Training, false);
    Tensor<double> g(out.shape);
    for (std::size_t i = 0; i < g.data.size(); ++i)
      g.data[i] = 2 * (out.data[i] - target[i]) / double(g.data.size());
    const Tensor<double> gx = ref->backward(g);
    std::vector<cdouble> gw(w.size());
    for (int i = 0; i < n; ++i)
      for (int v = 0; v < V; ++v) {
        const cdouble gi(gx.data[(std::size_t(i) * 2) * V + v], gx.data[(std::size_t(i) * 2 + 1) * V + v]);
        for (int m = 0; m < M; ++m) gw[std::size_t(v) * M + m] += gi * std::conj(y[std::size_t(i) * M + m]);
      }
    return gw;
  }
};

struct GradientCase {
  Model model;
  std::vector<float> input, target;  // scaled measurements [n, M] complex as floats; target [n, V]
  int n = 2;
  explicit GradientCase(const std::string& arch) {
    const RadarSystem s = tiny_system();
    const ImagingGrid g = tiny_grid();
    model = make_model(arch, s, g, {.width = 2}, 11);
    const Synthesizer synth(s, g, SceneConfig{}, 13, DeviceKind::Cpu);
    const SampleBatch b = synth.batch(0, n);
    SampleFormat f{s, g, true};
    f.measurement_input = true;
    SamplePreparer prep(f, DeviceKind::Cpu, n);
    input.resize(n * f.input_size());
    target.resize(n * g.voxels());
    prep.prepare(b.measurements.data(), b.targets.data(), n, input.data(), target.data());
  }
  DoubleComposite reference() const {
    DoubleComposite d;
    d.net = model.network();
    d.M = int(model.system.samples_per_frame());
    d.V = int(model.grid.voxels());
    d.n = n;
    const cfloat* w = dense_weights(model.parameters);
    const cfloat* b = dense_bias(model.parameters);
    d.w.assign(w, w + std::size_t(d.V) * d.M);
    d.b.assign(b, b + d.V);
    const cfloat* y = reinterpret_cast<const cfloat*>(input.data());
    d.y.assign(y, y + std::size_t(n) * d.M);
    d.target.assign(target.begin(), target.end());
    d.ref = std::make_unique<ReferenceNetwork>(d.net, without_dense_parameters(model.parameters));
    return d;
  }
};

class CompositeGradient : public ::testing::TestWithParam<const char*> {};

// Central differences in double on a sample of dense weights (real and imaginary parts). h = 1e-5 against
// weights of ~1e-2 (DeepDI) to ~1 (A^H): truncation ~h^2 and rounding ~1e-16 / h of the loss stay below 1e-6
// of the largest gradient entry; tolerance 1e-5.
TEST_P(CompositeGradient, DenseGradientMatchesFiniteDifferences) {
  const GradientCase c(GetParam());
  DoubleComposite d = c.reference();
  const std::vector<cdouble> gw = d.gradient();
  double scale = 0;
  for (const auto& g : gw) scale = std::max(scale, std::abs(g));
  ASSERT_GT(scale, 0);
  const double h = 1e-5;
  double worst = 0;
  for (std::size_t i = 7; i < gw.size(); i += 4999)
    for (int part = 0; part < 2; ++part) {
      std::vector<cdouble> plus = d.w, minus = d.w;
      const cdouble step = part == 0 ? cdouble(h, 0) : cdouble(0, h);
      plus[i] += step;
      minus[i] -= step;
      const double numeric = (d.loss(plus) - d.loss(minus)) / (2 * h);
      const double analytic = part == 0 ? gw[i].real() : gw[i].imag();
      worst = std::max(worst, std::abs(numeric - analytic) / scale);
    }
  EXPECT_LT(worst, 1e-5);
}

// The fast CPU backend's first step against the double reference: the same loss, the same global gradient
// norm (network and dense layer), and Adam's first update -lr g / (|g| + eps), whose sign is the gradient's.
TEST_P(CompositeGradient, CpuBackendStepMatchesTheDoubleReference) {
  const GradientCase c(GetParam());
  DoubleComposite d = c.reference();
  const double ref_loss = d.loss(d.w);
  const std::vector<cdouble> gw = d.gradient();
  double norm2 = 0;
  for (const auto& g : gw) norm2 += std::norm(g);
  for (const auto& [name, g] : d.ref->gradients())
    for (double x : g) norm2 += x * x;
  // The dense bias: d(loss)/db = sum over frames of the input gradient (same backward as gw with y = 1).
  {
    const Tensor<double> out = d.ref->forward(d.dense(d.w), Mode::Training, false);
    Tensor<double> g(out.shape);
    for (std::size_t i = 0; i < g.data.size(); ++i)
      g.data[i] = 2 * (out.data[i] - d.target[i]) / double(g.data.size());
    const Tensor<double> gx = d.ref->backward(g);
    for (int v = 0; v < d.V; ++v) {
      cdouble gb = 0;
      for (int i = 0; i < d.n; ++i)
        gb += cdouble(gx.data[(std::size_t(i) * 2) * d.V + v], gx.data[(std::size_t(i) * 2 + 1) * d.V + v]);
      norm2 += std::norm(gb);
    }
  }
  auto backend = make_cpu_composite_training_backend(c.model.network(), d.M, c.model.parameters);
  EXPECT_EQ(backend->input_size(), std::size_t(2 * d.M));
  OptimizerSettings s;
  s.learning_rate = 1e-4;
  const StepResult r = backend->step(c.input.data(), c.target.data(), c.n, s);
  ASSERT_TRUE(r.finite);
  EXPECT_NEAR(r.loss, ref_loss, 1e-5 * ref_loss);  // float forward of a 624-term GEMM and the U-Net
  EXPECT_NEAR(r.gradient_norm, std::sqrt(norm2), 1e-3 * std::sqrt(norm2));  // float backward, batch norm
  const Parameters after = backend->parameters();
  const float* w0 = c.model.parameters.at(kDenseWeight).values.data();
  const float* w1 = after.at(kDenseWeight).values.data();
  double largest = 0;
  for (const auto& g : gw) largest = std::max({largest, std::abs(g.real()), std::abs(g.imag())});
  int checked = 0, agree = 0;
  for (std::size_t i = 0; i < 2 * gw.size(); ++i) {
    const double g = i % 2 == 0 ? gw[i / 2].real() : gw[i / 2].imag();
    if (std::abs(g) < 1e-2 * largest) continue;  // a tiny gradient's sign is rounding
    ++checked;
    agree += (w1[i] - w0[i]) * g < 0;
  }
  ASSERT_GT(checked, 100);
  EXPECT_EQ(agree, checked);
}

INSTANTIATE_TEST_SUITE_P(Architectures, CompositeGradient, ::testing::Values("deepdi", "deep2s-plus"),
                         [](const auto& info) {
                           return std::string(info.param) == "deepdi" ? "DeepDI" : "Deep2SPlus";
                         });

TEST_P(CompositeGradient, ShortTrainingLowersTheLoss) {
  const GradientCase c(GetParam());
  auto backend = make_cpu_composite_training_backend(
      c.model.network(), int(c.model.system.samples_per_frame()), c.model.parameters);
  OptimizerSettings s;
  s.learning_rate = 1e-2;
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    const StepResult r = backend->step(c.input.data(), c.target.data(), c.n, s);
    ASSERT_TRUE(r.finite);
    if (step == 0) first = r.loss;
    last = r.loss;
  }
  EXPECT_LT(last, 0.2 * first) << "first " << first << ", last " << last;
  // predict runs the dense layer and the inference-mode network.
  std::vector<float> out(c.target.size());
  backend->predict(c.input.data(), out.data(), c.n);
  for (float v : out) ASSERT_TRUE(std::isfinite(v) && v >= 0 && v <= 1);
}

// ---- weights files ------------------------------------------------------------------------------------

TEST(CompositeWeights, FilesKeepTheDenseLayerAndRefuseADamagedOne) {
  test::ScratchDir dir;
  const std::string path = dir / "plus.h5";
  const Model m = make_model("deep2s-plus", tiny_system(), tiny_grid(), {.width = 2}, 4);
  write_model(path, m);
  const Model back = read_model(path);
  EXPECT_EQ(back.architecture, "deep2s-plus");
  EXPECT_EQ(back.parameters.at(kDenseWeight).values, m.parameters.at(kDenseWeight).values);
  EXPECT_EQ(back.parameters.at(kDenseBias).values, m.parameters.at(kDenseBias).values);
  {
    // A dense weight of another shape (as if made for another system) is refused by name.
    h5::File f(path, h5::File::Mode::ReadWrite);
    ASSERT_GE(H5Ldelete(f.id(), "/parameters/dense.weight", H5P_DEFAULT), 0);
    std::vector<float> wrong(std::size_t(tiny_grid().voxels()) * 10 * 2);
    f.write<float>("/parameters/dense.weight", h5::Dims{tiny_grid().voxels(), 10, 2}, wrong.data());
  }
  try {
    read_model(path);
    ADD_FAILURE() << "a damaged dense layer was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("dense.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[512, 624, 2]"), std::string::npos) << e.what();
  }
  // Measurements of another system are refused before any work.
  EXPECT_THROW(require_matching(m, path, paper_system(5), tiny_grid(), "y.h5"), InputError);
  // Asking for the GPU without one is refused with the reason, never a silent CPU fallback.
  if (cuda_device_count() == 0) {
    EXPECT_THROW(LearnedPipeline("deepdi", make_model("deepdi", tiny_system(), tiny_grid(), {.width = 2}),
                                 DeviceKind::Cuda),
                 InputError);
  }
}

}  // namespace
}  // namespace nfmimo::nn
