// Layout conversions at the backend boundary (logical float32 <-> channels-last storage type) and casts.
#include "models/nn/cuda/common.cuh"

namespace nfmimo::nn::gpu {

std::size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

namespace {

// ---- layout -------------------------------------------------------------------------------------
template <class T>
__global__ void to_internal_kernel(const float* __restrict__ in, T* __restrict__ out, int c,
                                   std::size_t spatial, std::size_t count, float scale) {
  NFMIMO_GRID_STRIDE(o, count) {
    const std::size_t ch = o % c, row = o / c, n = row / spatial, s = row % spatial;
    out[o] = from_float<T>(in[(n * c + ch) * spatial + s] * scale);
  }
}

template <class T>
__global__ void from_internal_kernel(const T* __restrict__ in, float* __restrict__ out, int c,
                                     std::size_t spatial, std::size_t count) {
  NFMIMO_GRID_STRIDE(o, count) {
    const std::size_t s = o % spatial, nc = o / spatial, ch = nc % c, n = nc / c;
    out[o] = load<T>(in, (n * spatial + s) * c + ch);
  }
}

template <class T>
__global__ void cast_kernel(const float* __restrict__ in, T* __restrict__ out, std::size_t count) {
  NFMIMO_GRID_STRIDE(i, count) out[i] = from_float<T>(in[i]);
}

template <class T>
__global__ void cast_back_kernel(const T* __restrict__ in, float* __restrict__ out, std::size_t count) {
  NFMIMO_GRID_STRIDE(i, count) out[i] = load<T>(in, i);
}

}  // namespace

void to_internal(DType t, const float* in, void* out, const Shape& s, float scale, Stream stream) {
  const std::size_t count = s.elements();
  if (count == 0) return;
  NFMIMO_DISPATCH(t, to_internal_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                         in, static_cast<T*>(out), s.c, s.spatial(), count, scale));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void from_internal(DType t, const void* in, float* out, const Shape& s, Stream stream) {
  const std::size_t count = s.elements();
  if (count == 0) return;
  NFMIMO_DISPATCH(t, from_internal_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                         static_cast<const T*>(in), out, s.c, s.spatial(), count));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void cast_from_float(DType t, const float* in, void* out, std::size_t count, Stream stream) {
  if (count == 0) return;
  NFMIMO_DISPATCH(
      t, cast_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(in, static_cast<T*>(out), count));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void cast_to_float(DType t, const void* in, float* out, std::size_t count, Stream stream) {
  if (count == 0) return;
  NFMIMO_DISPATCH(t, cast_back_kernel<T>
                  <<<blocks_for(count), kThreads, 0, stream>>>(static_cast<const T*>(in), out, count));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void fill_zero(void* p, std::size_t bytes, Stream stream) {
  if (bytes) NFMIMO_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream));
}

}  // namespace nfmimo::nn::gpu
