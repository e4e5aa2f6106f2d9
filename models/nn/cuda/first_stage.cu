// The dense first stage of DeepDI / Deep2S+: per-frame scaling of the measurements, and the bias added while
// splitting the complex volume into the network's two input channels.
#include "models/nn/cuda/common.cuh"

namespace nfmimo::nn::gpu {

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
