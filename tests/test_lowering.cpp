// The lowering every network backend shares (models/nn/lowering.hpp): which ops fuse into one step, which
// buffer each value lives in, and the per-batch-size plan cache. Tested here on the CPU once for the CPU and
// the cuDNN backends, which both execute its result.
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "models/nn/architectures.hpp"
#include "models/nn/lowering.hpp"
#include "models/nn/cpu/network.hpp"
#include "models/nn/executor.hpp"
#include "models/nn/op_table.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {
namespace {

constexpr FusionRules kCudaRules{true, true, true};

int count_kind(const Network& net, OpKind kind) {
  int n = 0;
  for (const Op& op : net.ops()) n += op.kind == kind;
  return n;
}

TEST(OpTable, HasOneRowPerKindInEnumOrder) {
  const auto& table = op_table();
  for (std::size_t i = 0; i < table.size(); ++i) EXPECT_EQ(int(table[i].kind), int(i)) << table[i].name;
  EXPECT_EQ(table.size(), std::size_t(OpKind::Dense) + 1);
  EXPECT_EQ(to_string(OpKind::ConvTranspose), "conv_transpose");
  EXPECT_EQ(op_info(OpKind::Concat).arity, 2);
}

TEST(Lowering, InferenceFoldsBatchNormAndActivationIntoEveryUNetConvolution) {
  const Network net = build_network("unet3d", 16, 16, 16, {.width = 4});
  const auto steps = lower(net, Mode::Inference);
  int chains = 0, with_sigmoid = 0;
  for (const Step& s : steps) {
    // Batch norms and activations never run alone: each follows a convolution that is their only reader.
    EXPECT_NE(s.kind, OpKind::BatchNorm) << net.ops()[std::size_t(s.op)].name;
    EXPECT_NE(s.kind, OpKind::ReLU) << net.ops()[std::size_t(s.op)].name;
    if (s.kind != OpKind::Conv) continue;
    EXPECT_EQ(s.chain.front(), s.op);
    EXPECT_EQ(s.chain.back(), s.result);
    if (s.folded_batch_norm >= 0) {
      ++chains;
      EXPECT_EQ(s.chain.size(), 3u);
      EXPECT_EQ(s.activation, OpKind::ReLU);
    }
    with_sigmoid += s.activation == OpKind::Sigmoid;
  }
  EXPECT_EQ(chains, count_kind(net, OpKind::BatchNorm));
  EXPECT_EQ(with_sigmoid, 1);  // the 1x1x1 output convolution
  EXPECT_EQ(steps.back().result, net.output());
}

TEST(Lowering, TrainingFusesOnlyWhatTheBackendAsksFor) {
  const Network net = build_network("resnet", 8, 8, 8, {.width = 4, .blocks = 2});
  // The CPU's training kernels fuse nothing: one step per op.
  const auto plain = lower(net, Mode::Training);
  ASSERT_EQ(plain.size(), net.ops().size() - 1);
  for (const Step& s : plain) EXPECT_EQ(s.chain.size(), 1u);
  // cuDNN's: stem convolution + ReLU, batch norm + ReLU, the blocks' biases left to their batch norms.
  const auto fused = lower(net, Mode::Training, kCudaRules);
  int bn_relu = 0, conv_act = 0, pending = 0;
  for (const Step& s : fused) {
    bn_relu += s.batch_norm_relu;
    conv_act += s.activation != OpKind::Input;
    if (s.activation != OpKind::Input) {
      EXPECT_EQ(s.pre_activation, s.op);
    }
    pending += s.pending_bias;
    EXPECT_LT(s.folded_batch_norm, 0);  // never folded in training: batch statistics
  }
  EXPECT_EQ(bn_relu, 2);
  EXPECT_EQ(conv_act, 1);
  EXPECT_EQ(pending, 2);
  EXPECT_EQ(fused.size(), net.ops().size() - 1 - 3);
}

TEST(Lowering, AValueWithTwoReadersOrTheOutputIsNotFused) {
  Network net("test", Shape{1, 1, 4, 4, 4});
  const int c = net.conv("c", 0, 2, {3, 3, 3});
  const int r = net.relu("r", c);
  const int s = net.sigmoid("s", c);  // the convolution has two readers
  net.set_output(net.add("sum", r, s));
  for (const Step& step : lower(net, Mode::Inference)) EXPECT_EQ(step.chain.size(), 1u);

  Network tail("tail", Shape{1, 1, 4, 4, 4});
  tail.conv("c", 0, 2, {3, 3, 3});  // the output itself: nothing may absorb it
  tail.relu("r", 1);
  tail.set_output(1);
  const auto steps = lower(tail, Mode::Inference);
  EXPECT_EQ(steps.size(), 2u);
}

// Live interval of every value in step indices: defined by its step (the input before the first), last read
// by its last reader (the output after the last step).
void expect_no_live_values_share_a_buffer(const Network& net, const std::vector<Step>& steps,
                                          const BufferAssignment& a, bool alias_chain) {
  const std::size_t values = net.ops().size();
  std::vector<int> def(values, -2), last(values, -2);
  def[0] = -1;
  for (std::size_t k = 0; k < steps.size(); ++k) {
    def[std::size_t(steps[k].result)] = int(k);
    for (int v : steps[k].inputs) last[std::size_t(v)] = int(k);
  }
  last[std::size_t(net.output())] = int(steps.size());
  std::vector<int> materialised;
  for (std::size_t v = 0; v < values; ++v) {
    if (def[v] == -2) {
      // Computed inside a fused step: the step's buffer or none.
      if (!alias_chain) {
        EXPECT_EQ(a.buffer_of[v], -1) << net.ops()[v].name;
      }
      continue;
    }
    ASSERT_GE(a.buffer_of[v], 0) << net.ops()[v].name;
    if (last[v] == -2) last[v] = def[v];
    materialised.push_back(int(v));
  }
  for (int u : materialised)
    for (int v : materialised)
      if (u < v && def[std::size_t(u)] <= last[std::size_t(v)] &&
          def[std::size_t(v)] <= last[std::size_t(u)]) {
        EXPECT_NE(a.buffer_of[std::size_t(u)], a.buffer_of[std::size_t(v)])
            << net.ops()[std::size_t(u)].name << " and " << net.ops()[std::size_t(v)].name
            << " are both live";
      }
}

TEST(Lowering, InferenceReusesBuffersButNeverOneThatIsStillLive) {
  for (const std::string arch : {"unet3d", "unet2d", "resnet", "cv-unet3d"}) {
    SCOPED_TRACE(arch);
    const Network net = build_network(arch, 16, 16, 16, {.width = 4, .blocks = 3});
    for (const bool cuda : {false, true}) {
      const auto steps = lower(net, Mode::Inference, cuda ? kCudaRules : FusionRules{});
      const auto size = [&](int v) { return net.shape(v, 2).elements(); };
      const BufferAssignment a = assign_buffers(net, steps, size, true, !cuda);
      expect_no_live_values_share_a_buffer(net, steps, a, !cuda);
      // Reuse happens: fewer buffers than steps.
      EXPECT_LT(a.sizes.size(), steps.size());
      for (std::size_t v = 0; v < net.ops().size(); ++v)
        if (a.buffer_of[v] >= 0) {
          EXPECT_GE(a.sizes[std::size_t(a.buffer_of[v])], size(int(v)));
        }
    }
  }
}

TEST(Lowering, TrainingGivesEveryValueItsOwnBuffer) {
  const Network net = build_network("unet3d", 8, 8, 8, {.width = 2});
  const auto steps = lower(net, Mode::Training);
  const BufferAssignment a = assign_buffers(
      net, steps, [&](int v) { return net.shape(v, 1).elements(); }, false, true);
  ASSERT_EQ(a.sizes.size(), net.ops().size());
  for (std::size_t v = 0; v < net.ops().size(); ++v) EXPECT_EQ(a.buffer_of[v], int(v));
}

struct FakePlan {
  int n;
};

TEST(PlanCache, HitsBuildNothingAndEvictionSparesPinnedAndKeptPlans) {
  PlanCache<FakePlan> cache(2);
  const auto build = [](int n) { return std::make_unique<FakePlan>(FakePlan{n}); };
  FakePlan* a = &cache.get(8, build);
  EXPECT_EQ(&cache.get(8, build), a);
  EXPECT_EQ(cache.builds(), 1u);
  cache.pin(8);
  cache.get(3, build);
  FakePlan* tail = &cache.get(5, build);
  EXPECT_EQ(cache.builds(), 3u);
  // Two unpinned plans (3, 5): a third evicts one, never the pinned 8 nor the kept one.
  cache.get(7, build, {tail});
  EXPECT_NE(cache.find(8), nullptr);
  EXPECT_NE(cache.find(5), nullptr);
  EXPECT_EQ(cache.find(3), nullptr);
  EXPECT_EQ(cache.plans().size(), 3u);
  EXPECT_EQ(cache.get(8, build).n, 8);
  EXPECT_EQ(cache.builds(), 4u);
}

// The executor a caller gets for the CPU is the CPU backend itself: the same bits as CpuNetwork.
TEST(Executor, CpuExecutorIsTheCpuBackend) {
  const Network net = build_network("unet3d", 8, 8, 8, {.width = 2});
  const Parameters params = initial_parameters(net, 5);
  const auto executor = make_executor(net, params, Mode::Inference, DeviceKind::Cpu);
  CpuNetwork direct(net, params, Mode::Inference);
  std::vector<float> input(net.input_shape(2).elements());
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  for (float& v : input) v = uniform(rng);
  std::vector<float> a(net.output_shape(2).elements()), b(a.size());
  executor->predict(input.data(), a.data(), 2);
  direct.forward(input.data(), b.data(), 2);
  EXPECT_EQ(a, b);
  EXPECT_EQ(executor->description(), direct.description());
  EXPECT_EQ(executor->parameters().size(), params.size());
}

TEST(Executor, RefusesWhatTheDeviceCannotRun) {
  const Network net = build_network("resnet", 8, 8, 8, {.width = 2, .blocks = 1});
  const Parameters params = initial_parameters(net, 5);
  EXPECT_THROW(make_executor(net, params, Mode::Inference, DeviceKind::Cpu, Precision::Fp16), InputError);
  EXPECT_THROW(make_executor(net, params, Mode::Inference, DeviceKind::Auto), Error);
  if (cuda_device_count() == 0) {
    EXPECT_THROW(make_executor(net, params, Mode::Inference, DeviceKind::Cuda), InputError);
  }
}

}  // namespace
}  // namespace nfmimo::nn
