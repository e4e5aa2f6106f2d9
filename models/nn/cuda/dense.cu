// The dense layer (forward, data and weight gradients).
#include "models/nn/cuda/common.cuh"

namespace nfmimo::nn::gpu {

namespace {

// ---- dense ---------------------------------------------------------------------------------------
// One warp per output (n, o): strided dot product, then a warp reduction.
template <class T>
__global__ void dense_forward_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                     const float* __restrict__ b, T* __restrict__ y, int n, int F, int O) {
  const std::size_t warp = (blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= static_cast<std::size_t>(n) * O) return;
  const int s = static_cast<int>(warp / O), o = static_cast<int>(warp % O);
  float acc = 0.f;
  for (int f = lane; f < F; f += 32)
    acc += load<T>(w, static_cast<std::size_t>(o) * F + f) * load<T>(x, static_cast<std::size_t>(s) * F + f);
  for (int off = 16; off > 0; off /= 2) acc += __shfl_down_sync(0xffffffffu, acc, off);
  if (lane == 0) y[warp] = from_float<T>(acc + (b ? b[o] : 0.f));
}

template <class T>
__global__ void dense_backward_data_kernel(const T* __restrict__ w, const T* __restrict__ dy, T* dx, int n,
                                           int F, int O, bool accumulate) {
  NFMIMO_GRID_STRIDE(i, static_cast<std::size_t>(n) * F) {
    const int s = static_cast<int>(i / F), f = static_cast<int>(i % F);
    float acc = accumulate ? load<T>(dx, i) : 0.f;
    for (int o = 0; o < O; ++o)
      acc +=
          load<T>(dy, static_cast<std::size_t>(s) * O + o) * load<T>(w, static_cast<std::size_t>(o) * F + f);
    dx[i] = from_float<T>(acc);
  }
}

template <class T>
__global__ void dense_backward_weights_kernel(const T* __restrict__ x, const T* __restrict__ dy, T* dw,
                                              float* db, int n, int F, int O) {
  NFMIMO_GRID_STRIDE(i, static_cast<std::size_t>(O) * F) {
    const int o = static_cast<int>(i / F), f = static_cast<int>(i % F);
    float acc = 0.f;
    for (int s = 0; s < n; ++s)
      acc +=
          load<T>(dy, static_cast<std::size_t>(s) * O + o) * load<T>(x, static_cast<std::size_t>(s) * F + f);
    dw[i] = from_float<T>(acc);
    if (db && f == 0) {
      float sb = 0.f;
      for (int s = 0; s < n; ++s) sb += load<T>(dy, static_cast<std::size_t>(s) * O + o);
      db[o] = sb;
    }
  }
}

}  // namespace

void dense_forward(DType t, const void* x, const void* w, const float* bias, void* y, int n, int features,
                   int outputs, Stream stream) {
  const std::size_t threads = static_cast<std::size_t>(n) * outputs * 32;
  NFMIMO_DISPATCH(t, dense_forward_kernel<T><<<(threads + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
                         static_cast<const T*>(x), static_cast<const T*>(w), bias, static_cast<T*>(y), n,
                         features, outputs));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void dense_backward(DType t, const void* x, const void* w, const void* dy, void* dx, bool accumulate,
                    void* dw, float* db, int n, int features, int outputs, Stream stream) {
  if (dx) {
    NFMIMO_DISPATCH(
        t, dense_backward_data_kernel<T><<<blocks_for(std::size_t(n) * features), kThreads, 0, stream>>>(
               static_cast<const T*>(w), static_cast<const T*>(dy), static_cast<T*>(dx), n, features, outputs,
               accumulate));
  }
  NFMIMO_DISPATCH(t, dense_backward_weights_kernel<T>
                  <<<blocks_for(std::size_t(outputs) * features), kThreads, 0, stream>>>(
                      static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dw), db, n,
                      features, outputs));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

}  // namespace nfmimo::nn::gpu
