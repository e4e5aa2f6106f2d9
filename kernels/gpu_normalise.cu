// Per-sample max normalisation of the learned pipelines (see gpu_normalise.hpp).
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda_check.hpp"
#include "kernels/gpu_normalise.hpp"

namespace nfmimo {
namespace {

constexpr int kThreads = 1024;

// Squared magnitudes are compared (no square root per voxel); the peak's root is taken once. A float |a|^2
// overflows only for |a| > 1.8e19, far beyond any adjoint of normalised measurements.
__global__ void __launch_bounds__(kThreads)
    normalise_kernel(const float2* __restrict__ a, float* __restrict__ out, std::size_t voxels,
                     bool complex_channels) {
  __shared__ float warp_max[kThreads / 32];
  const float2* frame = a + blockIdx.x * voxels;
  float peak = 0.f;
  for (std::size_t v = threadIdx.x; v < voxels; v += blockDim.x) {
    const float2 z = frame[v];
    peak = fmaxf(peak, z.x * z.x + z.y * z.y);
  }
  for (int off = 16; off > 0; off /= 2) peak = fmaxf(peak, __shfl_xor_sync(0xffffffffu, peak, off));
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = peak;
  __syncthreads();
  if (threadIdx.x < 32) {
    float p = threadIdx.x < blockDim.x / 32 ? warp_max[threadIdx.x] : 0.f;
    for (int off = 16; off > 0; off /= 2) p = fmaxf(p, __shfl_xor_sync(0xffffffffu, p, off));
    if (threadIdx.x == 0) warp_max[0] = p;
  }
  __syncthreads();
  const float scale = warp_max[0] > 0.f ? 1.f / sqrtf(warp_max[0]) : 1.f;
  if (complex_channels) {
    float* re = out + blockIdx.x * 2 * voxels;
    float* im = re + voxels;
    for (std::size_t v = threadIdx.x; v < voxels; v += blockDim.x) {
      const float2 z = frame[v];
      re[v] = z.x * scale, im[v] = z.y * scale;
    }
  } else {
    float* m = out + blockIdx.x * voxels;
    for (std::size_t v = threadIdx.x; v < voxels; v += blockDim.x) {
      const float2 z = frame[v];
      m[v] = sqrtf(z.x * z.x + z.y * z.y) * scale;
    }
  }
}

__global__ void magnitude_kernel(const float2* __restrict__ in, float* __restrict__ out, std::size_t count) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float2 z = in[i];
    out[i] = hypotf(z.x, z.y);  // as std::abs on the CPU (no overflow for large parts)
  }
}

}  // namespace

void complex_magnitude(const cfloat* d_in, float* d_out, std::size_t count, CUstream_st* stream) {
  if (count == 0) return;
  const int blocks = static_cast<int>(std::min<std::size_t>((count + 255) / 256, 132 * 32));
  magnitude_kernel<<<blocks, 256, 0, stream>>>(reinterpret_cast<const float2*>(d_in), d_out, count);
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void normalise_by_sample_max(const cfloat* d_volumes, float* d_input, int frames, std::size_t voxels,
                             NormaliseMode mode, CUstream_st* stream) {
  if (frames <= 0 || voxels == 0) return;
  normalise_kernel<<<frames, kThreads, 0, stream>>>(reinterpret_cast<const float2*>(d_volumes), d_input,
                                                    voxels, mode == NormaliseMode::Complex);
  NFMIMO_CUDA_CHECK_LAUNCH();
}

}  // namespace nfmimo
