// ONNX export of a model's network (docs/interop.md), written with Debian's ONNX library (libonnx-dev: the
// generated protobuf classes of onnx.proto and ONNX's own model checker).
//
// The graph (opset 17, IR version 8):
//   input  "input"  float32 [batch, C, nx, ny, nz]   C = 1 (2 for cv-unet3d); batch is the symbolic "batch"
//   output "output" float32 [batch, 1, nx, ny, nz]
// in nfmimo's logical layout (z fastest, the volumes' order; ONNX's NCDHW with D = x), the model's own grid.
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
};

void export_onnx(const Model& model, const std::string& path, const OnnxExportOptions& options = {});

}  // namespace nfmimo::nn
