// Kernels of the cuDNN network backend (declarations and conventions: models/gpu_kernels.hpp).
//
// Every kernel loads its storage type, computes in float32 and rounds once on store. Elementwise kernels over
// channels-last tensors move 8 channels per thread (16-byte loads in float16/bfloat16) when the channel count
// allows it: these passes are bound by memory bandwidth, and 2-byte loads reach a fraction of it. Reductions
// are deterministic (fixed block partition, fixed-order second stage), so a training step is reproducible on
// one GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "kernels/cuda_check.hpp"
#include "models/gpu_kernels.hpp"

namespace nfmimo::nn::gpu {

std::size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 132 * 32;  // grid-stride loops: enough blocks to fill an H200 many times over
constexpr int kReduceChunks = 1024;  // row chunks of the per-channel reductions (partials: chunks x channels)
constexpr int kTile = 32;            // channels per block of the per-channel reductions
constexpr int kLanes = 8;            // row lanes per block of the per-channel reductions

int blocks_for(std::size_t work) {
  return static_cast<int>(
      std::max<std::size_t>(1, std::min<std::size_t>((work + kThreads - 1) / kThreads, kMaxBlocks)));
}

template <class T>
__device__ __forceinline__ float load(const T* p, std::size_t i);
template <>
__device__ __forceinline__ float load<float>(const float* p, std::size_t i) {
  return p[i];
}
template <>
__device__ __forceinline__ float load<__half>(const __half* p, std::size_t i) {
  return __half2float(p[i]);
}
template <>
__device__ __forceinline__ float load<__nv_bfloat16>(const __nv_bfloat16* p, std::size_t i) {
  return __bfloat162float(p[i]);
}

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Eight consecutive elements starting at an index that is a multiple of 8 (16-byte aligned for 2-byte types,
// 32-byte for float: every buffer of the backend starts at a 256-byte boundary).
template <class T>
struct Pack8 {
  float v[8];
  __device__ __forceinline__ void load_from(const T* p, std::size_t i) {
    if constexpr (sizeof(T) == 2) {
      const uint4 raw = *reinterpret_cast<const uint4*>(p + i);
      const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int k = 0; k < 8; ++k) v[k] = load<T>(e, k);
    } else {
      const float4 a = *reinterpret_cast<const float4*>(p + i),
                   b = *reinterpret_cast<const float4*>(p + i + 4);
      v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    }
  }
  __device__ __forceinline__ void store_to(T* p, std::size_t i) const {
    if constexpr (sizeof(T) == 2) {
      uint4 raw;
      T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
      for (int k = 0; k < 8; ++k) e[k] = from_float<T>(v[k]);
      *reinterpret_cast<uint4*>(p + i) = raw;
    } else {
      *reinterpret_cast<float4*>(p + i) = make_float4(v[0], v[1], v[2], v[3]);
      *reinterpret_cast<float4*>(p + i + 4) = make_float4(v[4], v[5], v[6], v[7]);
    }
  }
};

__device__ __forceinline__ float apply_act(float v, Act act) {
  if (act == Act::ReLU) return v > 0.f ? v : 0.f;
  if (act == Act::Sigmoid) return 1.f / (1.f + __expf(-v));
  return v;
}

#define NFMIMO_GRID_STRIDE(i, n)                                                                 \
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)

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

// ---- pooling ------------------------------------------------------------------------------------
struct Geometry5 {
  int n, c, x, y, z;
};
__host__ Geometry5 geometry(const Shape& s) { return {s.n, s.c, s.x, s.y, s.z}; }

__device__ __forceinline__ std::size_t offset5(const Geometry5& g, int n, int x, int y, int z, int c) {
  return ((((static_cast<std::size_t>(n) * g.x + x) * g.y + y) * g.z + z) * g.c) + c;
}

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

// ---- per-channel reductions ----------------------------------------------------------------------
// Block (kTile channels) x (kLanes row lanes); grid (chunks, channel tiles). Chunk b covers rows
// [b * rows_per_chunk, ...).
struct ChunkPlan {
  int chunks;
  std::size_t rows_per_chunk;
};
ChunkPlan chunk_plan(std::size_t rows) {
  const std::size_t target = std::max<std::size_t>(kLanes * 16, (rows + kReduceChunks - 1) / kReduceChunks);
  const int chunks = static_cast<int>(std::max<std::size_t>(1, (rows + target - 1) / target));
  return {chunks, target};
}

template <class T>
__global__ void channel_sum_partial_kernel(const T* __restrict__ x, std::size_t rows, int c, ChunkPlan plan,
                                           float* __restrict__ partial) {
  __shared__ float acc[kLanes][kTile];
  const int ch = blockIdx.y * kTile + threadIdx.x;
  const std::size_t begin = blockIdx.x * plan.rows_per_chunk, end = min(rows, begin + plan.rows_per_chunk);
  float s = 0.f;
  if (ch < c)
    for (std::size_t r = begin + threadIdx.y; r < end; r += kLanes) s += load<T>(x, r * c + ch);
  acc[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && ch < c) {
    float t = 0.f;
    for (int l = 0; l < kLanes; ++l) t += acc[l][threadIdx.x];
    partial[static_cast<std::size_t>(blockIdx.x) * c + ch] = t;
  }
}

__global__ void channel_sum_final_kernel(const float* __restrict__ partial, int chunks, int c, float* out,
                                         bool accumulate) {
  const int ch = blockIdx.x * blockDim.x + threadIdx.x;
  if (ch >= c) return;
  double s = 0;
  for (int b = 0; b < chunks; ++b) s += partial[static_cast<std::size_t>(b) * c + ch];
  out[ch] = static_cast<float>(accumulate ? s + out[ch] : s);
}

// Batch-norm statistics: per (chunk, channel) Welford (count, mean, M2).
__device__ __forceinline__ void chan_merge(float& n, float& mean, float& m2, float nb, float meanb,
                                           float m2b) {
  if (nb == 0.f) return;
  const float total = n + nb, delta = meanb - mean;
  mean += delta * (nb / total);
  m2 += m2b + delta * delta * (n * nb / total);
  n = total;
}

template <class T>
__global__ void bn_stats_partial_kernel(const T* __restrict__ x, std::size_t rows, int c, ChunkPlan plan,
                                        float* __restrict__ partial) {
  __shared__ float sn[kLanes][kTile], sm[kLanes][kTile], s2[kLanes][kTile];
  const int ch = blockIdx.y * kTile + threadIdx.x;
  const std::size_t begin = blockIdx.x * plan.rows_per_chunk, end = min(rows, begin + plan.rows_per_chunk);
  float n = 0.f, mean = 0.f, m2 = 0.f;
  if (ch < c)
    for (std::size_t r = begin + threadIdx.y; r < end; r += kLanes) {
      const float v = load<T>(x, r * c + ch);
      n += 1.f;
      const float d = v - mean;
      mean += d / n;
      m2 += d * (v - mean);
    }
  sn[threadIdx.y][threadIdx.x] = n, sm[threadIdx.y][threadIdx.x] = mean, s2[threadIdx.y][threadIdx.x] = m2;
  __syncthreads();
  if (threadIdx.y == 0 && ch < c) {
    for (int l = 1; l < kLanes; ++l)
      chan_merge(n, mean, m2, sn[l][threadIdx.x], sm[l][threadIdx.x], s2[l][threadIdx.x]);
    float* p = partial + (static_cast<std::size_t>(blockIdx.x) * c + ch) * 3;
    p[0] = n, p[1] = mean, p[2] = m2;
  }
}

__global__ void bn_stats_final_kernel(const float* __restrict__ partial, int chunks, int c,
                                      BatchNormTrainingArgs a) {
  const int ch = blockIdx.x * blockDim.x + threadIdx.x;
  if (ch >= c) return;
  double n = 0, mean = 0, m2 = 0;
  for (int b = 0; b < chunks; ++b) {
    const float* p = partial + (static_cast<std::size_t>(b) * c + ch) * 3;
    const double nb = p[0];
    if (nb == 0) continue;
    const double total = n + nb, delta = double(p[1]) - mean;
    mean += delta * (nb / total);
    m2 += double(p[2]) + delta * delta * (n * nb / total);
    n = total;
  }
  const double var = n > 0 ? m2 / n : 0.0;  // biased, as the reference and Keras
  const double inv_std = 1.0 / sqrt(var + a.epsilon);
  const double scale = double(a.gamma[ch]) * inv_std;
  a.mean[ch] = static_cast<float>(mean);
  a.inv_std[ch] = static_cast<float>(inv_std);
  a.scale[ch] = static_cast<float>(scale);
  a.shift[ch] = static_cast<float>(double(a.beta[ch]) - mean * scale);
  const double batch_mean = mean + (a.pending_bias ? double(a.pending_bias[ch]) : 0.0);
  a.running_mean[ch] = static_cast<float>((1 - a.momentum) * a.running_mean[ch] + a.momentum * batch_mean);
  a.running_var[ch] = static_cast<float>((1 - a.momentum) * a.running_var[ch] + a.momentum * var);
}

__global__ void bn_inference_kernel(const float* gamma, const float* beta, const float* rm, const float* rv,
                                    const float* pending_bias, double eps, int c, float* scale,
                                    float* shift) {
  const int ch = blockIdx.x * blockDim.x + threadIdx.x;
  if (ch >= c) return;
  const double s = double(gamma[ch]) / sqrt(double(rv[ch]) + eps);
  const double mean = double(rm[ch]) - (pending_bias ? double(pending_bias[ch]) : 0.0);
  scale[ch] = static_cast<float>(s);
  shift[ch] = static_cast<float>(double(beta[ch]) - mean * s);
}

template <class T>
__global__ void bn_apply_kernel(const T* __restrict__ x, T* __restrict__ y, std::size_t count, int c,
                                const float* __restrict__ scale, const float* __restrict__ shift, bool relu) {
  NFMIMO_GRID_STRIDE(i, count) {
    const int ch = static_cast<int>(i % c);
    float v = load<T>(x, i) * scale[ch] + shift[ch];
    if (relu) v = v > 0.f ? v : 0.f;
    y[i] = from_float<T>(v);
  }
}

template <class T>
__global__ void bn_apply_kernel8(const T* __restrict__ x, T* __restrict__ y, std::size_t packs, int c,
                                 const float* __restrict__ scale, const float* __restrict__ shift,
                                 bool relu) {
  NFMIMO_GRID_STRIDE(p, packs) {
    const std::size_t i = p * 8;
    const int ch = static_cast<int>(i % c);
    Pack8<T> v;
    v.load_from(x, i);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float t = v.v[k] * scale[ch + k] + shift[ch + k];
      v.v[k] = relu ? (t > 0.f ? t : 0.f) : t;
    }
    v.store_to(y, i);
  }
}

// Sums of g and g * xhat per (chunk, channel).
template <class T>
__global__ void bn_backward_partial_kernel(const T* __restrict__ x, const T* __restrict__ y,
                                           const T* __restrict__ dy, std::size_t rows, int c, bool relu,
                                           const float* __restrict__ mean, const float* __restrict__ inv_std,
                                           ChunkPlan plan, float* __restrict__ partial) {
  __shared__ float s1[kLanes][kTile], s2[kLanes][kTile];
  const int ch = blockIdx.y * kTile + threadIdx.x;
  const std::size_t begin = blockIdx.x * plan.rows_per_chunk, end = min(rows, begin + plan.rows_per_chunk);
  float sg = 0.f, sgx = 0.f;
  if (ch < c) {
    const float m = mean[ch], is = inv_std[ch];
    for (std::size_t r = begin + threadIdx.y; r < end; r += kLanes) {
      const std::size_t i = r * c + ch;
      float g = load<T>(dy, i);
      if (relu && !(load<T>(y, i) > 0.f)) g = 0.f;
      sg += g;
      sgx += g * (load<T>(x, i) - m) * is;
    }
  }
  s1[threadIdx.y][threadIdx.x] = sg, s2[threadIdx.y][threadIdx.x] = sgx;
  __syncthreads();
  if (threadIdx.y == 0 && ch < c) {
    for (int l = 1; l < kLanes; ++l) sg += s1[l][threadIdx.x], sgx += s2[l][threadIdx.x];
    float* p = partial + (static_cast<std::size_t>(blockIdx.x) * c + ch) * 2;
    p[0] = sg, p[1] = sgx;
  }
}

__global__ void bn_backward_final_kernel(const float* __restrict__ partial, int chunks, int c, double rows,
                                         float* dgamma, float* dbeta, float* coeffs) {
  const int ch = blockIdx.x * blockDim.x + threadIdx.x;
  if (ch >= c) return;
  double sg = 0, sgx = 0;
  for (int b = 0; b < chunks; ++b) {
    const float* p = partial + (static_cast<std::size_t>(b) * c + ch) * 2;
    sg += p[0], sgx += p[1];
  }
  dgamma[ch] = static_cast<float>(sgx);
  dbeta[ch] = static_cast<float>(sg);
  coeffs[ch] = static_cast<float>(sg / rows);
  coeffs[c + ch] = static_cast<float>(sgx / rows);
}

// dx (+)= scale (g - mean(g) - xhat mean(g xhat)), xhat formed first (expanding into a x + b would cancel
// when |mean| >> std, as on the CPU).
template <class T>
__global__ void bn_backward_apply_kernel(const T* __restrict__ x, const T* __restrict__ y,
                                         const T* __restrict__ dy, T* dx, std::size_t count, int c, bool relu,
                                         const float* __restrict__ mean, const float* __restrict__ inv_std,
                                         const float* __restrict__ scale, const float* __restrict__ coeffs,
                                         bool accumulate) {
  NFMIMO_GRID_STRIDE(i, count) {
    const int ch = static_cast<int>(i % c);
    float g = load<T>(dy, i);
    if (relu && !(load<T>(y, i) > 0.f)) g = 0.f;
    const float xhat = (load<T>(x, i) - mean[ch]) * inv_std[ch];
    float d = scale[ch] * (g - coeffs[ch] - xhat * coeffs[c + ch]);
    if (accumulate) d += load<T>(dx, i);
    dx[i] = from_float<T>(d);
  }
}

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

template <class T>
__global__ void cast_kernel(const float* __restrict__ in, T* __restrict__ out, std::size_t count) {
  NFMIMO_GRID_STRIDE(i, count) out[i] = from_float<T>(in[i]);
}

template <class T>
__global__ void cast_back_kernel(const T* __restrict__ in, float* __restrict__ out, std::size_t count) {
  NFMIMO_GRID_STRIDE(i, count) out[i] = load<T>(in, i);
}

// ---- training step ------------------------------------------------------------------------------
constexpr int kStepBlocks = 1024;  // fixed partition of the global reductions (deterministic order)

__device__ __forceinline__ double block_sum(double v, double* shared) {
  for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  double t = 0;
  if (threadIdx.x == 0)
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) t += shared[w];
  return t;  // valid in thread 0
}

__global__ void loss_kernel(LossType type, const float* __restrict__ y, const float* __restrict__ t,
                            float* __restrict__ grad, std::size_t count, const StepScalars* scalars,
                            double* __restrict__ partial) {
  __shared__ double shared[kThreads / 32];
  const float scale = scalars->loss_scale;
  const float inv_count = 1.f / static_cast<float>(count);
  double s = 0;
  NFMIMO_GRID_STRIDE(i, count) {
    const float d = y[i] - t[i];
    if (type == LossType::Mse) {
      s += double(d) * d;
      grad[i] = 2.f * d * inv_count * scale;
    } else {
      s += fabs(double(d));
      grad[i] = (d > 0.f ? 1.f : d < 0.f ? -1.f : 0.f) * inv_count * scale;
    }
  }
  const double total = block_sum(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

__global__ void loss_final_kernel(const double* __restrict__ partial, int blocks, std::size_t count,
                                  StepScalars* scalars) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double s = 0;
  for (int b = 0; b < blocks; ++b) s += partial[b];
  scalars->loss_sum = s;
  scalars->loss = s / static_cast<double>(count);
}

template <class T>
__global__ void grad_norm_kernel(const T* __restrict__ wgrad, float* grads, std::size_t weight_count,
                                 std::size_t count, const StepScalars* scalars,
                                 double* __restrict__ partial) {
  __shared__ double shared[kThreads / 32];
  const float inv_scale = 1.f / scalars->loss_scale;
  double s = 0;
  NFMIMO_GRID_STRIDE(i, count) {
    const float g = (i < weight_count ? load<T>(wgrad, i) : grads[i]) * inv_scale;
    grads[i] = g;
    s += double(g) * g;  // inf / NaN propagate into the sum: the finiteness test below
  }
  const double total = block_sum(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

__global__ void step_decide_kernel(const double* __restrict__ partial, int blocks, StepSettings st,
                                   StepScalars* sc) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double sq = 0;
  for (int b = 0; b < blocks; ++b) sq += partial[b];
  sc->grad_sq = sq;
  const bool loss_finite = isfinite(sc->loss);
  const bool grads_finite = isfinite(sq);
  sc->finite = loss_finite && grads_finite;
  sc->reported_finite = sc->finite;
  if (st.dynamic_loss_scale) {
    if (!sc->finite) {
      // An overflow of the scaled float16 gradients: skip the step and halve the scale (as PyTorch's
      // GradScaler). Only a non-finite loss, or an overflow that persists down to a scale of 1, is a real
      // failure.
      sc->reported_finite = loss_finite && sc->loss_scale > 1.f;
      sc->loss_scale = fmaxf(sc->loss_scale * 0.5f, 1.f);
      sc->good_steps = 0;
    } else if (++sc->good_steps >= st.growth_interval) {
      sc->loss_scale = fminf(sc->loss_scale * 2.f, 16777216.f);
      sc->good_steps = 0;
    }
  }
  if (!sc->finite) {
    ++sc->skipped;
    sc->clip_factor = 0.f;
    return;
  }
  const double norm = sqrt(sq);
  sc->clip_factor = st.clip_norm > 0 && norm > st.clip_norm ? static_cast<float>(st.clip_norm / norm) : 1.f;
  sc->step += 1;
  sc->bias_correction1 = static_cast<float>(1.0 / (1.0 - pow(st.beta1, double(sc->step))));
  sc->bias_correction2 = static_cast<float>(1.0 / (1.0 - pow(st.beta2, double(sc->step))));
}

template <class T>
__global__ void adam_kernel(float* __restrict__ p, float* __restrict__ m, float* __restrict__ v,
                            const float* __restrict__ g, std::size_t count, std::size_t decay_count,
                            T* __restrict__ compute, std::size_t cast_count, AdamArgs a,
                            const StepScalars* __restrict__ sc) {
  if (!sc->finite) return;
  const float clip = sc->clip_factor, c1 = sc->bias_correction1, c2 = sc->bias_correction2;
  const float lr = static_cast<float>(a.learning_rate), b1 = static_cast<float>(a.beta1),
              b2 = static_cast<float>(a.beta2), eps = static_cast<float>(a.epsilon),
              decay = static_cast<float>(a.learning_rate * a.weight_decay);
  NFMIMO_GRID_STRIDE(i, count) {
    const float grad = g[i] * clip;
    const float mi = b1 * m[i] + (1.f - b1) * grad;
    const float vi = b2 * v[i] + (1.f - b2) * grad * grad;
    m[i] = mi, v[i] = vi;
    float pi = p[i];
    if (i < decay_count) pi -= decay * pi;  // decoupled weight decay (AdamW), before the Adam step
    pi -= lr * (mi * c1) / (sqrtf(vi * c2) + eps);
    p[i] = pi;
    if (compute && i < cast_count) compute[i] = from_float<T>(pi);
  }
}

}  // namespace

// ---- dispatch -----------------------------------------------------------------------------------
#define NFMIMO_DISPATCH(t, ...) \
  switch (t) {                  \
    case DType::F32: {          \
      using T = float;          \
      __VA_ARGS__;              \
      break;                    \
    }                           \
    case DType::F16: {          \
      using T = __half;         \
      __VA_ARGS__;              \
      break;                    \
    }                           \
    case DType::BF16: {         \
      using T = __nv_bfloat16;  \
      __VA_ARGS__;              \
      break;                    \
    }                           \
  }

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

std::size_t channel_sum_scratch(int c) { return static_cast<std::size_t>(kReduceChunks) * c; }

void channel_sum(DType t, const void* x, std::size_t rows, int c, float* out, bool accumulate, float* scratch,
                 Stream stream) {
  if (c == 0) return;
  const ChunkPlan plan = chunk_plan(rows);
  const dim3 grid(plan.chunks, (c + kTile - 1) / kTile), block(kTile, kLanes);
  NFMIMO_DISPATCH(t, channel_sum_partial_kernel<T>
                  <<<grid, block, 0, stream>>>(static_cast<const T*>(x), rows, c, plan, scratch));
  channel_sum_final_kernel<<<(c + 127) / 128, 128, 0, stream>>>(scratch, plan.chunks, c, out, accumulate);
  NFMIMO_CUDA_CHECK_LAUNCH();
}

std::size_t bn_scratch(int c) {
  return static_cast<std::size_t>(kReduceChunks) * c * 3 + 2 * static_cast<std::size_t>(c);
}

void bn_statistics(DType t, const void* x, std::size_t rows, int c, const BatchNormTrainingArgs& args,
                   float* scratch, Stream stream) {
  const ChunkPlan plan = chunk_plan(rows);
  const dim3 grid(plan.chunks, (c + kTile - 1) / kTile), block(kTile, kLanes);
  NFMIMO_DISPATCH(t, bn_stats_partial_kernel<T>
                  <<<grid, block, 0, stream>>>(static_cast<const T*>(x), rows, c, plan, scratch));
  bn_stats_final_kernel<<<(c + 127) / 128, 128, 0, stream>>>(scratch, plan.chunks, c, args);
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void bn_inference_coefficients(const float* gamma, const float* beta, const float* running_mean,
                               const float* running_var, const float* pending_bias, double epsilon, int c,
                               float* scale, float* shift, Stream stream) {
  bn_inference_kernel<<<(c + 127) / 128, 128, 0, stream>>>(gamma, beta, running_mean, running_var,
                                                           pending_bias, epsilon, c, scale, shift);
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void bn_apply(DType t, const void* x, void* y, std::size_t rows, int c, const float* scale,
              const float* shift, bool relu, Stream stream) {
  const std::size_t count = rows * c;
  if (count == 0) return;
  if (c % 8 == 0) {
    NFMIMO_DISPATCH(t, bn_apply_kernel8<T><<<blocks_for(count / 8), kThreads, 0, stream>>>(
                           static_cast<const T*>(x), static_cast<T*>(y), count / 8, c, scale, shift, relu));
  } else {
    NFMIMO_DISPATCH(t, bn_apply_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                           static_cast<const T*>(x), static_cast<T*>(y), count, c, scale, shift, relu));
  }
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void bn_backward(DType t, const void* x, const void* y, const void* dy, void* dx, std::size_t rows, int c,
                 bool relu, const float* mean, const float* inv_std, const float* scale, float* dgamma,
                 float* dbeta, bool accumulate, float* scratch, Stream stream) {
  const ChunkPlan plan = chunk_plan(rows);
  const dim3 grid(plan.chunks, (c + kTile - 1) / kTile), block(kTile, kLanes);
  float* coeffs = scratch + static_cast<std::size_t>(kReduceChunks) * c * 3;
  NFMIMO_DISPATCH(t, bn_backward_partial_kernel<T><<<grid, block, 0, stream>>>(
                         static_cast<const T*>(x), static_cast<const T*>(y), static_cast<const T*>(dy), rows,
                         c, relu, mean, inv_std, plan, scratch));
  bn_backward_final_kernel<<<(c + 127) / 128, 128, 0, stream>>>(
      scratch, plan.chunks, c, static_cast<double>(rows), dgamma, dbeta, coeffs);
  NFMIMO_CUDA_CHECK_LAUNCH();
  if (!dx) return;
  const std::size_t count = rows * c;
  NFMIMO_DISPATCH(t, bn_backward_apply_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                         static_cast<const T*>(x), static_cast<const T*>(y), static_cast<const T*>(dy),
                         static_cast<T*>(dx), count, c, relu, mean, inv_std, scale, coeffs, accumulate));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

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

std::size_t loss_scratch() { return 2 * kStepBlocks; }  // doubles, counted in floats

void loss_and_gradient(LossType type, const float* y, const float* target, float* grad, std::size_t count,
                       StepScalars* scalars, float* scratch, Stream stream) {
  double* partial = reinterpret_cast<double*>(scratch);
  loss_kernel<<<kStepBlocks, kThreads, 0, stream>>>(type, y, target, grad, count, scalars, partial);
  loss_final_kernel<<<1, 32, 0, stream>>>(partial, kStepBlocks, count, scalars);
  NFMIMO_CUDA_CHECK_LAUNCH();
}

std::size_t grad_scratch() { return 2 * kStepBlocks; }

void finish_gradients(DType t, const void* weight_grads, float* grads, std::size_t weight_count,
                      std::size_t count, const StepSettings& settings, StepScalars* scalars, float* scratch,
                      Stream stream) {
  double* partial = reinterpret_cast<double*>(scratch);
  NFMIMO_DISPATCH(t, grad_norm_kernel<T><<<kStepBlocks, kThreads, 0, stream>>>(
                         static_cast<const T*>(weight_grads), grads, weight_count, count, scalars, partial));
  step_decide_kernel<<<1, 32, 0, stream>>>(partial, kStepBlocks, settings, scalars);
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void adam_update(float* params, float* m, float* v, const float* grads, std::size_t count,
                 std::size_t decay_count, DType t, void* compute, std::size_t cast_count,
                 const AdamArgs& args, const StepScalars* scalars, Stream stream) {
  if (count == 0) return;
  NFMIMO_DISPATCH(
      t, adam_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
             params, m, v, grads, count, decay_count, static_cast<T*>(compute), cast_count, args, scalars));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

// ---- the dense first stage of DeepDI / Deep2S+
// --------------------------------------------------------------

namespace {

__global__ void scale_frames_kernel(const float2* y, const float* scales, std::size_t M, std::size_t count,
                                    float2* out) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < count;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const float s = scales[i / M];
    out[i] = make_float2(y[i].x * s, y[i].y * s);
  }
}

__global__ void add_bias_split_kernel(const float2* x, const float2* bias, std::size_t V, std::size_t count,
                                      float* input) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < count;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const std::size_t f = i / V, v = i % V;
    input[(2 * f) * V + v] = x[i].x + bias[v].x;
    input[(2 * f + 1) * V + v] = x[i].y + bias[v].y;
  }
}

}  // namespace

void scale_frames(const float* y, const float* scales, int frames, std::size_t samples, float* out,
                  Stream stream) {
  const std::size_t count = std::size_t(frames) * samples;
  if (count == 0) return;
  scale_frames_kernel<<<blocks_for(count), kThreads, 0, stream>>>(
      reinterpret_cast<const float2*>(y), scales, samples, count, reinterpret_cast<float2*>(out));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void add_bias_split(const float* x, const float* bias, int frames, std::size_t voxels, float* input,
                    Stream stream) {
  const std::size_t count = std::size_t(frames) * voxels;
  if (count == 0) return;
  add_bias_split_kernel<<<blocks_for(count), kThreads, 0, stream>>>(
      reinterpret_cast<const float2*>(x), reinterpret_cast<const float2*>(bias), voxels, count, input);
  NFMIMO_CUDA_CHECK_LAUNCH();
}

}  // namespace nfmimo::nn::gpu
