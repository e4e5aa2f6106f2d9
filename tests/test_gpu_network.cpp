// The cuDNN network backend against the CPU (label gpu; every test skips without a GPU).
//
// References: the double-precision ReferenceNetwork (the engine's specification) for single layers and narrow
// networks, the float CpuNetwork for the paper-size U-Net (the double reference would take minutes), and a
// host implementation of the documented optimisation step (CpuNetwork + Adam in double) for training steps.
//
// Tolerances (relative 2-norm over the whole tensor): the per-precision bounds for forward passes,
// fp32 1e-4, TF32 2e-3 (10-bit mantissa products), fp16 1e-2 (storage rounding 2^-11 per activation,
// compounding over the layers); bf16 3e-2 (8-bit mantissa, 2^-9 per rounding). Gradients sum over the batch
// and the volume and pass through batch-norm backward (which subtracts channel means, amplifying storage
// rounding): twice the forward bound in fp32 and TF32, 3x in the 16-bit types. These are first settings for
// the device run, not measured values; a failure reports the measured error.
#include <cmath>
#include <functional>
#include <map>
#include <random>

#include <gtest/gtest.h>

#include "kernels/device.hpp"
#include "kernels/gpu_normalise.hpp"
#include "kernels/device_buffer.hpp"
#include "kernels/gpu_timing.hpp"
#include "models/nn/architectures.hpp"
#include "models/nn/cpu/network.hpp"
#include "models/nn/cuda/network.hpp"
#include "models/learned/gpu_pipeline.hpp"
#include "models/training/gpu_backend.hpp"
#include "models/learned/pipeline.hpp"
#include "models/nn/reference.hpp"
#include "models/weights.hpp"
#include "radar/cpu_operator.hpp"
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

class GpuNet : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  }
};

double gradient_tolerance(Precision p) {
  return (p == Precision::Fp32 || p == Precision::Tf32 ? 2 : 3) * forward_tolerance(p);
}

const Precision kPrecisions[] = {Precision::Fp32, Precision::Tf32, Precision::Fp16, Precision::Bf16};

// ---- layers -------------------------------------------------------------------------------------
using test::layer_cases;
using test::LayerCase;

struct LayerParam {
  LayerCase layer;
  Precision precision;
};

std::vector<LayerParam> layer_params() {
  std::vector<LayerParam> out;
  for (const auto& l : layer_cases())
    for (Precision p : kPrecisions) out.push_back({l, p});
  return out;
}

class GpuLayer : public ::testing::TestWithParam<LayerParam> {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  }
};

// Forward in both modes against the double reference; training mode also moves the running statistics alike.
TEST_P(GpuLayer, ForwardMatchesReference) {
  const Network net = GetParam().layer.build();
  const Precision precision = GetParam().precision;
  const Parameters params = random_parameters(net, 12);
  for (const Mode mode : {Mode::Inference, Mode::Training}) {
    SCOPED_TRACE(mode == Mode::Inference ? "inference" : "training");
    ReferenceNetwork ref(net, params);
    GpuNetwork gpu(net, params, mode, precision);
    const Tensor<double> x = random_input(net.input_shape(3), 5);
    const Tensor<double> expected = ref.forward(x, mode);
    const Tensor<float> xf = to_float(x);
    Tensor<float> y(net.output_shape(3));
    gpu.forward(xf.ptr(), y.ptr(), 3);
    EXPECT_TRUE(relative_error_below(view(y.data), view(expected.data), forward_tolerance(precision)));
    if (mode == Mode::Training)
      for (const auto& [name, t] : ref.export_parameters()) {
        if (name.ends_with(".running_mean") || name.ends_with(".running_var")) {
          EXPECT_TRUE(relative_error_below(view(gpu.parameters().at(name).values), view(t.values),
                                           forward_tolerance(precision)))
              << name;
        }
      }
    // Inference-mode output of the training network (running statistics, nothing updated).
    if (mode == Mode::Training) {
      ReferenceNetwork ref2(net, gpu.parameters());
      const Tensor<double> expected2 = ref2.forward(x, Mode::Inference);
      gpu.predict(xf.ptr(), y.ptr(), 3);
      EXPECT_TRUE(relative_error_below(view(y.data), view(expected2.data), forward_tolerance(precision)))
          << "predict";
    }
  }
}

TEST_P(GpuLayer, BackwardMatchesReference) {
  const Network net = GetParam().layer.build();
  const Precision precision = GetParam().precision;
  const Parameters params = random_parameters(net, 13);
  ReferenceNetwork ref(net, params);
  GpuNetwork gpu(net, params, Mode::Training, precision);
  const Tensor<double> x = random_input(net.input_shape(3), 6), r = random_input(net.output_shape(3), 8);
  ref.forward(x, Mode::Training);
  const Tensor<double> dx = ref.backward(r);
  const Tensor<float> xf = to_float(x), rf = to_float(r);
  Tensor<float> y(net.output_shape(3)), dxf(net.input_shape(3));
  gpu.forward(xf.ptr(), y.ptr(), 3);
  gpu.backward(rf.ptr(), dxf.ptr());
  const double tol = gradient_tolerance(precision);
  EXPECT_TRUE(relative_error_below(view(dxf.data), view(dx.data), tol)) << "input gradient";
  const auto grads = gpu.gradients();
  ASSERT_EQ(grads.size(), ref.gradients().size());
  for (const auto& [name, g] : ref.gradients()) EXPECT_TRUE(gradient_matches(grads.at(name), g, tol)) << name;
  // Backward again through the same plan: the same gradients (nothing accumulates across calls; an
  // accumulation would double them). cuDNN's fastest filter-gradient algorithms may use atomics, so equal up
  // to rounding.
  gpu.backward(rf.ptr(), nullptr);
  const auto again = gpu.gradients();
  for (const auto& [name, g] : grads)
    EXPECT_TRUE(relative_error_below(view(again.at(name)), view(g), 0.1 * tol) || g == again.at(name))
        << name;
}

std::string precision_suffix(Precision p) { return to_string(p); }

INSTANTIATE_TEST_SUITE_P(All, GpuLayer, ::testing::ValuesIn(layer_params()), [](const auto& info) {
  return info.param.layer.name + "_" + precision_suffix(info.param.precision);
});

// ---- whole networks -----------------------------------------------------------------------------
struct NetworkParam {
  std::string architecture;
  Precision precision;
};
std::vector<NetworkParam> network_params() {
  std::vector<NetworkParam> out;
  for (const char* a : {"unet3d", "unet2d", "resnet", "cv-unet3d"})
    for (Precision p : kPrecisions) out.push_back({a, p});
  return out;
}

class GpuWholeNetwork : public ::testing::TestWithParam<NetworkParam> {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  }
};

// Narrow networks on small odd grids (the crop/pad rule is exercised), 8 channels so the tensor-core paths
// run.
TEST_P(GpuWholeNetwork, MatchesReferenceForwardAndBackward) {
  const Network net = build_network(GetParam().architecture, 9, 10, 17, {.width = 8, .blocks = 2});
  const Precision precision = GetParam().precision;
  const Parameters params = random_parameters(net, 21);
  for (const Mode mode : {Mode::Inference, Mode::Training}) {
    SCOPED_TRACE(mode == Mode::Inference ? "inference" : "training");
    ReferenceNetwork ref(net, params);
    GpuNetwork gpu(net, params, mode, precision);
    const Tensor<double> x = random_input(net.input_shape(2), 9);
    const Tensor<double> expected = ref.forward(x, mode);
    const Tensor<float> xf = to_float(x);
    Tensor<float> y(net.output_shape(2));
    gpu.forward(xf.ptr(), y.ptr(), 2);
    EXPECT_TRUE(relative_error_below(view(y.data), view(expected.data), forward_tolerance(precision)));
    if (mode != Mode::Training) continue;
    const Tensor<double> r = random_input(net.output_shape(2), 10);
    const Tensor<double> dx = ref.backward(r);
    const Tensor<float> rf = to_float(r);
    Tensor<float> dxf(net.input_shape(2));
    gpu.backward(rf.ptr(), dxf.ptr());
    const double tol = gradient_tolerance(precision);
    EXPECT_TRUE(relative_error_below(view(dxf.data), view(dx.data), tol)) << "input gradient";
    const auto grads = gpu.gradients();
    for (const auto& [name, g] : ref.gradients())
      EXPECT_TRUE(gradient_matches(grads.at(name), g, tol)) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, GpuWholeNetwork, ::testing::ValuesIn(network_params()),
                         [](const auto& info) {
                           std::string s =
                               info.param.architecture + "_" + precision_suffix(info.param.precision);
                           std::erase(s, '-');
                           return s;
                         });

// The paper's 3D U-Net at full width on the paper's grid, against the float CPU backend, batch 2 and batch 1
// (different plans, possibly different cuDNN algorithms).
TEST_F(GpuNet, PaperUNet3dMatchesCpuAtEveryPrecision) {
  const Network net = build_network("unet3d", 25, 25, 49);
  const Parameters params = random_parameters(net, 41);
  CpuNetwork cpu(net, params, Mode::Inference);
  const Tensor<float> x = to_float(random_input(net.input_shape(2), 42));
  Tensor<float> expected(net.output_shape(2));
  cpu.forward(x.ptr(), expected.ptr(), 2);
  for (Precision p : {Precision::Fp32, Precision::Tf32, Precision::Fp16, Precision::Bf16}) {
    SCOPED_TRACE(to_string(p));
    GpuNetwork gpu(net, params, Mode::Inference, p);
    Tensor<float> y(net.output_shape(2)), y1(net.output_shape(1));
    gpu.forward(x.ptr(), y.ptr(), 2);
    EXPECT_TRUE(relative_error_below(view(y.data), view(expected.data), forward_tolerance(p)));
    gpu.forward(x.ptr(), y1.ptr(), 1);
    const std::vector<float> first(expected.data.begin(), expected.data.begin() + std::ptrdiff_t(y1.size()));
    EXPECT_TRUE(relative_error_below(view(y1.data), view(first), forward_tolerance(p))) << "batch 1";
    EXPECT_NE(gpu.description().find("cuda"), std::string::npos);
    EXPECT_GT(gpu.device_bytes(), 0u);
  }
}

// Running a planned batch allocates no device memory (the plan owns every buffer).
TEST_F(GpuNet, ExecutingAPlannedBatchAllocatesNothing) {
  const Network net = build_network("unet3d", 9, 10, 17, {.width = 8});
  GpuNetwork gpu(net, random_parameters(net, 3), Mode::Inference, Precision::Fp16);
  DeviceBuffer<float> in(net.input_shape(4).elements()), out(net.output_shape(4).elements());
  DeviceStream stream;
  gpu.plan(4);
  gpu.forward_device(in.data(), out.data(), 4, stream.get());
  stream.synchronize();
  const std::size_t before = gpu_memory_used();
  for (int i = 0; i < 5; ++i) gpu.forward_device(in.data(), out.data(), 4, stream.get());
  stream.synchronize();
  EXPECT_EQ(gpu_memory_used(), before);
}

// ---- training steps ------------------------------------------------------------------------------
// The documented step (models/training/gpu_backend.hpp) on the host: CpuNetwork forward/backward in training
// mode, MSE, global-norm clipping and AdamW in double.
struct HostTrainer {
  CpuNetwork net;
  Parameters params;
  std::map<std::string, std::vector<double>> m, v;
  long long t = 0;
  HostTrainer(const Network& n, const Parameters& p) : net(n, p, Mode::Training), params(p) {}

  StepResult step(const float* x, const float* target, int n, const OptimizerSettings& o) {
    const std::size_t count = net.network().output_shape(n).elements();
    std::vector<float> y(count), g(count);
    net.forward(x, y.data(), n);
    double loss = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const double d = double(y[i]) - target[i];
      loss += d * d;
      g[i] = float(2 * d / double(count));
    }
    net.backward(g.data(), nullptr);
    params = net.parameters();  // running statistics moved by forward
    // A convolution bias feeding a training-mode batch norm has an exactly zero gradient; the float CPU path
    // gives rounding noise there, which Adam would turn into steps of up to lr. The documented step (and the
    // GPU) uses the exact zero.
    auto grads = net.gradients();
    const auto& ops = net.network().ops();
    const auto uses = net.network().use_counts();
    for (std::size_t i = 0; i < ops.size(); ++i)
      if (ops[i].kind == OpKind::Conv && uses[i] == 1)
        for (const Op& next : ops)
          if (next.kind == OpKind::BatchNorm && next.inputs[0] == int(i) &&
              grads.count(ops[i].name + ".bias"))
            std::fill(grads[ops[i].name + ".bias"].begin(), grads[ops[i].name + ".bias"].end(), 0.f);
    double sq = 0;
    for (const auto& [name, gr] : grads)
      for (float e : gr) sq += double(e) * e;
    const double norm = std::sqrt(sq);
    const double clip = o.clip_norm > 0 && norm > o.clip_norm ? o.clip_norm / norm : 1.0;
    ++t;
    const double c1 = 1 / (1 - std::pow(o.beta1, double(t))), c2 = 1 / (1 - std::pow(o.beta2, double(t)));
    for (const auto& [name, gr] : grads) {
      auto& p = params.at(name).values;
      auto& mm = m[name];
      auto& vv = v[name];
      mm.resize(gr.size()), vv.resize(gr.size());
      const std::string op = name.substr(0, name.rfind('.'));
      bool decay = false;
      for (const Op& o2 : net.network().ops())
        if (o2.name == op && name.ends_with(".weight"))
          decay = o2.kind == OpKind::Conv || o2.kind == OpKind::ConvTranspose || o2.kind == OpKind::Dense;
      for (std::size_t i = 0; i < gr.size(); ++i) {
        const double gi = gr[i] * clip;
        mm[i] = o.beta1 * mm[i] + (1 - o.beta1) * gi;
        vv[i] = o.beta2 * vv[i] + (1 - o.beta2) * gi * gi;
        double pi = p[i];
        if (decay) pi -= o.learning_rate * o.weight_decay * pi;
        pi -= o.learning_rate * (mm[i] * c1) / (std::sqrt(vv[i] * c2) + o.epsilon);
        p[i] = float(pi);
      }
    }
    net.set_parameters(params);
    return {loss / double(count), norm, true};
  }
};

// Parameter updates (after - before) of every trainable parameter, concatenated.
std::vector<double> updates(const Parameters& before, const Parameters& after) {
  std::vector<double> u;
  for (const auto& [name, t] : before)
    if (t.trainable)
      for (std::size_t i = 0; i < t.values.size(); ++i)
        u.push_back(double(after.at(name).values[i]) - t.values[i]);
  return u;
}

TEST_F(GpuNet, TrainingStepsMatchTheHostImplementationOfTheSameStep) {
  const Network net = build_network("unet3d", 9, 10, 17, {.width = 4});
  const Parameters initial = random_parameters(net, 51);
  OptimizerSettings o;
  o.learning_rate = 1e-3, o.weight_decay = 1e-2, o.clip_norm = 0.5;
  HostTrainer host(net, initial);
  GpuTrainingBackend gpu(net, initial, Precision::Fp32);
  const int n = 2;
  for (int step = 0; step < 3; ++step) {
    const Tensor<float> x = to_float(random_input(net.input_shape(n), 60 + step));
    Tensor<float> target(net.output_shape(n));
    std::mt19937 rng(70 + step);
    std::uniform_real_distribution<float> u(0.f, 1.f);
    for (auto& v : target.data) v = u(rng);
    const StepResult a = host.step(x.ptr(), target.ptr(), n, o);
    const StepResult b = gpu.step(x.ptr(), target.ptr(), n, o);
    EXPECT_TRUE(b.finite);
    EXPECT_NEAR(b.loss, a.loss, 1e-5 * a.loss) << "step " << step;
    EXPECT_NEAR(b.gradient_norm, a.gradient_norm, 1e-4 * a.gradient_norm) << "step " << step;
  }
  // Adam's early updates are about lr per element whatever the gradient's size, so updates are compared, not
  // parameters (a mismatch in the step rule shows as O(1) relative error).
  const auto expected = updates(initial, host.params), got = updates(initial, gpu.parameters());
  EXPECT_TRUE(relative_error_below(view(got), view(expected), 1e-3));
  const Parameters got_params = gpu.parameters();
  for (const auto& [name, t] : host.params) {
    if (!t.trainable) {
      EXPECT_TRUE(relative_error_below(view(got_params.at(name).values), view(t.values), 1e-4)) << name;
    }
  }
  EXPECT_EQ(gpu.optimizer_state().step, 3);
}

// Every precision lowers the loss on a fixed batch, and the optimizer state round-trips through load_state.
TEST_F(GpuNet, MixedPrecisionTrainingLowersTheLossAndResumes) {
  const Network net = build_network("unet3d", 9, 10, 17, {.width = 8});
  const Parameters initial = initial_parameters(net, 3);
  const int n = 4;
  const Tensor<float> x = to_float(random_input(net.input_shape(n), 1));
  Tensor<float> target(net.output_shape(n));
  for (std::size_t i = 0; i < target.size(); ++i) target.data[i] = x.data[i % x.size()] > 0.5f ? 1.f : 0.f;
  OptimizerSettings o;
  o.learning_rate = 3e-3;
  for (Precision p : kPrecisions) {
    SCOPED_TRACE(to_string(p));
    GpuTrainingBackend gpu(net, initial, p);
    const double first = gpu.step(x.ptr(), target.ptr(), n, o).loss;
    double last = first;
    for (int i = 0; i < 30; ++i) {
      const StepResult r = gpu.step(x.ptr(), target.ptr(), n, o);
      ASSERT_TRUE(r.finite) << "step " << i;
      last = r.loss;
    }
    EXPECT_LT(last, 0.7 * first);
    // Checkpoint and resume: the next step is the same as without the interruption.
    const Parameters params = gpu.parameters();
    const OptimizerState state = gpu.optimizer_state();
    GpuTrainingBackend resumed(net, initial, p);
    resumed.load_state(params, state);
    const StepResult a = gpu.step(x.ptr(), target.ptr(), n, o), b = resumed.step(x.ptr(), target.ptr(), n, o);
    EXPECT_NEAR(b.loss, a.loss, 1e-6 * a.loss);
  }
}

// fp16 loss scaling: an overflow of the scaled gradients skips the step and halves the scale; the run goes
// on.
TEST_F(GpuNet, Fp16OverflowSkipsTheStepAndHalvesTheLossScale) {
  const Network net = build_network("resnet", 6, 6, 6, {.width = 4, .blocks = 1});
  const Parameters initial = initial_parameters(net, 5);
  GpuTrainingBackend gpu(net, initial, Precision::Fp16);
  const int n = 1;
  // Output ~ input = 3e3 against a zero target: dL/dy = 6e3 / 216 elements, times the initial scale 65536, is
  // far beyond float16's 65504, while every activation stays within float16's range (batch norm rescales the
  // rest).
  Tensor<float> x(net.input_shape(n)), target(net.output_shape(n));
  for (auto& v : x.data) v = 3e3f;
  const double scale = gpu.loss_scale();
  const StepResult r = gpu.step(x.ptr(), target.ptr(), n, OptimizerSettings{});
  EXPECT_TRUE(r.finite);
  EXPECT_TRUE(std::isinf(r.gradient_norm));
  EXPECT_EQ(gpu.skipped_steps(), 1);
  EXPECT_EQ(gpu.loss_scale(), scale / 2);
  const Parameters after = gpu.parameters();
  for (const auto& [name, t] : initial) {
    if (t.trainable) {
      EXPECT_EQ(after.at(name).values, t.values) << name;
    }
  }
}

TEST_F(GpuNet, RefusesTheSsimLoss) {
  const Network net = build_network("resnet", 6, 6, 6, {.width = 4, .blocks = 1});
  GpuTrainingBackend gpu(net, initial_parameters(net, 1), Precision::Fp32);
  Tensor<float> x(net.input_shape(1)), t(net.output_shape(1));
  OptimizerSettings o;
  o.loss = LossKind::MseSsim;
  EXPECT_THROW(gpu.step(x.ptr(), t.ptr(), 1, o), InputError);
}

// ---- pipelines ----------------------------------------------------------------------------------
ImagingGrid tiny_grid() {
  return ImagingGrid(Axis::linspace(-0.08, 0.08, 8), Axis::linspace(-0.06, 0.06, 9),
                     Axis::linspace(0.3, 0.45, 8));
}

Model tiny_model(const std::string& arch) {
  Model m = make_model(arch, test::small_system(), tiny_grid(), {.width = 8, .blocks = 1}, 5);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.2f, 1.5f);
  for (auto& [name, t] : m.parameters)
    if (name.ends_with(".bias") || name.ends_with("running_var") || name.ends_with("running_mean"))
      for (auto& v : t.values) v = u(rng);
  return m;
}

TEST_F(GpuNet, NormalisationKernelMatchesTheCpuPipeline) {
  for (const char* method : {"deep2s", "cv-deep2s"}) {
    SCOPED_TRACE(method);
    const Model m = tiny_model(learned_method_spec(method).architecture);
    const int frames = 3;
    auto y = test::random_complex<float>(m.system.samples_per_frame() * frames, 4);
    for (std::size_t i = m.system.samples_per_frame(); i < 2 * m.system.samples_per_frame(); ++i)
      y[i] = 0;  // frame 1
    LearnedPipeline cpu(method, m, DeviceKind::Cpu);
    LearnedPipeline gpu(method, m, DeviceKind::Cuda, ImagingMode::Exact, 2);
    const std::size_t per = m.grid.voxels() * (learned_method_spec(method).complex_input ? 2 : 1) * frames;
    std::vector<float> a(per), b(per);
    cpu.network_input(y.data(), frames, a.data());
    gpu.network_input(y.data(), frames, b.data());
    EXPECT_TRUE(relative_error_below(view(b), view(a), 1e-5));
    for (std::size_t i = per / 3; i < 2 * per / 3; ++i)
      EXPECT_EQ(b[i], 0.f) << "an all-zero frame stays zero";
  }
}

// DeepDI / Deep2S+: the device dense stage (per-frame scale kernel, cuBLAS cgemm, bias + split) gives the CPU
// pipeline's network input (Eigen GEMM); an all-zero frame gives the bias alone; the live path (cuBLAS inside
// the CUDA graph) gives the batched path's volumes.
TEST_F(GpuNet, DenseFirstStageMatchesTheCpuPipeline) {
  for (const char* method : {"deepdi", "deep2s-plus"}) {
    SCOPED_TRACE(method);
    const Model m = tiny_model(method);
    const int frames = 3;
    auto y = test::random_complex<float>(m.system.samples_per_frame() * frames, 14);
    for (std::size_t i = m.system.samples_per_frame(); i < 2 * m.system.samples_per_frame(); ++i)
      y[i] = 0;  // frame 1
    LearnedPipeline cpu(method, m, DeviceKind::Cpu);
    LearnedPipeline gpu(method, m, DeviceKind::Cuda, ImagingMode::Exact, 2);
    const std::size_t per = m.grid.voxels() * 2 * frames;
    std::vector<float> a(per), b(per);
    cpu.network_input(y.data(), frames, a.data());
    gpu.network_input(y.data(), frames, b.data());
    // Both sum M = 48 float products (other orders) plus the bias.
    EXPECT_TRUE(relative_error_below(view(b), view(a), 1e-5));
    const std::size_t V = m.grid.voxels();
    for (std::size_t v = 0; v < V; ++v) {
      EXPECT_EQ(b[2 * V + v], m.parameters.at("dense.bias").values[2 * v]) << "all-zero frame: the bias";
      EXPECT_EQ(b[3 * V + v], m.parameters.at("dense.bias").values[2 * v + 1]);
    }
    std::vector<float> batched(V * frames), live(V);
    gpu.run(y.data(), frames, batched.data());
    gpu.run_live(y.data(), live.data());
    const std::vector<float> first(batched.begin(), batched.begin() + std::ptrdiff_t(V));
    EXPECT_TRUE(relative_error_below(view(live), view(first), 1e-5));
    EXPECT_TRUE(gpu.gpu()->live_graph()) << gpu.device_description();
  }
}

// The trainer's target path: |scene| on the device equals std::abs on the host.
TEST_F(GpuNet, ComplexMagnitudeKernelMatchesTheHost) {
  const auto z = test::random_complex<float>(10007, 12);
  std::vector<float> expected(z.size()), got(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) expected[i] = std::abs(z[i]);
  DeviceBuffer<cfloat> in(z.size());
  DeviceBuffer<float> out(z.size());
  DeviceStream stream;
  in.upload(z.data(), z.size(), stream.get());
  complex_magnitude(in.data(), out.data(), z.size(), stream.get());
  out.download(got.data(), got.size(), stream.get());
  stream.synchronize();
  EXPECT_TRUE(relative_error_below(view(got), view(expected), 1e-6));
}

TEST_F(GpuNet, PipelinesMatchTheCpuPipelines) {
  for (const auto& spec : learned_method_specs()) {
    SCOPED_TRACE(spec.name);
    const Model m = tiny_model(spec.architecture);
    const int frames = 5;
    const auto y = test::random_complex<float>(m.system.samples_per_frame() * frames, 7);
    LearnedPipeline cpu(spec.name, m, DeviceKind::Cpu);
    std::vector<float> expected(m.grid.voxels() * frames);
    cpu.run(y.data(), frames, expected.data());
    for (Precision p : {Precision::Fp32, Precision::Fp16}) {
      for (ImagingMode mode : {ImagingMode::Exact, ImagingMode::Fast}) {
        if (mode == ImagingMode::Fast && p != Precision::Fp32) continue;
        SCOPED_TRACE(to_string(p) + (mode == ImagingMode::Fast ? " fast" : " exact"));
        LearnedPipeline gpu(spec.name, m, DeviceKind::Cuda, mode, 2, p);  // 2 + 2 + 1 frames: chunking
        ASSERT_NE(gpu.gpu(), nullptr);
        std::vector<float> out(expected.size());
        gpu.run(y.data(), frames, out.data());
        // The fast adjoint is within 1e-3 of the exact one (docs/physics.md).
        const double tol = std::max(forward_tolerance(p), mode == ImagingMode::Fast ? 2e-3 : 0.0);
        EXPECT_TRUE(relative_error_below(view(out), view(expected), tol));
      }
    }
  }
}

// The live path (batch-1 buffers, one CUDA graph) gives what the batched path gives, frame by frame.
TEST_F(GpuNet, LiveCudaGraphPathMatchesTheBatchedPath) {
  const Model m = tiny_model("unet3d");
  const int frames = 3;
  const auto y = test::random_complex<float>(m.system.samples_per_frame() * frames, 8);
  for (Precision p : {Precision::Fp32, Precision::Fp16}) {
    SCOPED_TRACE(to_string(p));
    LearnedPipeline gpu("deep2s", m, DeviceKind::Cuda, ImagingMode::Exact, 4, p);
    std::vector<float> batched(m.grid.voxels() * frames), live(m.grid.voxels());
    gpu.run(y.data(), frames, batched.data());
    for (int f = 0; f < frames; ++f) {
      gpu.run_live(y.data() + std::size_t(f) * m.system.samples_per_frame(), live.data());
      const std::vector<float> want(batched.begin() + std::ptrdiff_t(f * m.grid.voxels()),
                                    batched.begin() + std::ptrdiff_t((f + 1) * m.grid.voxels()));
      // Same kernels, but the batch-1 plan may pick other cuDNN algorithms (other summation orders).
      EXPECT_TRUE(relative_error_below(view(live), view(want), p == Precision::Fp32 ? 1e-5 : 5e-3))
          << "frame " << f;
    }
    EXPECT_TRUE(gpu.gpu()->live_graph()) << gpu.device_description();
  }
}

// The method table on the GPU: --precision parsing, the default precision, refusal of nonsense.
TEST_F(GpuNet, MethodPrecisionParsing) {
  EXPECT_EQ(parse_inference_precision("fp16"), Precision::Fp16);
  EXPECT_THROW(parse_inference_precision("fp8"), InputError);
  EXPECT_EQ(default_gpu_precision(), Precision::Fp16);
}

}  // namespace
}  // namespace nfmimo::nn
