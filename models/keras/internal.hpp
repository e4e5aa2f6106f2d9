// Declarations shared by the pieces of the Keras reader and writer (models/keras.hpp is the public side):
// the HDF5 attributes Keras uses, the model_config topology as our ops, and the weight-layout conversion.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/hdf5.hpp"
#include "models/weights.hpp"

namespace nfmimo::nn::keras {

using json = nlohmann::json;

// HDF5 pieces the project's File wrapper does not need elsewhere (hdf5_attributes.cpp).
std::vector<std::string> string_array_attribute(const h5::File& f, const std::string& object,
                                                const std::string& name);
void set_string_array_attribute(const h5::File& f, const std::string& object, const std::string& name,
                                const std::vector<std::string>& values);
void make_group(const h5::File& f, const std::string& path);

// One op in the vocabulary of models/nn/graph.hpp, with what a comparison needs.
struct KOp {
  OpKind kind = OpKind::Input;
  std::string layer, cls;   // the Keras layer it comes from and its class
  std::vector<int> inputs;  // value indices (into the KOp list)
  int channels = 0;         // Conv, ConvTranspose output channels; Input: input channels
  Triple kernel{1, 1, 1}, stride{1, 1, 1}, pad_lo{0, 0, 0}, pad_hi{0, 0, 0};
  double epsilon = 0, momentum = 0;
  bool removed = false;
};

// Turns model_config's layer list into KOps: value 0 is the input, whose shape goes to `input`
// (topology.cpp).
std::vector<KOp> keras_ops(const json& layers, const std::string& where, Shape& input);

// First difference between the Keras ops and the network's ops, as a message; nullopt when they agree.
std::optional<std::string> compare(const std::vector<KOp>& k, const Network& net);

// The Keras layer's arrays by role (kernel, bias, gamma, beta, moving_mean, moving_variance), with their
// paths.
struct LayerWeights {
  std::string layer;
  std::map<std::string, std::string> paths;  // role -> dataset path
};

// Converts one weighted layer into our parameters of `op` (Conv, ConvTranspose or BatchNorm); `bn_flags`
// holds the batch norm's "scale" and "center" (layer_weights.cpp).
void convert_layer(const h5::File& f, const LayerWeights& w, const Op& op, int in_c, Parameters& out,
                   const std::map<std::string, bool>& bn_flags);

}  // namespace nfmimo::nn::keras
