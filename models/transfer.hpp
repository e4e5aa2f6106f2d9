// Transfer starts: the initial parameters of one U-Net variant taken from a trained model of another, where
// the shapes allow (docs/training.md, "Transfer"). A short CPU run from random weights leaves cv-unet3d and
// unet2d at the start of training; the trained Deep2S U-Net (unet3d) already holds every filter they need but
// one axis or one input channel.
//
// Rules, per parameter of the target network (names are shared by the U-Nets, models/nn/architectures.cpp):
//   same name and shape            copied (batch-norm running statistics included);
//   Conv [co, ci, kx, ky, 3] ->
//        [co, ci, kx, ky, 1]       the centre z-tap (unet3d -> unet2d);
//   ConvTranspose [ci, co, 2, 2, 2] ->
//        [ci, co, 2, 2, 1]         the z-tap 0: the one that writes the even z slices, which are the only
//                                  slices unet2d's 2x2x1 stride-2 transposed convolutions write (odd ones get
//                                  the bias);
//   Conv [co, 1, k...] ->
//        [co, 2, k...]             the magnitude filter on both input channels (unet3d -> cv-unet3d): fed
//                                  (a, 0) or (0, a), the cv-unet3d computes exactly what the unet3d does on
//                                  a;
//   anything else                  the target's own random start (initial_parameters with `seed`).
#pragma once

#include <string>
#include <vector>

#include "models/nn/graph.hpp"
#include "models/weights.hpp"

namespace nfmimo::nn {

struct TransferReport {
  std::vector<std::string> copied, adapted, fresh;  // parameter names by rule
  std::string summary() const;                      // "41 copied, 19 adapted (...), 0 fresh"
};

// Whether a model of architecture `from` can start a `to` network by the rules above (U-Net variants of the
// same width; the same architecture is the plain --init and is not a transfer).
bool can_transfer(const std::string& from, const std::string& to);

// The parameters of `to` (built for the same grid and width as `from`'s network) from `from`'s.
// InputError when can_transfer is false.
Parameters transfer_parameters(const Model& from, const Network& to, unsigned long long seed,
                               TransferReport* report = nullptr);

}  // namespace nfmimo::nn
