// Training: losses (finite-difference gradients in double), Adam/AdamW, clipping, schedules, the CPU training
// backend (loss goes down on a tiny fixed problem, reproducible, non-finite steps change nothing), the data
// sources (the pipeline's normalisation, no repeats, per-epoch permutations, prefetching) and the trainer
// (checkpoint/resume equals an uninterrupted run, a non-finite loss keeps the last good checkpoint, resume
// refuses other settings).
#include <cmath>
#include <filesystem>
#include <random>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/hdf5.hpp"
#include "kernels/device.hpp"
#include "models/nn/architectures.hpp"
#include "models/training/losses.hpp"
#include "models/metrics.hpp"
#include "models/training/optimizer.hpp"
#include "models/learned/pipeline.hpp"
#include "models/training/trainer.hpp"
#include "models/training/backend.hpp"
#include "models/training/data.hpp"
#include "models/weights.hpp"
#include "radar/error.hpp"
#include "synthesizer/synthesizer.hpp"
#include "tests/cli_util.hpp"
#include "tests/test_util.hpp"

namespace nfmimo::nn {
namespace {

std::vector<double> random_volume(std::size_t n, unsigned seed, double lo = 0.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// Central differences of f at x along every coordinate (or every `stride`-th one), compared with `grad`.
template <class F>
double worst_relative_gradient_error(F f, std::vector<double> x, const std::vector<double>& grad, double h,
                                     std::size_t stride = 1) {
  double worst = 0, scale = 0;
  for (double g : grad) scale = std::max(scale, std::abs(g));
  EXPECT_GT(scale, 0) << "the gradient is all zeros: the check would prove nothing";
  for (std::size_t i = 0; i < x.size(); i += stride) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f(x);
    x[i] = x0 - h;
    const double fm = f(x);
    x[i] = x0;
    const double numeric = (fp - fm) / (2 * h);
    worst = std::max(worst, std::abs(numeric - grad[i]) / scale);
  }
  return worst;
}

// ---- losses
// -------------------------------------------------------------------------------------------------

struct LossCase {
  LossKind kind;
  VolumeShape shape;
  const char* name;
};

class LossGradient : public ::testing::TestWithParam<LossCase> {};

// Tolerance: central differences in double with h = 1e-6 have truncation error ~h^2 f''' and rounding error
// ~1e-16 / h relative to the loss, both below 1e-7 of the largest gradient entry here.
TEST_P(LossGradient, MatchesCentralDifferencesInDouble) {
  const LossCase c = GetParam();
  const int n = 2;
  const std::size_t total = c.shape.voxels() * n;
  const LossSettings settings{c.kind, 0.7};
  const std::vector<double> target = random_volume(total, 11);
  std::vector<double> output = random_volume(total, 12);
  if (c.kind == LossKind::L1)  // keep away from the kink at output == target
    for (std::size_t i = 0; i < total; ++i)
      if (std::abs(output[i] - target[i]) < 1e-3) output[i] += 2e-3;
  std::vector<double> grad(total);
  loss_and_gradient(settings, output, target, n, c.shape, grad);
  auto f = [&](const std::vector<double>& o) {
    return loss_and_gradient(settings, o, target, n, c.shape, {});
  };
  EXPECT_LT(worst_relative_gradient_error(f, output, grad, 1e-6, 1), 1e-7) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Losses, LossGradient,
    ::testing::Values(
        LossCase{LossKind::Mse, {4, 3, 5}, "mse"}, LossCase{LossKind::L1, {4, 3, 5}, "l1"},
        // Short axes (no crop), and an x axis long enough (11 > 2 x 5) for the crop of the SSIM mean.
        LossCase{LossKind::MseSsim, {4, 3, 5}, "mse+ssim short"},
        LossCase{LossKind::MseSsim, {11, 5, 4}, "mse+ssim cropped"}),
    [](const auto& info) {
      std::string s = info.param.name;
      for (auto& ch : s)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return s;
    });

TEST(Losses, ValuesFollowTheirDefinitions) {
  const VolumeShape shape{12, 11, 13};
  const int n = 2;
  const std::size_t V = shape.voxels();
  const auto o = random_volume(V * n, 3), t = random_volume(V * n, 4);
  double mse = 0, l1 = 0;
  for (std::size_t i = 0; i < o.size(); ++i)
    mse += (o[i] - t[i]) * (o[i] - t[i]), l1 += std::abs(o[i] - t[i]);
  mse /= double(o.size());
  l1 /= double(o.size());
  EXPECT_NEAR(loss_and_gradient({LossKind::Mse}, o, t, n, shape, {}), mse, 1e-15);
  EXPECT_NEAR(loss_and_gradient({LossKind::L1}, o, t, n, shape, {}), l1, 1e-15);
  // The SSIM term is the metric of models/metrics.hpp (the one evaluate reports), per sample, averaged.
  const double s0 = ssim_3d(std::span(o).subspan(0, V), std::span(t).subspan(0, V), shape);
  const double s1 = ssim_3d(std::span(o).subspan(V, V), std::span(t).subspan(V, V), shape);
  EXPECT_LT(s0, 0.9);
  EXPECT_NEAR(loss_and_gradient({LossKind::MseSsim, 0.5}, o, t, n, shape, {}),
              mse + 0.5 * (1 - (s0 + s1) / 2), 1e-14);
  // A perfect output has zero loss and zero gradient.
  std::vector<double> g(o.size(), 1.0);
  EXPECT_NEAR(loss_and_gradient({LossKind::MseSsim, 1.0}, t, t, n, shape, g), 0.0, 1e-14);
  for (double x : g) ASSERT_NEAR(x, 0.0, 1e-12);
  // The float entry point computes the same in double.
  std::vector<float> of(o.begin(), o.end()), tf(t.begin(), t.end()), gf(o.size());
  std::vector<double> od(of.begin(), of.end()), td(tf.begin(), tf.end()), gd(o.size());
  EXPECT_DOUBLE_EQ(loss_and_gradient({LossKind::MseSsim}, of.data(), tf.data(), n, shape, gf.data()),
                   loss_and_gradient({LossKind::MseSsim}, od, td, n, shape, gd));
  EXPECT_THROW(loss_and_gradient({LossKind::Mse}, o, t, 3, shape, {}), InputError);
}

TEST(Losses, NamesRoundTrip) {
  for (const char* name : {"mse", "l1", "mse+ssim"}) EXPECT_EQ(to_string(parse_loss(name)), name);
  EXPECT_THROW(parse_loss("ssim"), InputError);
}

// ---- optimizer
// ----------------------------------------------------------------------------------------------

TEST(Optimizer, AdamWMatchesTheTextbookAlgorithm) {
  // A tiny network to name the parameters: one conv (decayed weight, undecayed bias) and a batch norm.
  Network net("test", Shape{1, 1, 2, 2, 2});
  const int c = net.conv("conv", 0, 2, {1, 1, 1});
  net.set_output(net.batch_norm("bn", c));
  Parameters p = initial_parameters(net, 3);
  const Parameters p0 = p;
  OptimizerSettings s;
  s.learning_rate = 0.01;
  s.weight_decay = 0.1;
  const std::set<std::string> decayed = decayed_parameters(net);
  EXPECT_EQ(decayed, (std::set<std::string>{"conv.weight"}));
  OptimizerState state;
  std::map<std::string, std::vector<double>> m, v, ref;
  for (const auto& [name, t] : p) ref[name].assign(t.values.begin(), t.values.end());
  for (int step = 1; step <= 3; ++step) {
    Gradients g;
    for (const auto& [name, t] : p)
      if (t.trainable) {
        const auto r = random_volume(t.values.size(), unsigned(step * 100 + name.size()), -1, 1);
        g[name].assign(r.begin(), r.end());
      }
    const double scale = 0.5;
    adam_step(p, g, scale, s, decayed, state);
    for (auto& [name, x] : ref) {
      if (!p.at(name).trainable) continue;
      auto& mm = m[name];
      auto& vv = v[name];
      mm.resize(x.size());
      vv.resize(x.size());
      const double wd = decayed.count(name) ? s.weight_decay : 0;
      for (std::size_t i = 0; i < x.size(); ++i) {
        const double gi = double(g[name][i]) * scale;
        mm[i] = 0.9 * mm[i] + 0.1 * gi;
        vv[i] = 0.999 * vv[i] + 0.001 * gi * gi;
        const double mhat = mm[i] / (1 - std::pow(0.9, step)), vhat = vv[i] / (1 - std::pow(0.999, step));
        x[i] = x[i] * (1 - s.learning_rate * wd) - s.learning_rate * mhat / (std::sqrt(vhat) + s.epsilon);
      }
    }
  }
  EXPECT_EQ(state.step, 3);
  for (const auto& [name, t] : p)
    for (std::size_t i = 0; i < t.values.size(); ++i)
      ASSERT_NEAR(t.values[i], ref.at(name)[i], 2e-6 * (1 + std::abs(ref.at(name)[i])))
          << name << "[" << i << "]";
  // Running statistics are not trainable: untouched.
  EXPECT_EQ(p.at("bn.running_var").values, p0.at("bn.running_var").values);
}

TEST(Optimizer, SavedMomentsMustMatchTheirParameters) {
  Parameters p;
  p["w"] = ParameterTensor{{3}, {1.0f, 2.0f, 3.0f}, true};
  p["bn.running_mean"] = ParameterTensor{{2}, {0.0f, 0.0f}, false};
  OptimizerState st;
  st.m["w"] = {0.0f, 0.0f, 0.0f};
  st.v["bn.running_mean"] = {0.0f};  // not trainable: its moments are never read
  EXPECT_NO_THROW(check_optimizer_moments(p, st));
  st.v["w"] = {0.0f, 0.0f};
  EXPECT_THROW(check_optimizer_moments(p, st), InputError);
}

TEST(Optimizer, ClippingAndGlobalNorm) {
  const Gradients g = {{"a", {3.0f, 0.0f}}, {"b", {4.0f}}};
  EXPECT_DOUBLE_EQ(global_norm(g), 5.0);
  EXPECT_DOUBLE_EQ(clip_scale(5.0, 0), 1.0);
  EXPECT_DOUBLE_EQ(clip_scale(5.0, 10), 1.0);
  EXPECT_DOUBLE_EQ(clip_scale(5.0, 2), 0.4);
}

TEST(Schedules, CosineAndPlateau) {
  const LearningRateSchedule cosine(1e-3, {ScheduleKind::Cosine, 1e-5});
  EXPECT_DOUBLE_EQ(cosine.rate(0), 1e-3);
  EXPECT_NEAR(cosine.rate(0.5), (1e-3 + 1e-5) / 2, 1e-15);
  EXPECT_DOUBLE_EQ(cosine.rate(1), 1e-5);
  EXPECT_DOUBLE_EQ(cosine.rate(2), 1e-5);

  ScheduleSettings ps{ScheduleKind::Plateau, 2e-4};
  ps.patience = 2;
  LearningRateSchedule plateau(1e-3, ps);
  EXPECT_FALSE(plateau.end_epoch(1.0));
  EXPECT_FALSE(plateau.end_epoch(0.5));      // improvement
  EXPECT_FALSE(plateau.end_epoch(0.49999));  // below the relative threshold: a bad epoch
  EXPECT_FALSE(plateau.end_epoch(0.6));      // second bad epoch: patience 2 not yet exceeded
  EXPECT_TRUE(plateau.end_epoch(0.7));       // third: reduce
  EXPECT_DOUBLE_EQ(plateau.rate(0), 5e-4);
  for (int i = 0; i < 12; ++i) plateau.end_epoch(1.0);
  EXPECT_DOUBLE_EQ(plateau.rate(0), 2e-4);  // the floor
  EXPECT_THROW(parse_schedule("step"), InputError);
}

// ---- the CPU training backend
// ---------------------------------------------------------------------------------

// A tiny fixed problem: denoise sparse volumes. Targets are sparse blocks in [0, 1]; inputs are the targets
// plus a fixed noise floor, as a normalised adjoint would be.
struct TinyProblem {
  Network net = build_network("unet3d", 8, 8, 8, {.width = 4});
  int n = 4;
  std::vector<float> input, target;
  TinyProblem() {
    const std::size_t V = 512;
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(0, 1);
    target.assign(V * n, 0.0f);
    input.resize(V * n);
    for (int s = 0; s < n; ++s)
      for (int x = 2 + s % 3; x < 5 + s % 3; ++x)
        for (int y = 1; y < 4 + s; ++y)
          for (int z = 3; z < 6; ++z) target[s * V + (x * 8 + y) * 8 + z] = 0.5f + 0.5f * u(rng);
    for (std::size_t i = 0; i < input.size(); ++i) input[i] = std::min(1.0f, target[i] + 0.3f * u(rng));
  }
};

TEST(CpuTrainingBackend, LowersTheLossOfATinyFixedProblem) {
  const TinyProblem p;
  auto backend = make_cpu_training_backend(p.net, initial_parameters(p.net, 1));
  OptimizerSettings s;
  s.learning_rate = 1e-2;
  double first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    const StepResult r = backend->step(p.input.data(), p.target.data(), p.n, s);
    ASSERT_TRUE(r.finite);
    EXPECT_GT(r.gradient_norm, 0);
    if (step == 0) first = r.loss;
    last = r.loss;
  }
  std::printf("tiny problem: loss %.5f -> %.5f (x %.1f)\n", first, last, first / last);
  // Stated factor: 40 Adam steps at lr 1e-2 must cut the MSE at least 10-fold (the sigmoid starts at 0.5
  // everywhere against targets that are mostly 0).
  EXPECT_LT(last, first / 10);
  // Inference mode (running statistics) is close to the training-mode fit after this many steps.
  std::vector<float> out(p.target.size());
  backend->predict(p.input.data(), out.data(), p.n);
  EXPECT_LT(loss_and_gradient({LossKind::Mse}, out.data(), p.target.data(), p.n, {8, 8, 8}, nullptr),
            first / 2);
}

// The pipelined-step contract the trainer uses (backend.hpp), through the host default: queued and collected
// steps are the same steps, results come back oldest first, and misuse is an error rather than a lost loss.
TEST(TrainingBackendContract, QueuedStepsAreTheSynchronousStepsCollectedInOrder) {
  const TinyProblem p;
  OptimizerSettings s;
  s.learning_rate = 1e-2;
  auto sync = make_cpu_training_backend(p.net, initial_parameters(p.net, 6));
  auto queued = make_cpu_training_backend(p.net, initial_parameters(p.net, 6));
  std::vector<double> expected, got;
  for (int step = 0; step < 3; ++step)
    expected.push_back(sync->step(p.input.data(), p.target.data(), p.n, s).loss);
  queued->queue_step(p.input.data(), p.target.data(), p.n, s);
  queued->queue_step(p.input.data(), p.target.data(), p.n, s);
  EXPECT_EQ(queued->steps_in_flight(), TrainingBackend::kStepsInFlight);
  EXPECT_THROW(queued->queue_step(p.input.data(), p.target.data(), p.n, s), Error);
  got.push_back(queued->collect_step().loss);
  queued->queue_step(p.input.data(), p.target.data(), p.n, s);
  got.push_back(queued->collect_step().loss);
  got.push_back(queued->collect_step().loss);
  EXPECT_EQ(queued->steps_in_flight(), 0);
  EXPECT_THROW(queued->collect_step(), Error);
  EXPECT_EQ(got, expected);
  for (const auto& [name, t] : sync->parameters())
    EXPECT_EQ(t.values, queued->parameters().at(name).values) << name;
}

TEST(CpuTrainingBackend, SameSeedAndDataGiveTheSameWeights) {
  const TinyProblem p;
  OptimizerSettings s;
  s.loss = LossKind::MseSsim;
  s.weight_decay = 1e-2;
  s.clip_norm = 0.05;
  Parameters result[2];
  for (auto& r : result) {
    auto backend = make_cpu_training_backend(p.net, initial_parameters(p.net, 9));
    for (int step = 0; step < 3; ++step) backend->step(p.input.data(), p.target.data(), p.n, s);
    r = backend->parameters();
  }
  for (const auto& [name, t] : result[0]) EXPECT_EQ(t.values, result[1].at(name).values) << name;
  EXPECT_NE(result[0].at("out.conv.weight").values,
            initial_parameters(p.net, 9).at("out.conv.weight").values);
}

TEST(CpuTrainingBackend, ANonFiniteStepChangesNothing) {
  TinyProblem p;
  auto backend = make_cpu_training_backend(p.net, initial_parameters(p.net, 2));
  OptimizerSettings s;
  backend->step(p.input.data(), p.target.data(), p.n, s);
  const Parameters before = backend->parameters();
  const OptimizerState state = backend->optimizer_state();
  p.input[7] = NAN;
  const StepResult r = backend->step(p.input.data(), p.target.data(), p.n, s);
  EXPECT_FALSE(r.finite);
  for (const auto& [name, t] : backend->parameters()) EXPECT_EQ(t.values, before.at(name).values) << name;
  EXPECT_EQ(backend->optimizer_state().step, state.step);
}

TEST(CpuTrainingBackend, LoadStateContinuesExactly) {
  const TinyProblem p;
  OptimizerSettings s;
  auto a = make_cpu_training_backend(p.net, initial_parameters(p.net, 4));
  for (int i = 0; i < 2; ++i) a->step(p.input.data(), p.target.data(), p.n, s);
  auto b = make_cpu_training_backend(p.net, initial_parameters(p.net, 77));
  b->load_state(a->parameters(), a->optimizer_state());
  a->step(p.input.data(), p.target.data(), p.n, s);
  b->step(p.input.data(), p.target.data(), p.n, s);
  for (const auto& [name, t] : a->parameters()) EXPECT_EQ(t.values, b->parameters().at(name).values) << name;
}

// ---- data sources
// --------------------------------------------------------------------------------------------

SampleFormat tiny_format(bool complex_input = false) {
  return {paper_system(4),
          ImagingGrid(Axis::linspace(-0.08, 0.08, 8), Axis::linspace(-0.08, 0.08, 8),
                      Axis::linspace(0.4, 0.55, 8)),
          complex_input};
}

TEST(TrainingData, InputsAreThePipelinesNetworkInputAndTargetsAreNormalisedMagnitudes) {
  for (const bool complex_input : {false, true}) {
    const SampleFormat f = tiny_format(complex_input);
    SynthesizedSourceSettings ss{f, SceneConfig{}, 21, 3, 2, DeviceKind::Cpu};
    auto source = make_synthesized_source(ss);
    HostBatch b;
    source->produce(1, 1, b);  // samples (1 * 2 + 1) * 3 = 9, 10, 11
    ASSERT_EQ(b.count, 3);
    const Synthesizer synth(f.system, f.grid, SceneConfig{}, 21, DeviceKind::Cpu);
    const SampleBatch ref = synth.batch(9, 3);
    const Model model = make_model(complex_input ? "cv-unet3d" : "unet3d", f.system, f.grid, {.width = 2});
    LearnedPipeline pipeline(complex_input ? "cv-deep2s" : "deep2s", model, DeviceKind::Cpu);
    std::vector<float> input(b.input.size());
    pipeline.network_input(ref.measurements.data(), 3, input.data());
    EXPECT_EQ(b.input, input);
    float peak = 0;
    for (std::size_t i = 0; i < b.target.size(); ++i) {
      ASSERT_FLOAT_EQ(b.target[i], std::abs(ref.targets[i]));  // synthesizer scenes have max |x| = 1 already
      peak = std::max(peak, b.target[i]);
    }
    EXPECT_FLOAT_EQ(peak, 1.0f);
  }
  // A target of another scale is normalised to a maximum of 1.
  const std::vector<cfloat> t = {{0, 3}, {4, 0}, {0, 0}, {0, 0}};
  std::vector<float> out(4);
  normalised_target_magnitudes(t.data(), 2, 2, out.data());
  EXPECT_EQ(out, (std::vector<float>{0.75f, 1.0f, 0.0f, 0.0f}));
}

TEST(TrainingData, GpuSourceWithoutAGpuIsRefusedClearly) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present (tests/test_gpu_training.cpp covers it)";
  EXPECT_THROW(make_gpu_synthesized_source({tiny_format(), SceneConfig{}, 1, 2, 2, DeviceKind::Cuda}),
               InputError);
}

TEST(TrainingData, EpochPermutationsArePermutationsThatChangeEveryEpoch) {
  const auto a = epoch_permutation(1000, 5, 0), b = epoch_permutation(1000, 5, 1);
  EXPECT_EQ(a, epoch_permutation(1000, 5, 0));
  EXPECT_NE(a, b);
  EXPECT_NE(a, epoch_permutation(1000, 6, 0));
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (std::int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[std::size_t(i)], i);
  int fixed = 0;
  for (std::int64_t i = 0; i < 1000; ++i) fixed += a[std::size_t(i)] == i;
  EXPECT_LT(fixed, 10);  // a uniform permutation has about one fixed point
}

TEST(TrainingData, FileSourceReadsPermutedRowsThroughThePrefetcher) {
  test::ScratchDir dir;
  const SampleFormat f = tiny_format();
  const std::string path = dir / "train.h5";
  const auto r = test::run_cli(
      "synthesize --out " + path +
      " --count 10 --freqs 4 --grid=-0.08:0.08:8,-0.08:0.08:8,0.4:0.55:8 --seed 3 --device cpu");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto source = make_file_source({path, f, 4, 17, DeviceKind::Cpu});
  EXPECT_EQ(source->batches_per_epoch(), 2);  // 10 rows, batches of 4: 2 rows sit each epoch out
  const Synthesizer synth(f.system, f.grid, SceneConfig{}, 3, DeviceKind::Cpu);
  SynthesizedSourceSettings ss{f, SceneConfig{}, 3, 1, 1, DeviceKind::Cpu};
  auto single = make_synthesized_source(ss);  // batch b of epoch 0 ... here: sample e (batch 1, 1 per epoch)
  Prefetcher prefetch(*source, 0, 1);         // starts at epoch 0, batch 1; then epoch 1, batches 0, 1
  for (const auto& [epoch, index] : {std::pair{0, 1}, {1, 0}, {1, 1}}) {
    const HostBatch b = prefetch.next();
    EXPECT_EQ(b.epoch, epoch);
    EXPECT_EQ(b.index, index);
    const auto perm = epoch_permutation(10, 17, epoch);
    for (int i = 0; i < 4; ++i) {
      HostBatch one;
      single->produce(perm[std::size_t(index * 4 + i)], 0, one);  // sample perm[..] of seed 3
      const std::size_t V = f.voxels();
      ASSERT_TRUE(std::equal(one.input.begin(), one.input.end(), b.input.begin() + std::ptrdiff_t(i * V)));
      ASSERT_TRUE(std::equal(one.target.begin(), one.target.end(), b.target.begin() + std::ptrdiff_t(i * V)));
    }
  }
}

// ---- the trainer
// ---------------------------------------------------------------------------------------------

// Wraps a source and poisons one batch with NaN (to test the non-finite stop).
class PoisonedSource final : public BatchSource {
 public:
  PoisonedSource(BatchSource& inner, std::int64_t epoch, int index)
      : inner_(inner), epoch_(epoch), index_(index) {}
  std::string description() const override { return inner_.description(); }
  std::string record_json() const override { return inner_.record_json(); }
  const SampleFormat& format() const override { return inner_.format(); }
  int batch_size() const override { return inner_.batch_size(); }
  int batches_per_epoch() const override { return inner_.batches_per_epoch(); }
  void produce(std::int64_t epoch, int index, HostBatch& out) override {
    inner_.produce(epoch, index, out);
    if (epoch == epoch_ && index == index_) out.input[3] = NAN;
  }

 private:
  BatchSource& inner_;
  std::int64_t epoch_;
  int index_;
};

struct TrainerFixture : ::testing::Test {
  test::ScratchDir dir;
  SampleFormat format = tiny_format();
  std::unique_ptr<BatchSource> source =
      make_synthesized_source({format, SceneConfig{}, 8, 2, 3, DeviceKind::Cpu});
  ValidationSet validation = make_synthesized_validation(format, SceneConfig{}, 1008, 4, DeviceKind::Cpu);

  TrainerSettings settings(const std::string& name) const {
    TrainerSettings s;
    s.architecture = "unet3d";
    s.options.width = 2;
    s.optimizer.learning_rate = 3e-3;
    s.schedule.kind = ScheduleKind::Cosine;
    s.epochs = 3;
    s.seed = 4;
    s.output = dir / (name + ".h5");
    s.checkpoint = dir / (name + ".checkpoint.h5");
    s.log_csv = dir / (name + ".log.csv");
    s.log_json = dir / (name + ".log.json");
    return s;
  }
};

TEST_F(TrainerFixture, ResumingFromACheckpointEqualsAnUninterruptedRun) {
  const TrainingResult whole = train(settings("whole"), *source, validation);
  ASSERT_EQ(whole.outcome, TrainingOutcome::Completed);
  ASSERT_EQ(whole.records.size(), 3u);
  EXPECT_EQ(whole.steps, 9);

  TrainerSettings s = settings("parts");
  s.stop_after_steps = 4;  // inside epoch 2
  EXPECT_EQ(train(s, *source, validation).outcome, TrainingOutcome::Stopped);
  EXPECT_FALSE(std::filesystem::exists(s.output));
  s.resume = true;
  s.stop_after_steps = 1;  // again inside epoch 2
  EXPECT_EQ(train(s, *source, validation).outcome, TrainingOutcome::Stopped);
  s.stop_after_steps = -1;
  const TrainingResult parts = train(s, *source, validation);
  ASSERT_EQ(parts.outcome, TrainingOutcome::Completed);

  const Model a = read_model(settings("whole").output);
  const Model b = read_model(s.output);
  for (const auto& [name, t] : a.parameters) EXPECT_EQ(t.values, b.parameters.at(name).values) << name;
  ASSERT_EQ(parts.records.size(), 3u);
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(parts.records[e].train_loss, whole.records[e].train_loss) << "epoch " << e + 1;
    EXPECT_EQ(parts.records[e].val_psnr_db, whole.records[e].val_psnr_db) << "epoch " << e + 1;
    EXPECT_EQ(parts.records[e].learning_rate, whole.records[e].learning_rate);
  }
  // The record in the weights file says how the model was made.
  const auto record = nlohmann::json::parse(b.training);
  EXPECT_EQ(record["steps"], 9);
  EXPECT_EQ(record["run"]["seed"], 4);
  EXPECT_EQ(record["run"]["data"]["seed"], 8);
  EXPECT_EQ(record["run"]["validation"]["seed"], 1008);
  EXPECT_EQ(record["final_validation"]["psnr_db"].get<double>(), whole.records.back().val_psnr_db);

  // Continuing a finished run with more epochs is a resume too; other settings are refused.
  TrainerSettings more = settings("parts");
  more.resume = true;
  more.optimizer.learning_rate = 1e-3;
  try {
    train(more, *source, validation);
    ADD_FAILURE() << "a resume with another learning rate was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("learning_rate"), std::string::npos) << e.what();
  }
  TrainerSettings again = settings("whole");
  try {
    train(again, *source, validation);
    ADD_FAILURE() << "an existing checkpoint was overwritten without --resume or --force";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
  }
}

// The trainer reads each step's loss one step late (queue_step / collect_step): every step must still be
// accounted exactly once, in order, including the last one before a stop in the middle of an epoch.
TEST_F(TrainerFixture, EveryStepIsAccountedOnceInOrderWhenResultsArriveLate) {
  TrainerSettings s = settings("late");
  s.stop_after_steps = 5;  // epoch 1 (3 batches) and 2 of epoch 2
  std::vector<std::pair<std::int64_t, int>> seen;
  std::vector<double> means;
  s.on_step = [&](const StepProgress& p) {
    seen.emplace_back(p.epoch, p.index);
    means.push_back(p.mean_loss);
  };
  const TrainingResult r = train(s, *source, validation);
  ASSERT_EQ(r.outcome, TrainingOutcome::Stopped);
  const std::vector<std::pair<std::int64_t, int>> order = {{0, 1}, {0, 2}, {0, 3}, {1, 1}, {1, 2}};
  EXPECT_EQ(seen, order);
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].train_loss, means[2]);  // epoch 1: the mean of its three steps
  EXPECT_EQ(r.steps, 5);
  // The checkpoint's epoch in progress includes the step before the stop, whose result came last.
  const h5::File f(s.checkpoint, h5::File::Mode::Read);
  const auto state = f.read<std::uint8_t>("/checkpoint/state_json").data;
  const auto j = nlohmann::json::parse(std::string(state.begin(), state.end()));
  EXPECT_EQ(j["epoch_steps"], 2);
  EXPECT_DOUBLE_EQ(j["epoch_loss_sum"].get<double>() / 2, means[4]);
}

TEST_F(TrainerFixture, ANonFiniteLossStopsTheRunAndKeepsTheLastGoodCheckpoint) {
  PoisonedSource poisoned(*source, 1, 1);  // epoch 2, batch 2
  const TrainerSettings s = settings("nan");
  try {
    train(s, poisoned, validation);
    ADD_FAILURE() << "a NaN batch did not stop the run";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("not finite"), std::string::npos) << m;
    EXPECT_NE(m.find("last good checkpoint"), std::string::npos) << m;
    // The poisoned step is named, although its result is read one step after it was queued.
    EXPECT_NE(m.find("at epoch 2, batch 2 (step 5:"), std::string::npos) << m;
  }
  EXPECT_FALSE(std::filesystem::exists(s.output));
  // The checkpoint is the end of epoch 1: a valid weights file with the epoch-1 parameters.
  const h5::File f(s.checkpoint, h5::File::Mode::Read);
  const auto state = f.read<std::uint8_t>("/checkpoint/state_json").data;
  const auto j = nlohmann::json::parse(std::string(state.begin(), state.end()));
  EXPECT_EQ(j["steps"], 3);
  EXPECT_EQ(j["epoch"], 1);
  const Model m = read_model(s.checkpoint);
  for (const auto& [name, t] : m.parameters)
    for (float v : t.values) ASSERT_TRUE(std::isfinite(v)) << name;
}

// Every network of the paper trains through the same trainer, and its weights file drives its learned method.
TEST_F(TrainerFixture, EveryArchitectureTrainsAndItsModelRunsInItsPipeline) {
  for (const auto& spec : learned_method_specs()) {
    SampleFormat f = tiny_format(spec.complex_input);
    f.measurement_input = spec.dense_first_stage;  // deepdi, deep2s-plus learn from the scaled measurements
    auto src = make_synthesized_source({f, SceneConfig{}, 8, 2, 2, DeviceKind::Cpu});
    const ValidationSet val = make_synthesized_validation(f, SceneConfig{}, 1008, 2, DeviceKind::Cpu);
    TrainerSettings s = settings(spec.architecture);
    s.architecture = spec.architecture;
    s.options.blocks = 1;
    s.epochs = 1;
    const TrainingResult r = train(s, *src, val);
    ASSERT_EQ(r.outcome, TrainingOutcome::Completed) << spec.name;
    ASSERT_TRUE(r.final && std::isfinite(r.final->val_loss) && std::isfinite(r.records[0].train_loss))
        << spec.name;
    LearnedPipeline pipeline(spec.name, read_model(s.output), DeviceKind::Cpu);
    const Synthesizer synth(f.system, f.grid, SceneConfig{}, 5, DeviceKind::Cpu);
    const SampleBatch b = synth.batch(0, 2);
    std::vector<float> volumes(2 * f.voxels());
    pipeline.run(b.measurements.data(), 2, volumes.data());
    for (float v : volumes) ASSERT_TRUE(std::isfinite(v)) << spec.name;
  }
}

TEST_F(TrainerFixture, TimeBudgetWritesTheModelWithItsValidation) {
  TrainerSettings s = settings("budget");
  s.epochs = 0;
  s.time_budget_s = 1e-3;  // spent after the first step
  const TrainingResult r = train(s, *source, validation);
  EXPECT_EQ(r.outcome, TrainingOutcome::TimeBudget);
  EXPECT_EQ(r.steps, 1);
  ASSERT_TRUE(r.final.has_value());
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_TRUE(r.records[0].partial);
  const Model m = read_model(s.output);
  EXPECT_EQ(nlohmann::json::parse(m.training)["stopped_by"], "time budget");
  EXPECT_TRUE(std::filesystem::exists(s.log_csv));
  EXPECT_TRUE(std::filesystem::exists(s.log_json));
}

}  // namespace
}  // namespace nfmimo::nn
