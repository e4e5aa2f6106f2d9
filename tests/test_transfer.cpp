// Transfer starts (models/transfer.hpp): a trained unet3d's filters as the start of unet2d and cv-unet3d,
// each rule checked against its claim (which tap, which channel, what is copied), the cv-unet3d start
// computing exactly the unet3d on a one-channel input, and the trainer's --init taking another architecture.
#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "models/nn/architectures.hpp"
#include "models/nn/reference.hpp"
#include "models/training/trainer.hpp"
#include "models/training/data.hpp"
#include "models/transfer.hpp"
#include "models/weights.hpp"
#include "radar/error.hpp"
#include "synthesizer/scene.hpp"
#include "tests/cli_util.hpp"

namespace nfmimo::nn {
namespace {

ImagingGrid tiny_grid() {
  return ImagingGrid(Axis::linspace(-0.08, 0.08, 8), Axis::linspace(-0.08, 0.08, 8),
                     Axis::linspace(0.4, 0.55, 8));
}

// A unet3d with random (not initial) parameters everywhere, so that a copied, tapped or fresh tensor can be
// told apart: biases and batch-norm statistics are non-zero too.
Model trained_like_unet3d(int width = 2) {
  Model m = make_model("unet3d", paper_system(4), tiny_grid(), {width, 8}, 5);
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto& [name, t] : m.parameters)
    for (auto& v : t.values)
      v = name.find("running_var") != std::string::npos ? 0.5f + std::abs(u(rng)) : u(rng);
  return m;
}

std::map<std::string, OpKind> op_kinds(const Network& net) {
  std::map<std::string, OpKind> k;
  for (const Op& op : net.ops()) k[op.name] = op.kind;
  return k;
}

TEST(Transfer, Unet2dTakesTheCentreZTapsAndTheUpConvolutionsEvenSliceTap) {
  const Model from = trained_like_unet3d();
  const Network to = build_network("unet2d", 8, 8, 8, {2, 8});
  TransferReport report;
  const Parameters p = transfer_parameters(from, to, 3, &report);
  EXPECT_TRUE(report.fresh.empty()) << report.summary();
  EXPECT_FALSE(report.adapted.empty());
  const auto kinds = op_kinds(to);
  int tapped_convs = 0, tapped_ups = 0;
  for (const auto& spec : to.parameter_specs()) {
    const ParameterTensor& t = p.at(spec.name);
    const ParameterTensor& s = from.parameters.at(spec.name);
    ASSERT_EQ(t.shape, spec.shape) << spec.name;
    if (t.shape == s.shape) {
      EXPECT_EQ(t.values, s.values) << spec.name << " should be copied";
      continue;
    }
    // [a, b, kx, ky, 1] from [a, b, kx, ky, kz]: element (i, 0) is the source's (i, tap).
    const OpKind kind = kinds.at(spec.name.substr(0, spec.name.rfind('.')));
    ASSERT_EQ(t.shape[4], 1);
    const int kz = s.shape[4];
    const int tap = kind == OpKind::ConvTranspose ? 0 : 1;
    (kind == OpKind::ConvTranspose ? tapped_ups : tapped_convs) += 1;
    EXPECT_EQ(kind == OpKind::ConvTranspose ? 2 : 3, kz) << spec.name;
    for (std::size_t i = 0; i < t.values.size(); ++i)
      ASSERT_EQ(t.values[i], s.values[i * std::size_t(kz) + std::size_t(tap)])
          << spec.name << " element " << i;
  }
  EXPECT_EQ(tapped_ups, 3);  // up1..up3
  EXPECT_GE(tapped_convs, 12);
}

// Fed (a, 0) or (0, a), the transferred cv-unet3d computes what the unet3d computes on a: its first filters
// are the magnitude filters on both channels and everything after them is the same network.
TEST(Transfer, CvUnet3dOnARealOrImaginaryOnlyInputEqualsTheUnet3d) {
  const Model from = trained_like_unet3d();
  const Network cv = build_network("cv-unet3d", 8, 8, 8, {2, 8});
  TransferReport report;
  const Parameters p = transfer_parameters(from, cv, 3, &report);
  EXPECT_TRUE(report.fresh.empty()) << report.summary();
  ASSERT_EQ(report.adapted.size(), 1u);
  EXPECT_EQ(report.adapted[0], "enc1.block1.conv.weight");

  ReferenceNetwork mag(from.network(), from.parameters), complex(cv, p);
  Tensor<double> a(from.network().input_shape(2));
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<double> u(0, 1);
  for (auto& v : a.data) v = u(rng);
  const Tensor<double> expected = mag.forward(a, Mode::Inference);
  double scale = 0;
  for (double v : expected.data) scale = std::max(scale, std::abs(v));
  ASSERT_GT(scale, 0);
  for (int channel = 0; channel < 2; ++channel) {
    Tensor<double> x(cv.input_shape(2));
    for (int n = 0; n < 2; ++n)
      for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 8; ++j)
          for (int k = 0; k < 8; ++k) x.at(n, channel, i, j, k) = a.at(n, 0, i, j, k);
    const Tensor<double> y = complex.forward(x, Mode::Inference);
    ASSERT_EQ(y.size(), expected.size());
    // Both run in double through the same ops; only the summation order of the first convolution differs
    // (an added zero channel), so they agree to rounding.
    for (std::size_t i = 0; i < y.size(); ++i)
      ASSERT_NEAR(y.data[i], expected.data[i], 1e-12 * scale) << "channel " << channel << " element " << i;
  }
  // Both channels carry it: the filter of channel 1 equals that of channel 0 (not a zero second channel).
  const ParameterTensor& w = p.at("enc1.block1.conv.weight");
  const std::size_t k = 27;
  for (int o = 0; o < w.shape[0]; ++o)
    for (std::size_t i = 0; i < k; ++i)
      ASSERT_EQ(w.values[(std::size_t(o) * 2 + 1) * k + i], w.values[(std::size_t(o) * 2) * k + i]);
}

TEST(Transfer, OnlyTheSupportedPairsAreTransfers) {
  EXPECT_TRUE(can_transfer("unet3d", "unet2d"));
  EXPECT_TRUE(can_transfer("unet3d", "cv-unet3d"));
  EXPECT_FALSE(can_transfer("unet3d", "unet3d"));  // plain --init
  EXPECT_FALSE(can_transfer("unet3d", "resnet"));
  EXPECT_FALSE(can_transfer("unet2d", "unet3d"));
  const Model from = trained_like_unet3d();
  EXPECT_THROW(transfer_parameters(from, build_network("resnet", 8, 8, 8, {2, 2}), 1), InputError);
}

// `train --init unet3d.h5` for a unet2d run starts from the transferred weights: a run of zero learning rate
// ends with exactly them (batch-norm running statistics aside, which training steps move).
TEST(Transfer, TrainerInitFromAnotherArchitectureStartsFromTheTransfer) {
  test::ScratchDir dir;
  const Model from = trained_like_unet3d();
  write_model(dir / "deep2s.h5", from);
  SampleFormat format{paper_system(4), tiny_grid(), false};
  auto source = make_synthesized_source({format, SceneConfig{}, 8, 2, 1, DeviceKind::Cpu});
  const ValidationSet validation =
      make_synthesized_validation(format, SceneConfig{}, 1008, 2, DeviceKind::Cpu);
  TrainerSettings s;
  s.architecture = "unet2d";
  s.options.width = 2;
  s.optimizer.learning_rate = 1e-30;  // Adam's steps are lr-sized: the weights stay put to float rounding
  s.epochs = 1;
  s.init_from = dir / "deep2s.h5";
  s.output = dir / "u2.h5";
  s.checkpoint = dir / "u2.checkpoint.h5";
  std::string messages;
  s.on_message = [&](const std::string& m) { messages += m + "\n"; };
  train(s, *source, validation);
  EXPECT_NE(messages.find("transferred"), std::string::npos) << messages;
  const Model out = read_model(s.output);
  const Parameters expected = transfer_parameters(from, out.network(), s.seed);
  for (const auto& [name, t] : out.parameters) {
    if (!t.trainable) continue;
    const auto& e = expected.at(name).values;
    for (std::size_t i = 0; i < e.size(); ++i)
      ASSERT_NEAR(t.values[i], e[i], 1e-6 * (1 + std::abs(e[i]))) << name << " element " << i;
  }
  // Another architecture without a transfer rule is still refused.
  s.architecture = "resnet";
  s.options = {2, 2};
  s.output = dir / "r.h5";
  s.checkpoint = dir / "r.checkpoint.h5";
  EXPECT_THROW(train(s, *source, validation), InputError);
}

}  // namespace
}  // namespace nfmimo::nn
