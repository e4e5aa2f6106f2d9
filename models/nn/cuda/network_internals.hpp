// What the cuDNN training backend (models/training/gpu_backend.cpp) needs from a GpuNetwork: its flat
// parameter and gradient buffers. Internal to models/ (CUDA builds only).
//
// Every trainable parameter lives in one float32 buffer ("master"), each tensor at a 64-element boundary (so
// every cuDNN operand is 256-byte aligned) in the backend's internal layout: convolution filters
// [c_out, kx, ky, kz, c_in] (cuDNN's NDHWC filter format), transposed-convolution filters
// [c_in, kx, ky, kz, c_out], dense weights with their input features in channels-last order; vectors as they
// are. The tensors that take decoupled weight decay and feed the matrix units (convolution, transposed
// convolution and dense weights) come first: [0, weight_count).
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "models/nn/cuda/kernels.hpp"

namespace nfmimo::nn {

struct GpuNetworkInternals {
  gpu::DType dtype = gpu::DType::F32;
  float* master = nullptr;  // [count] float32 parameters
  float* grads = nullptr;   // [count] float32 gradients (training mode)
  std::size_t count = 0, weight_count = 0;
  // Compute-type copy of master (all `count` elements) when dtype is not F32; null otherwise (master is
  // used).
  void* compute = nullptr;
  // Compute-type weight gradients [0, weight_count) when dtype is not F32 (cuDNN writes filter gradients in
  // the data type); null otherwise (grads is used).
  void* compute_grads = nullptr;
  float* running = nullptr;  // batch-norm running statistics
  std::size_t running_count = 0;
  // A flat [count] device buffer laid out like `master` (Adam's moments, gradients) to and from host vectors
  // by trainable-parameter name in the logical layouts; both synchronise.
  std::function<std::map<std::string, std::vector<float>>(const float* device)> download;
  std::function<void(const std::map<std::string, std::vector<float>>& host, float* device)> upload;
};

}  // namespace nfmimo::nn
