// The network engine's layers: the double reference's backward pass against finite differences, and the fast
// float CPU path (oneDNN) against the double reference, forward (inference and training) and backward.
#include <functional>
#include <random>

#include <gtest/gtest.h>

#include "models/nn/architectures.hpp"
#include "models/nn/cpu/network.hpp"
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

using test::layer_cases;
using test::LayerCase;

class Layer : public ::testing::TestWithParam<LayerCase> {};

// d(loss)/d(everything) of the reference, loss = <r, network(x)>, against central differences in double.
void check_finite_differences(const Network& net, const Parameters& params, Mode mode, unsigned seed) {
  ReferenceNetwork ref(net, params);
  Tensor<double> x = random_input(net.input_shape(2), seed);
  const Tensor<double> r = random_input(net.output_shape(2), seed + 7);
  ref.forward(x, mode, false);
  const Tensor<double> dx = ref.backward(r);
  const auto grads = ref.gradients();
  const auto loss = [&] {
    const Tensor<double> y = ref.forward(x, mode, false);
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i) s += r.data[i] * y.data[i];
    return s;
  };
  // Step: second-order error h^2 f''' ~ 1e-10 relative, rounding eps / h ~ 1e-11: both far below the
  // tolerance.
  const double h = 1e-5;
  const auto check = [&](double& variable, double analytic, const std::string& what) {
    const double saved = variable;
    variable = saved + h;
    const double up = loss();
    variable = saved - h;
    const double down = loss();
    variable = saved;
    const double numeric = (up - down) / (2 * h);
    EXPECT_NEAR(analytic, numeric, 1e-6 * (std::abs(numeric) + std::abs(analytic)) + 1e-8) << what;
  };
  std::mt19937 pick(seed);
  const auto sample = [&](std::size_t n) {
    std::vector<std::size_t> idx;
    for (int k = 0; k < 12; ++k) idx.push_back(std::uniform_int_distribution<std::size_t>(0, n - 1)(pick));
    return idx;
  };
  double largest = 0;
  for (double v : dx.data) largest = std::max(largest, std::abs(v));
  ASSERT_GT(largest, 0) << "the input gradient is all zeros: the check would prove nothing";
  for (std::size_t i : sample(x.size())) check(x.data[i], dx.data[i], "input element " + std::to_string(i));
  for (const auto& [name, g] : grads)
    for (std::size_t i : sample(g.size()))
      check(ref.parameters().at(name)[i], g[i], name + " element " + std::to_string(i));
}

TEST_P(Layer, ReferenceBackwardMatchesFiniteDifferences) {
  const Network net = GetParam().build();
  const Parameters params = random_parameters(net, 11);
  check_finite_differences(net, params, Mode::Training, 3);
  check_finite_differences(net, params, Mode::Inference, 4);
}

TEST_P(Layer, FastForwardMatchesReference) {
  const Network net = GetParam().build();
  const Parameters params = random_parameters(net, 12);
  for (const Mode mode : {Mode::Inference, Mode::Training}) {
    SCOPED_TRACE(mode == Mode::Inference ? "inference" : "training");
    ReferenceNetwork ref(net, params);
    CpuNetwork fast(net, params, mode);
    const Tensor<double> x = random_input(net.input_shape(3), 5);
    const Tensor<double> expected = ref.forward(x, mode);
    const Tensor<float> xf = to_float(x);
    Tensor<float> y(net.output_shape(3));
    fast.forward(xf.ptr(), y.ptr(), 3);
    EXPECT_TRUE(relative_error_below(view(y.data), view(expected.data), GetParam().tolerance));
    if (mode == Mode::Training) {  // the running statistics moved the same way
      for (const auto& [name, t] : ref.export_parameters())
        EXPECT_TRUE(relative_error_below(view(fast.parameters().at(name).values), view(t.values), 1e-6))
            << name;
    }
  }
}

TEST_P(Layer, FastBackwardMatchesReference) {
  const Network net = GetParam().build();
  const Parameters params = random_parameters(net, 13);
  ReferenceNetwork ref(net, params);
  CpuNetwork fast(net, params, Mode::Training);
  const Tensor<double> x = random_input(net.input_shape(3), 6), r = random_input(net.output_shape(3), 8);
  ref.forward(x, Mode::Training);
  const Tensor<double> dx = ref.backward(r);
  const Tensor<float> xf = to_float(x), rf = to_float(r);
  Tensor<float> y(net.output_shape(3)), dxf(net.input_shape(3));
  fast.forward(xf.ptr(), y.ptr(), 3);
  fast.backward(rf.ptr(), dxf.ptr());
  // Gradients sum over the batch and the volume: a few thousand terms, so a looser float tolerance.
  const double tol = std::max(GetParam().tolerance, 3e-5);
  EXPECT_TRUE(relative_error_below(view(dxf.data), view(dx.data), tol)) << "input gradient";
  ASSERT_EQ(fast.gradients().size(), ref.gradients().size());
  for (const auto& [name, g] : ref.gradients())
    EXPECT_TRUE(gradient_matches(fast.gradients().at(name), g, tol)) << name;
}

INSTANTIATE_TEST_SUITE_P(All, Layer, ::testing::ValuesIn(layer_cases()),
                         [](const auto& info) { return info.param.name; });

// Backward twice through the same plan gives the same gradients (nothing accumulates across calls).
TEST(CpuNetwork, BackwardDoesNotAccumulateAcrossCalls) {
  const Network net = build_network("unet3d", 8, 8, 9, {.width = 2});
  CpuNetwork fast(net, random_parameters(net, 2), Mode::Training);
  const Tensor<float> x = to_float(random_input(net.input_shape(2), 1)),
                      r = to_float(random_input(net.output_shape(2), 2));
  Tensor<float> y(net.output_shape(2));
  fast.forward(x.ptr(), y.ptr(), 2);
  fast.backward(r.ptr(), nullptr);
  const auto first = fast.gradients();
  fast.backward(r.ptr(), nullptr);
  for (const auto& [name, g] : first) EXPECT_EQ(g, fast.gradients().at(name)) << name;
}

TEST(CpuNetwork, BackwardInInferenceModeIsRefused) {
  const Network net = build_network("resnet", 4, 4, 4, {.width = 2, .blocks = 1});
  CpuNetwork fast(net, initial_parameters(net, 1), Mode::Inference);
  Tensor<float> x(net.input_shape(1)), y(net.output_shape(1));
  fast.forward(x.ptr(), y.ptr(), 1);
  EXPECT_THROW(fast.backward(y.ptr(), nullptr), InputError);
}

// Whole networks (narrow, on small odd grids so the crop/pad rule is exercised): fast vs reference.
class WholeNetwork : public ::testing::TestWithParam<std::string> {};

TEST_P(WholeNetwork, FastMatchesReferenceForwardAndBackward) {
  const Network net = build_network(GetParam(), 9, 10, 17, {.width = 4, .blocks = 2});
  const Parameters params = random_parameters(net, 21);
  for (const Mode mode : {Mode::Inference, Mode::Training}) {
    SCOPED_TRACE(mode == Mode::Inference ? "inference" : "training");
    ReferenceNetwork ref(net, params);
    CpuNetwork fast(net, params, mode);
    const Tensor<double> x = random_input(net.input_shape(2), 9);
    const Tensor<double> expected = ref.forward(x, mode);
    const Tensor<float> xf = to_float(x);
    Tensor<float> y(net.output_shape(2));
    fast.forward(xf.ptr(), y.ptr(), 2);
    EXPECT_TRUE(relative_error_below(view(y.data), view(expected.data), 2e-5));
    if (mode != Mode::Training) continue;
    const Tensor<double> r = random_input(net.output_shape(2), 10);
    const Tensor<double> dx = ref.backward(r);
    const Tensor<float> rf = to_float(r);
    Tensor<float> dxf(net.input_shape(2));
    fast.backward(rf.ptr(), dxf.ptr());
    // Float errors add up through the depth (measured up to 3e-6 on these networks): 2e-5.
    EXPECT_TRUE(relative_error_below(view(dxf.data), view(dx.data), 2e-5)) << "input gradient";
    for (const auto& [name, g] : ref.gradients())
      EXPECT_TRUE(gradient_matches(fast.gradients().at(name), g, 2e-5)) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, WholeNetwork,
                         ::testing::Values("unet3d", "unet2d", "resnet", "cv-unet3d"), [](const auto& info) {
                           std::string s = info.param;
                           std::erase(s, '-');
                           return s;
                         });

// The whole (narrow) U-Net's reference backward against finite differences, batch-norm training mode
// included.
TEST(WholeNetwork, ReferenceBackwardMatchesFiniteDifferences) {
  const Network net = build_network("unet3d", 8, 9, 8, {.width = 2});
  check_finite_differences(net, random_parameters(net, 31), Mode::Training, 17);
}

}  // namespace
}  // namespace nfmimo::nn
