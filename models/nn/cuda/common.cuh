// What every kernel file of the cuDNN backend shares: launch geometry, loads and stores in the storage
// types, 8-channel packs, activations, and the dispatch from DType to a storage type. Private to
// models/nn/cuda/*.cu (everything is in an anonymous namespace, so each file has its own copy).
//
// Every kernel loads its storage type, computes in float32 and rounds once on store. Elementwise kernels over
// channels-last tensors move 8 channels per thread (16-byte loads in float16/bfloat16) when the channel count
// allows it: these passes are bound by memory bandwidth, and 2-byte loads reach a fraction of it. Reductions
// are deterministic (fixed block partition, fixed-order second stage), so a training step is reproducible on
// one GPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "kernels/cuda_check.hpp"
#include "models/nn/cuda/kernels.hpp"

namespace nfmimo::nn::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 132 * 32;  // grid-stride loops: enough blocks to fill an H200 many times over
constexpr int kReduceChunks = 1024;  // row chunks of the per-channel reductions (partials: chunks x channels)
constexpr int kTile = 32;            // channels per block of the per-channel reductions
constexpr int kLanes = 8;            // row lanes per block of the per-channel reductions

inline int blocks_for(std::size_t work) {
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

struct Geometry5 {
  int n, c, x, y, z;
};
inline __host__ Geometry5 geometry(const Shape& s) { return {s.n, s.c, s.x, s.y, s.z}; }

__device__ __forceinline__ std::size_t offset5(const Geometry5& g, int n, int x, int y, int z, int c) {
  return ((((static_cast<std::size_t>(n) * g.x + x) * g.y + y) * g.z + z) * g.c) + c;
}

}  // namespace

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

}  // namespace nfmimo::nn::gpu
