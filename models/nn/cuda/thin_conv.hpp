// Which convolutions the cuDNN backend runs with its own direct kernels (models/nn/cuda/thin_conv.cu) instead
// of cuDNN, as a rule that compiles and is tested without CUDA.
//
// A convolution with one input channel (the first convolution of the single-channel U-Nets, the ResNet stem)
// or one output channel (`out.conv`) is "thin": its channels-last filter [K, kx, ky, kz, C] has a
// dimension of 1 that cuDNN's NHWC kernels are not written for, and cuDNN may offer no algorithm for it at
// all, in bfloat16 especially. Such a layer does little arithmetic (at most 27 * 64 products per output), so
// a direct kernel (one thread per output, float32 accumulation) runs it in every precision with no algorithm
// search. Transposed convolutions are never thin in the paper's networks and stay with cuDNN.
#pragma once

#include "models/nn/graph.hpp"

namespace nfmimo::nn {

// Process-wide (tests and diagnosis), read when a plan is built: Direct (the default) runs thin convolutions
// with the direct kernels; Cudnn sends them to cuDNN like every other convolution (to compare the two).
enum class ThinConvolution { Direct, Cudnn };

inline bool is_thin_convolution(int in_channels, int out_channels) {
  return in_channels == 1 || out_channels == 1;
}

// Whether `op` of `net` runs on the direct kernels under `policy`: forward convolutions (any kernel, stride
// and padding, 'same' or not) with one input or one output channel.
inline bool runs_thin_kernel(const Network& net, const Op& op, ThinConvolution policy) {
  if (op.kind != OpKind::Conv || policy != ThinConvolution::Direct) return false;
  return is_thin_convolution(net.shape(op.inputs[0], 1).c, op.channels);
}

}  // namespace nfmimo::nn
