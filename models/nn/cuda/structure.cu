// Layers that move data without arithmetic: concat, crop and zero padding (one shifted copy).
#include "models/nn/cuda/common.cuh"

namespace nfmimo::nn::gpu {

namespace {

// ---- structure ----------------------------------------------------------------------------------
template <class T>
__global__ void concat_kernel(const T* __restrict__ a, int ca, const T* __restrict__ b, int cb,
                              T* __restrict__ y, std::size_t count) {
  const int c = ca + cb;
  NFMIMO_GRID_STRIDE(i, count) {
    const std::size_t r = i / c;
    const int ch = static_cast<int>(i % c);
    y[i] = ch < ca ? a[r * ca + ch] : b[r * cb + (ch - ca)];
  }
}

template <class T>
__global__ void concat_backward_kernel(const T* __restrict__ dy, T* da, int ca, bool acc_a, T* db, int cb,
                                       bool acc_b, std::size_t count) {
  const int c = ca + cb;
  NFMIMO_GRID_STRIDE(i, count) {
    const std::size_t r = i / c;
    const int ch = static_cast<int>(i % c);
    const float g = load<T>(dy, i);
    if (ch < ca) {
      if (da) {
        const std::size_t j = r * ca + ch;
        da[j] = from_float<T>(acc_a ? g + load<T>(da, j) : g);
      }
    } else if (db) {
      const std::size_t j = r * cb + (ch - ca);
      db[j] = from_float<T>(acc_b ? g + load<T>(db, j) : g);
    }
  }
}

template <class T>
__global__ void shift_copy_kernel(const T* __restrict__ in, Geometry5 gi, T* out, Geometry5 go, int3 offset,
                                  bool accumulate) {
  const std::size_t count = static_cast<std::size_t>(go.n) * go.x * go.y * go.z * go.c;
  NFMIMO_GRID_STRIDE(o, count) {
    std::size_t r = o;
    const int c = static_cast<int>(r % go.c);
    r /= go.c;
    const int z = static_cast<int>(r % go.z) + offset.z;
    r /= go.z;
    const int y = static_cast<int>(r % go.y) + offset.y;
    r /= go.y;
    const int x = static_cast<int>(r % go.x) + offset.x;
    const int n = static_cast<int>(r / go.x);
    float v = 0.f;
    if (x >= 0 && x < gi.x && y >= 0 && y < gi.y && z >= 0 && z < gi.z)
      v = load<T>(in, offset5(gi, n, x, y, z, c));
    if (accumulate) v += load<T>(out, o);
    out[o] = from_float<T>(v);
  }
}

}  // namespace

void concat(DType t, const void* a, int ca, const void* b, int cb, void* y, std::size_t rows, Stream stream) {
  const std::size_t count = rows * (ca + cb);
  if (count == 0) return;
  NFMIMO_DISPATCH(t,
                  concat_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                      static_cast<const T*>(a), ca, static_cast<const T*>(b), cb, static_cast<T*>(y), count));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void concat_backward(DType t, const void* dy, void* da, int ca, bool accumulate_a, void* db, int cb,
                     bool accumulate_b, std::size_t rows, Stream stream) {
  const std::size_t count = rows * (ca + cb);
  if (count == 0 || (!da && !db)) return;
  NFMIMO_DISPATCH(t, concat_backward_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                         static_cast<const T*>(dy), static_cast<T*>(da), ca, accumulate_a,
                         static_cast<T*>(db), cb, accumulate_b, count));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void shift_copy(DType t, const void* in, const Shape& in_shape, void* out, const Shape& out_shape,
                Triple offset, bool accumulate, Stream stream) {
  const std::size_t count = out_shape.elements();
  if (count == 0) return;
  const int3 o{offset[0], offset[1], offset[2]};
  NFMIMO_DISPATCH(t, shift_copy_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                         static_cast<const T*>(in), geometry(in_shape), static_cast<T*>(out),
                         geometry(out_shape), o, accumulate));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

}  // namespace nfmimo::nn::gpu
