// Per-sample max normalisation of the learned pipelines (see gpu_normalise.hpp).
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda_check.hpp"
#include "kernels/gpu_normalise.hpp"

namespace nfmimo {
namespace {

constexpr int kThreads = 1024;

// The frame's peak |a| in float (hypotf, as std::abs on the CPU), reduced over the block; max is
// order-independent, so the partition does not change it.
__device__ float block_frame_peak(const float2* __restrict__ frame, std::size_t voxels) {
  __shared__ float warp_max[kThreads / 32];
  float peak = 0.f;
  for (std::size_t v = threadIdx.x; v < voxels; v += blockDim.x)
    peak = fmaxf(peak, hypotf(frame[v].x, frame[v].y));
  for (int off = 16; off > 0; off /= 2) peak = fmaxf(peak, __shfl_xor_sync(0xffffffffu, peak, off));
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = peak;
  __syncthreads();
  if (threadIdx.x < 32) {
    float p = threadIdx.x < blockDim.x / 32 ? warp_max[threadIdx.x] : 0.f;
    for (int off = 16; off > 0; off /= 2) p = fmaxf(p, __shfl_xor_sync(0xffffffffu, p, off));
    if (threadIdx.x == 0) warp_max[0] = p;
  }
  __syncthreads();
  return warp_max[0];
}

// The products in double and one rounding, as the CPU (kernels/normalise.hpp): the kernel is memory-bound, so
// the FP64 multiply costs nothing measurable.
__global__ void __launch_bounds__(kThreads)
    normalise_kernel(const float2* __restrict__ a, float* __restrict__ out, std::size_t voxels,
                     bool complex_channels) {
  const float2* frame = a + blockIdx.x * voxels;
  const double scale = frame_max_scale(block_frame_peak(frame, voxels));
  if (complex_channels) {
    float* re = out + blockIdx.x * 2 * voxels;
    float* im = re + voxels;
    for (std::size_t v = threadIdx.x; v < voxels; v += blockDim.x) {
      const float2 z = frame[v];
      re[v] = scale_to_float(z.x, scale), im[v] = scale_to_float(z.y, scale);
    }
  } else {
    float* m = out + blockIdx.x * voxels;
    for (std::size_t v = threadIdx.x; v < voxels; v += blockDim.x) {
      const float2 z = frame[v];
      m[v] = scale_to_float(hypotf(z.x, z.y), scale);
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    scales_kernel(const float2* __restrict__ a, std::size_t voxels, float* __restrict__ scales) {
  const float peak = block_frame_peak(a + blockIdx.x * voxels, voxels);
  if (threadIdx.x == 0) scales[blockIdx.x] = float(frame_max_scale(peak));
}

__global__ void magnitude_kernel(const float2* __restrict__ in, float* __restrict__ out, std::size_t count) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float2 z = in[i];
    out[i] = hypotf(z.x, z.y);  // as std::abs on the CPU (no overflow for large parts)
  }
}

}  // namespace

void complex_magnitude(const cfloat* d_in, float* d_out, std::size_t count, cudaStream_t stream) {
  if (count == 0) return;
  const int blocks = static_cast<int>(std::min<std::size_t>((count + 255) / 256, 132 * 32));
  magnitude_kernel<<<blocks, 256, 0, stream>>>(reinterpret_cast<const float2*>(d_in), d_out, count);
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void normalise_by_sample_max(const cfloat* d_volumes, float* d_input, int frames, std::size_t voxels,
                             NormaliseMode mode, cudaStream_t stream) {
  if (frames <= 0 || voxels == 0) return;
  normalise_kernel<<<frames, kThreads, 0, stream>>>(reinterpret_cast<const float2*>(d_volumes), d_input,
                                                    voxels, mode == NormaliseMode::Complex);
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void frame_max_scales_device(const cfloat* d_volumes, int frames, std::size_t voxels, float* d_scales,
                             cudaStream_t stream) {
  if (frames <= 0) return;
  scales_kernel<<<frames, kThreads, 0, stream>>>(reinterpret_cast<const float2*>(d_volumes), voxels,
                                                 d_scales);
  NFMIMO_CUDA_CHECK_LAUNCH();
}

}  // namespace nfmimo
