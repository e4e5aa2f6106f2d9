// Weights files: a trained network and everything needed to use it (schema: docs/formats.md, "Weights
// files").
//
// Root attributes nfmimo_format = "weights", nfmimo_version = 1, architecture, width, blocks, input_channels,
// normalisation, bn_epsilon, bn_momentum, optional training (free-form JSON); /system and /grid (the radar
// system and imaging grid the model was trained for, as in measurement files); /parameters/<name> float32,
// one dataset per parameter tensor in the layouts of models/nn/graph.hpp (batch-norm running statistics
// included); the composites (deepdi, deep2s-plus) add /parameters/dense.weight [V, M, 2] and dense.bias [V,
// 2] (models/learned/composite.hpp).
#pragma once

#include <string>

#include "models/nn/architectures.hpp"
#include "models/nn/graph.hpp"
#include "radar/system.hpp"

namespace nfmimo::nn {

inline constexpr int kWeightsFormatVersion = 1;
// The largest network options `train` accepts (--width, --blocks); a weights file declaring more is refused
// before its network is built (a file declaring 8e8 blocks would otherwise build for minutes).
inline constexpr long long kMaxWidth = 1024;
inline constexpr long long kMaxBlocks = 256;

// How a pipeline scales the physics stage's output before the network. "sample-max": each sample is divided
// by its own largest magnitude (the only one defined so far).
inline constexpr const char* kSampleMaxNormalisation = "sample-max";

// What a model is for (root attribute "role"; files without it are reconstruction networks):
// "reconstruction" maps a physics stage's output to an image (deep2s and its variants); "denoiser" maps a
// noisy magnitude volume to a clean one (trained by `nfmimo train --arch denoiser`, used by --method pnp).
inline constexpr const char* kReconstructionRole = "reconstruction";
inline constexpr const char* kDenoiserRole = "denoiser";

struct Model {
  std::string architecture;
  ArchitectureOptions options;
  RadarSystem system;
  ImagingGrid grid;
  std::string normalisation = kSampleMaxNormalisation;
  std::string role = kReconstructionRole;
  BatchNormSettings batch_norm;
  Parameters parameters;
  std::string training;  // free-form JSON record of how it was trained (may be empty)

  // The network for this model's grid and hyperparameters (a composite's: its cv-unet3d graph).
  Network network() const;
  // deepdi / deep2s-plus: a dense first stage before the network.
  bool composite() const { return is_composite_architecture(architecture); }
  // Every parameter the model holds: the network's, and a composite's dense layer for its system and grid.
  std::vector<ParameterSpec> parameter_specs() const;
};

// A new model with initial parameters (see initial_parameters; composites add their dense layer, see
// add_initial_dense_parameters).
Model make_model(const std::string& architecture, const RadarSystem& system, const ImagingGrid& grid,
                 const ArchitectureOptions& options = {}, unsigned long long seed = 1);

// Writes atomically; refuses an existing file unless `overwrite`.
void write_model(const std::string& path, const Model& model, bool overwrite = false);
// Reads and checks a weights file: format and version, known architecture, valid system and grid, every
// parameter present with the right shape and finite values, nothing unexpected. InputError naming the file,
// the dataset and the problem otherwise.
Model read_model(const std::string& path);
// The same checks of the root attributes, /system and /grid, without reading the parameters (cheap: for
// choosing among model files).
Model read_model_header(const std::string& path);

}  // namespace nfmimo::nn
