// ONNX export of a model's network (docs/interop.md), written with Debian's ONNX library (libonnx-dev: the
// generated protobuf classes of onnx.proto and ONNX's own model checker).
//
// The graph (opset 17, IR version 8):
//   input  "input"  float32 [batch, C, nx, ny, nz]   C = 1 (2 for cv-unet3d); batch is the symbolic "batch"
//   output "output" float32 [batch, 1, nx, ny, nz]
// in nfmimo's logical layout (z fastest, the volumes' order; ONNX's NCDHW with D = x), the model's own grid.
// With OnnxExportOptions::pipeline the input is the measurements instead (below).
// Ops: Conv, ConvTranspose, BatchNormalization (inference) or none (folded), Relu, Sigmoid, MaxPool, Concat,
// Slice (crop), Pad (zero padding), Add. With `fold_batch_norm`, each batch norm is folded into the
// convolution before it (w' = w g / sqrt(v + eps), b' = (b - m) g / sqrt(v + eps) + beta, in double).
#pragma once

#include <string>

#include "models/weights.hpp"

namespace nfmimo::nn {

// True when this build has the ONNX library (otherwise export_onnx throws InputError saying so).
bool onnx_export_available();

struct OnnxExportOptions {
  bool fold_batch_norm = true;
  bool overwrite = false;
  // The whole learned pipeline in one graph instead of the network alone (deep2s, deep2s-unet2d,
  // deep2s-resnet, cv-deep2s: the method of the model's architecture):
  //   input "measurements" float32 [batch, K, T, R, 2] (real, imaginary), the model's radar system;
  //   the exact adjoint as a complex matrix product (A^H as two float32 matrices [M, V], M = K T R), the
  //   magnitude (cv-deep2s: real and imaginary channels), the per-sample maximum (an all-zero frame stays
  //   zero), then the network; output "output" as above. A^H costs 8 M V bytes (573 MB for K = 15 on the
  //   paper's grid).
  bool pipeline = false;
};

void export_onnx(const Model& model, const std::string& path, const OnnxExportOptions& options = {});

}  // namespace nfmimo::nn
