// Elementwise layers: bias + activation epilogues, activations and their gradients, add, gradient
// pass-through.
#include "models/nn/cuda/common.cuh"

namespace nfmimo::nn::gpu {

namespace {

// ---- elementwise --------------------------------------------------------------------------------
template <class T>
__global__ void bias_activation_kernel(T* y, const float* __restrict__ bias, std::size_t count, int c,
                                       Act act) {
  NFMIMO_GRID_STRIDE(i, count) {
    const float v = load<T>(y, i) + (bias ? bias[i % c] : 0.f);
    y[i] = from_float<T>(apply_act(v, act));
  }
}

template <class T>
__global__ void bias_activation_kernel8(T* y, const float* __restrict__ bias, std::size_t packs, int c,
                                        Act act) {
  NFMIMO_GRID_STRIDE(p, packs) {
    const std::size_t i = p * 8;
    const int ch = static_cast<int>(i % c);
    Pack8<T> v;
    v.load_from(y, i);
#pragma unroll
    for (int k = 0; k < 8; ++k) v.v[k] = apply_act(v.v[k] + (bias ? bias[ch + k] : 0.f), act);
    v.store_to(y, i);
  }
}

template <class T>
__global__ void activation_kernel(const T* x, T* y, std::size_t count, Act act) {
  NFMIMO_GRID_STRIDE(i, count) y[i] = from_float<T>(apply_act(load<T>(x, i), act));
}

template <class T>
__global__ void activation_backward_kernel(const T* __restrict__ y, const T* __restrict__ dy, T* dx,
                                           std::size_t count, Act act, bool accumulate) {
  NFMIMO_GRID_STRIDE(i, count) {
    const float g = load<T>(dy, i), out = load<T>(y, i);
    float d = g;
    if (act == Act::ReLU) d = out > 0.f ? g : 0.f;
    if (act == Act::Sigmoid) d = g * out * (1.f - out);
    if (accumulate) d += load<T>(dx, i);
    dx[i] = from_float<T>(d);
  }
}

template <class T>
__global__ void add_kernel(const T* a, const T* b, T* y, std::size_t count) {
  NFMIMO_GRID_STRIDE(i, count) y[i] = from_float<T>(load<T>(a, i) + load<T>(b, i));
}

template <class T>
__global__ void pass_gradient_kernel(const T* dy, T* dx, std::size_t count, bool accumulate) {
  NFMIMO_GRID_STRIDE(i, count) {
    const float d = load<T>(dy, i) + (accumulate ? load<T>(dx, i) : 0.f);
    dx[i] = from_float<T>(d);
  }
}

}  // namespace

void bias_activation(DType t, void* y, const float* bias, std::size_t rows, int c, Act act, Stream stream) {
  const std::size_t count = rows * c;
  if (count == 0 || (!bias && act == Act::None)) return;
  if (c % 8 == 0) {
    NFMIMO_DISPATCH(t, bias_activation_kernel8<T><<<blocks_for(count / 8), kThreads, 0, stream>>>(
                           static_cast<T*>(y), bias, count / 8, c, act));
  } else {
    NFMIMO_DISPATCH(t, bias_activation_kernel<T>
                    <<<blocks_for(count), kThreads, 0, stream>>>(static_cast<T*>(y), bias, count, c, act));
  }
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void activation(DType t, const void* x, void* y, std::size_t count, Act act, Stream stream) {
  if (count == 0) return;
  NFMIMO_DISPATCH(t, activation_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                         static_cast<const T*>(x), static_cast<T*>(y), count, act));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void activation_backward(DType t, const void* y, const void* dy, void* dx, std::size_t count, Act act,
                         bool accumulate, Stream stream) {
  if (count == 0) return;
  NFMIMO_DISPATCH(t, activation_backward_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                         static_cast<const T*>(y), static_cast<const T*>(dy), static_cast<T*>(dx), count, act,
                         accumulate));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void add(DType t, const void* a, const void* b, void* y, std::size_t count, Stream stream) {
  if (count == 0) return;
  NFMIMO_DISPATCH(t, add_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                         static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(y), count));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void pass_gradient(DType t, const void* dy, void* dx, std::size_t count, bool accumulate, Stream stream) {
  if (count == 0) return;
  if (!accumulate) {
    NFMIMO_CUDA_CHECK(cudaMemcpyAsync(dx, dy, count * dtype_size(t), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  NFMIMO_DISPATCH(t, pass_gradient_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                         static_cast<const T*>(dy), static_cast<T*>(dx), count, accumulate));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

}  // namespace nfmimo::nn::gpu
