// Max pooling and its gradient.
#include "models/nn/cuda/common.cuh"

namespace nfmimo::nn::gpu {

namespace {

// ---- pooling ------------------------------------------------------------------------------------
template <class T>
__global__ void max_pool_kernel(const T* __restrict__ x, T* __restrict__ y, Geometry5 in, Geometry5 out,
                                int3 k, int3 s) {
  const std::size_t count = static_cast<std::size_t>(out.n) * out.x * out.y * out.z * out.c;
  NFMIMO_GRID_STRIDE(o, count) {
    std::size_t r = o;
    const int c = static_cast<int>(r % out.c);
    r /= out.c;
    const int Z = static_cast<int>(r % out.z);
    r /= out.z;
    const int Y = static_cast<int>(r % out.y);
    r /= out.y;
    const int X = static_cast<int>(r % out.x);
    const int n = static_cast<int>(r / out.x);
    float best = 0.f;
    bool first = true;
    for (int i = 0; i < k.x; ++i)
      for (int j = 0; j < k.y; ++j)
        for (int l = 0; l < k.z; ++l) {
          const float v = load<T>(x, offset5(in, n, X * s.x + i, Y * s.y + j, Z * s.z + l, c));
          if (first || v > best) best = v, first = false;
        }
    y[o] = from_float<T>(best);
  }
}

// One thread per input element: the outputs whose windows contain it, and for each, whether it is that
// window's first maximum (the forward's strict '>' keeps the first one).
template <class T>
__global__ void max_pool_backward_kernel(const T* __restrict__ x, const T* __restrict__ y,
                                         const T* __restrict__ dy, T* dx, Geometry5 in, Geometry5 out, int3 k,
                                         int3 s, bool accumulate) {
  const std::size_t count = static_cast<std::size_t>(in.n) * in.x * in.y * in.z * in.c;
  NFMIMO_GRID_STRIDE(e, count) {
    std::size_t r = e;
    const int c = static_cast<int>(r % in.c);
    r /= in.c;
    const int pz = static_cast<int>(r % in.z);
    r /= in.z;
    const int py = static_cast<int>(r % in.y);
    r /= in.y;
    const int px = static_cast<int>(r % in.x);
    const int n = static_cast<int>(r / in.x);
    // Outputs o with o * s <= p < o * s + k on each axis.
    const auto lo = [](int p, int kk, int ss) { return p - kk + 1 <= 0 ? 0 : (p - kk + ss) / ss; };
    float g = accumulate ? load<T>(dx, e) : 0.f;
    for (int X = lo(px, k.x, s.x); X <= px / s.x && X < out.x; ++X)
      for (int Y = lo(py, k.y, s.y); Y <= py / s.y && Y < out.y; ++Y)
        for (int Z = lo(pz, k.z, s.z); Z <= pz / s.z && Z < out.z; ++Z) {
          const std::size_t o = offset5(out, n, X, Y, Z, c);
          const float m = load<T>(y, o);
          // The window's first element equal to its maximum.
          int fi = -1, fj = -1, fl = -1;
          for (int i = 0; i < k.x && fi < 0; ++i)
            for (int j = 0; j < k.y && fi < 0; ++j)
              for (int l = 0; l < k.z && fi < 0; ++l)
                if (load<T>(x, offset5(in, n, X * s.x + i, Y * s.y + j, Z * s.z + l, c)) == m)
                  fi = i, fj = j, fl = l;
          if (X * s.x + fi == px && Y * s.y + fj == py && Z * s.z + fl == pz) g += load<T>(dy, o);
        }
    dx[e] = from_float<T>(g);
  }
}

}  // namespace

void max_pool(DType t, const void* x, void* y, const Shape& in, const Shape& out, Triple kernel,
              Triple stride, Stream stream) {
  const std::size_t count = out.elements();
  if (count == 0) return;
  const int3 k{kernel[0], kernel[1], kernel[2]}, s{stride[0], stride[1], stride[2]};
  NFMIMO_DISPATCH(t, max_pool_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                         static_cast<const T*>(x), static_cast<T*>(y), geometry(in), geometry(out), k, s));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void max_pool_backward(DType t, const void* x, const void* y, const void* dy, void* dx, const Shape& in,
                       const Shape& out, Triple kernel, Triple stride, bool accumulate, Stream stream) {
  const std::size_t count = in.elements();
  if (count == 0) return;
  const int3 k{kernel[0], kernel[1], kernel[2]}, s{stride[0], stride[1], stride[2]};
  NFMIMO_DISPATCH(t, max_pool_backward_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                         static_cast<const T*>(x), static_cast<const T*>(y), static_cast<const T*>(dy),
                         static_cast<T*>(dx), geometry(in), geometry(out), k, s, accumulate));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

}  // namespace nfmimo::nn::gpu
