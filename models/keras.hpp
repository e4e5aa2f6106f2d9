// Keras model files in and out (docs/interop.md).
//
// Import reads the paper's authors' trained models, which are Keras 2 HDF5 files written by
// `model.save("x.h5")`: the root attribute model_config (the functional model's JSON), keras_version, and
// /model_weights/<layer>/<weight name> (for example conv3d/conv3d/kernel:0, listed in the group's attribute
// weight_names). Keras 3's `.weights.h5` (/layers/<layer>/vars/<i>, no topology) is read too: its layers are
// matched to the architecture by their default names (conv3d, conv3d_1, ..., batch_normalization_<i>,
// conv3d_transpose_<i>) in creation order.
//
// The topology in model_config is turned into our ops and compared, op by op and edge by edge, with the
// nfmimo network of the requested architecture (models/nn/architectures.hpp); the first layer that differs is
// named. Accepted spellings of the same network: a convolution's activation argument or a separate
// Activation / ReLU layer; 'same' padding or a ZeroPadding3D before a 'valid' convolution (the authors'
// head).
//
// Layouts: Keras Conv3D kernel [kx, ky, kz, in, out] -> ours [out, in, kx, ky, kz]; Conv3DTranspose
// [kx, ky, kz, out, in] -> ours [in, out, kx, ky, kz]; BatchNormalization gamma, beta, moving_mean,
// moving_variance -> weight, bias, running_mean, running_var, with its epsilon (and momentum m -> 1 - m).
// Activations are channels-last in Keras ([n, x, y, z, c]) and [n, c, x, y, z] in nfmimo.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "models/weights.hpp"

namespace nfmimo::nn {

struct KerasImport {
  Model model;
  std::string format;         // "keras2-hdf5" or "keras3-weights"
  std::string keras_version;  // from the file ("unknown" when it does not say)
  std::vector<std::pair<std::string, std::string>> layer_map;  // Keras layer -> nfmimo op, weighted layers
};

// Reads a Keras model file and maps it onto `architecture` (unet3d, unet2d, resnet, cv-unet3d) for this radar
// system and imaging grid. The model's `training` record holds the provenance (source file, format, Keras
// version, layer map). InputError naming the file, the layer and the difference otherwise.
KerasImport import_keras(const std::string& path, const std::string& architecture, const RadarSystem& system,
                         const ImagingGrid& grid);

// Writes the model's network as a Keras 2 HDF5 model file (model_config + model_weights) that
// tf.keras.models.load_model reads, channels-last, batch dimension free. Composites are refused (their dense
// layer has no Keras counterpart in this format). Atomic; refuses an existing file unless `overwrite`.
void export_keras(const Model& model, const std::string& path, bool overwrite = false);

}  // namespace nfmimo::nn
