// The single-layer networks every backend is checked on (CPU float against the double reference in
// test_nn_layers, cuDNN against the double reference in test_gpu_network): one list, so a layer added to the
// engine is tested on both backends.
#pragma once

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "models/nn/graph.hpp"
#include "models/nn/reference.hpp"

namespace nfmimo::test {

using nn::Network;
using nn::Parameters;
using nn::Shape;
using nn::Tensor;

struct LayerCase {
  std::string name;
  std::function<Network()> build;
  // Relative tolerance of CPU float32 against double: sums of up to a few hundred products (convolutions)
  // lose about sqrt(terms) * 2^-24 relative; elementwise layers lose one rounding. (The GPU test uses
  // nn::forward_tolerance per precision.)
  double tolerance = 1e-5;
};

inline Network single(const std::string& name, Shape input, const std::function<void(Network&)>& add) {
  Network net(name, input);
  add(net);
  return net;
}

// Shapes are small and odd on purpose (6 x 5 x 7: no dimension divides evenly by the pooling), and `wide`
// has 16 channels so that tensor-core paths (multiples of 8 channels) are taken on the GPU.
inline std::vector<LayerCase> layer_cases() {
  const Shape in{0, 3, 6, 5, 7}, wide{0, 16, 6, 5, 7};
  const auto case_of = [](std::string name, Shape shape, std::string net, std::function<void(Network&)> add,
                          double tolerance = 1e-5) {
    return LayerCase{std::move(name), [=] { return single(net, shape, add); }, tolerance};
  };
  return {
      case_of("conv3x3x3_same", in, "conv",
              [](Network& n) {
                n.conv("c", 0, 4, {3, 3, 3});
              }),
      case_of("conv3x3x3_16to8", wide, "conv",
              [](Network& n) {
                n.conv("c", 0, 8, {3, 3, 3});
              }),
      case_of("conv3x3x1_same", in, "conv",
              [](Network& n) {
                n.conv("c", 0, 4, {3, 3, 1});
              }),
      case_of("conv1x1x1", in, "conv",
              [](Network& n) {
                n.conv("c", 0, 2, {1, 1, 1});
              }),
      case_of("conv3x3x3_valid", in, "conv",
              [](Network& n) {
                n.conv("c", 0, 4, {3, 3, 3}, false);
              }),
      case_of("conv2x2x2_same_even", in, "conv",
              [](Network& n) {
                n.conv("c", 0, 3, {2, 2, 2});
              }),
      case_of("conv3x3x3_stride2", in, "conv",
              [](Network& n) {
                n.conv("c", 0, 4, {3, 3, 3}, true, {2, 2, 2});
              }),
      case_of("conv_one_input_channel", {0, 1, 6, 5, 7}, "conv",
              [](Network& n) {
                n.conv("c", 0, 8, {3, 3, 3});
              }),
      case_of("conv_transpose2x2x2", in, "up",
              [](Network& n) {
                n.conv_transpose("u", 0, 4, {2, 2, 2}, {2, 2, 2});
              }),
      case_of("conv_transpose2x2x2_16to8", wide, "up",
              [](Network& n) {
                n.conv_transpose("u", 0, 8, {2, 2, 2}, {2, 2, 2});
              }),
      case_of("conv_transpose2x2x1_stride2", in, "up",
              [](Network& n) {
                n.conv_transpose("u", 0, 4, {2, 2, 1}, {2, 2, 2});
              }),
      case_of("batch_norm", in, "bn", [](Network& n) { n.batch_norm("b", 0); }),
      case_of("batch_norm_relu_16", wide, "bn", [](Network& n) { n.relu("r", n.batch_norm("b", 0)); }),
      case_of("conv_bn_relu", in, "cbr",
              [](Network& n) {
                n.relu("r", n.batch_norm("b", n.conv("c", 0, 4, {3, 3, 3})));
              }),
      case_of("conv_bn_relu_16to16", wide, "cbr",
              [](Network& n) {
                n.relu("r", n.batch_norm("b", n.conv("c", 0, 16, {3, 3, 3})));
              }),
      case_of("conv_relu", wide, "cr",
              [](Network& n) {
                n.relu("r", n.conv("c", 0, 8, {3, 3, 3}));
              }),
      case_of("conv_sigmoid", in, "cs",
              [](Network& n) {
                n.sigmoid("s", n.conv("c", 0, 1, {1, 1, 1}));
              }),
      case_of(
          "relu", in, "relu", [](Network& n) { n.relu("r", 0); }, 1e-7),
      case_of(
          "sigmoid", in, "sigmoid", [](Network& n) { n.sigmoid("s", 0); }, 1e-7),
      case_of(
          "max_pool_even", {0, 3, 6, 4, 8}, "pool",
          [](Network& n) {
            n.max_pool("p", 0, {2, 2, 2});
          },
          1e-7),
      case_of(
          "max_pool_odd", in, "pool",
          [](Network& n) {
            n.max_pool("p", 0, {2, 2, 2});
          },
          1e-7),
      case_of("concat", in, "cat",
              [](Network& n) {
                n.concat("cat", n.conv("c", 0, 2, {1, 1, 1}), 0);
              }),
      case_of(
          "crop", in, "crop",
          [](Network& n) {
            n.crop("k", 0, {1, 0, 2}, {0, 1, 1});
          },
          1e-7),
      case_of(
          "zero_pad", in, "pad",
          [](Network& n) {
            n.zero_pad("z", 0, {1, 0, 2}, {0, 1, 1});
          },
          1e-7),
      case_of("add", in, "add",
              [](Network& n) {
                n.add("a", n.conv("c", 0, 3, {3, 3, 3}), 0);
              }),
      case_of("dense", in, "dense", [](Network& n) { n.dense("d", 0, 5); }),
  };
}

// Standard-normal input of the given shape.
inline Tensor<double> random_input(const Shape& s, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  Tensor<double> t(s);
  for (auto& v : t.data) v = g(rng);
  return t;
}

// Initial parameters made less special: random biases, batch-norm statistics away from 0 and 1.
inline Parameters random_parameters(const Network& net, unsigned seed) {
  Parameters p = nn::initial_parameters(net, seed);
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<double> g(0.0, 1.0);
  std::uniform_real_distribution<double> u(0.5, 1.5);
  for (auto& [name, t] : p) {
    if (name.ends_with(".running_var") || (name.ends_with(".weight") && t.shape.size() == 1))
      for (auto& v : t.values) v = float(u(rng));
    else if (name.ends_with(".bias") || name.ends_with(".running_mean"))
      for (auto& v : t.values) v = float(0.3 * g(rng));
  }
  return p;
}

}  // namespace nfmimo::test
