// The paper's networks (the authors' Keras code, layer for layer), built as Network graphs for any grid.
//
//   unet3d     3D U-Net: crop to a multiple of 8, 3 encoder levels of two [Conv 3x3x3 + BN + ReLU] (32, 64,
//   128
//              channels) each followed by 2x2x2 max pooling, decoder of [ConvTranspose 2x2x2 stride 2, concat
//              the skip, two conv blocks] at 128, 64, 32 channels, zero-pad back, Conv 3x3x3 to 64 + BN +
//              ReLU, Conv 1x1x1 to 1, sigmoid. About 2.87 M trainable parameters on the paper's grid.
//   unet2d     the same topology with 3x3x1 convolutions and 2x2x1 transposed convolutions striding 2 on
//   every
//              axis (the odd z slices of each upsampled map receive only the bias, as in the authors' code).
//   resnet     Conv 3x3x3 to 64 + ReLU, eight [Conv 3x3x3 64 + BN + ReLU], Conv 3x3x3 to 1, plus the input.
//   cv-unet3d  unet3d with two input channels (real and imaginary parts).
//
// Composite architectures (models/learned/composite.hpp): a learned complex dense first stage (ComplexDense,
// from the measurements to a complex volume) followed by the cv-unet3d graph, trained jointly:
//   deepdi       dense layer from random weights
//   deep2s-plus  dense layer initialised to the adjoint A^H
// Their Network (build_network) is the cv-unet3d graph; the dense layer's parameters live next to it in the
// Model ("dense.weight", "dense.bias").
//
// The authors crop the first voxel of each axis of their 25 x 25 x 49 grid (to 24 x 24 x 48, divisible by the
// three poolings) and zero-pad it back before the last block. Generalised: each axis loses its first (n mod
// 8) voxels and gets them back as zeros; an axis shorter than 8 voxels is refused for the U-Nets.
#pragma once

#include <string>
#include <vector>

#include "models/nn/graph.hpp"

namespace nfmimo::nn {

struct ArchitectureOptions {
  int width = 0;   // first-level channels (U-Nets, default 32) or feature channels (ResNet, default 64)
  int blocks = 8;  // ResNet: number of [Conv + BN + ReLU] blocks
};

const std::vector<std::string>& architecture_names();            // unet3d, unet2d, resnet, cv-unet3d (graphs)
const std::vector<std::string>& composite_architecture_names();  // deepdi, deep2s-plus
bool is_composite_architecture(const std::string& architecture);
// Input channels the architecture's network graph takes (2 for cv-unet3d and the composites, 1 otherwise);
// InputError for unknown names.
int architecture_input_channels(const std::string& architecture);

// Builds the network for a grid of nx * ny * nz voxels. InputError for unknown names or grids too small.
Network build_network(const std::string& architecture, int nx, int ny, int nz,
                      const ArchitectureOptions& options = {});

}  // namespace nfmimo::nn
