// Direct convolution kernels for the thin convolutions (one input or one output channel; the rule is in
// models/nn/cuda/thin_conv.hpp, the contract in kernels.hpp).
//
// Written to be plainly the reference's loops (models/nn/reference.cpp) on the channels-last layouts, with
// the per-element sums in thin_conv_math.hpp (checked on the host by tests/test_preflight.cpp): one
// thread per output element (forward) or per input element (backward data, a gather, so no atomics), and
// for the filter gradient a fixed partition of the output voxels into chunks, float partial sums per chunk
// and a fixed-order sum of the chunks, so that every result is reproducible run to run. All arithmetic is
// float32 (fmaf), whatever the storage type: never TF32, never a 16-bit accumulator.
#include "models/nn/cuda/common.cuh"
#include "models/nn/cuda/thin_conv_math.hpp"

namespace nfmimo::nn::gpu {

namespace {

thin::Geometry device_geometry(const ThinConv& g) {
  const auto dims = [](const Shape& s) { return thin::Dims{s.n, s.c, s.x, s.y, s.z}; };
  return {dims(g.in),  dims(g.out), g.kernel[0], g.kernel[1], g.kernel[2], g.stride[0],
          g.stride[1], g.stride[2], g.pad_lo[0], g.pad_lo[1], g.pad_lo[2]};
}

// Storage-type loads as the callables thin_conv_math.hpp takes.
template <class T>
struct Loader {
  const T* p;
  __device__ __forceinline__ float operator()(std::size_t i) const { return load<T>(p, i); }
};

template <class T>
__global__ void thin_conv_forward_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                         const float* __restrict__ bias, T* __restrict__ y, thin::Geometry g,
                                         Act act) {
  const std::size_t count = thin::rows(g.out) * g.out.c;
  NFMIMO_GRID_STRIDE(e, count) {
    const float start = bias ? bias[e % g.out.c] : 0.f;
    y[e] = from_float<T>(apply_act(thin::forward_element(g, e, Loader<T>{x}, Loader<T>{w}, start), act));
  }
}

template <class T>
__global__ void thin_conv_backward_data_kernel(const T* __restrict__ dy, const T* __restrict__ w, T* dx,
                                               thin::Geometry g, bool accumulate) {
  const std::size_t count = thin::rows(g.in) * g.in.c;
  NFMIMO_GRID_STRIDE(e, count) {
    float sum = thin::backward_data_element(g, e, Loader<T>{dy}, Loader<T>{w});
    if (accumulate) sum += load<T>(dx, e);
    dx[e] = from_float<T>(sum);
  }
}

// Block b sums every weight over chunk b of the partition (thin::filter_partition) into partial[b, weight];
// the row lanes' sums meet in shared memory and lane 0 adds them in lane order.
template <class T>
__global__ void thin_conv_filter_partial_kernel(const T* __restrict__ x, const T* __restrict__ dy,
                                                float* __restrict__ partial, thin::Geometry g,
                                                thin::FilterPartition part) {
  __shared__ float lane_sums[thin::kFilterThreads];
  const int W = thin::filter_weights(g);
  const std::size_t rows = thin::rows(g.out);
  const std::size_t r0 = thin::chunk_begin(rows, part.chunks, blockIdx.x),
                    r1 = thin::chunk_begin(rows, part.chunks, blockIdx.x + 1);
  const int width = part.width, lanes = part.lanes;
  const int lane = static_cast<int>(threadIdx.x) / width, column = static_cast<int>(threadIdx.x) % width;
  for (int first = 0; first < W; first += width) {
    const int weight = first + column;
    float sum = 0.f;
    if (lane < lanes && weight < W)
      sum = thin::filter_sum(g, weight, r0 + lane, r1, lanes, Loader<T>{x}, Loader<T>{dy});
    lane_sums[threadIdx.x] = sum;
    __syncthreads();
    if (lane == 0 && weight < W) {
      float total = 0.f;
      for (int m = 0; m < lanes; ++m) total += lane_sums[m * width + column];
      partial[static_cast<std::size_t>(blockIdx.x) * W + weight] = total;
    }
    __syncthreads();
  }
}

// dw[weight] = sum over chunks, in chunk order.
template <class T>
__global__ void thin_conv_filter_finish_kernel(const float* __restrict__ partial, T* __restrict__ dw, int W,
                                               int chunks) {
  NFMIMO_GRID_STRIDE(weight, static_cast<std::size_t>(W)) {
    float total = 0.f;
    for (int b = 0; b < chunks; ++b) total += partial[static_cast<std::size_t>(b) * W + weight];
    dw[weight] = from_float<T>(total);
  }
}

}  // namespace

void thin_conv_forward(DType t, const ThinConv& g, const void* x, const void* w, const float* bias, void* y,
                       Act act, Stream stream) {
  const std::size_t count = g.out.elements();
  if (count == 0) return;
  NFMIMO_DISPATCH(t, thin_conv_forward_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                         static_cast<const T*>(x), static_cast<const T*>(w), bias, static_cast<T*>(y),
                         device_geometry(g), act));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

void thin_conv_backward_data(DType t, const ThinConv& g, const void* dy, const void* w, void* dx,
                             bool accumulate, Stream stream) {
  const std::size_t count = g.in.elements();
  if (count == 0) return;
  NFMIMO_DISPATCH(t, thin_conv_backward_data_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                         static_cast<const T*>(dy), static_cast<const T*>(w), static_cast<T*>(dx),
                         device_geometry(g), accumulate));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

std::size_t thin_conv_filter_scratch(const ThinConv& g) {
  return static_cast<std::size_t>(thin::kFilterChunks) * thin::filter_weights(device_geometry(g));
}

void thin_conv_backward_filter(DType t, const ThinConv& g, const void* x, const void* dy, void* dw,
                               float* scratch, Stream stream) {
  const thin::Geometry geometry = device_geometry(g);
  const int W = thin::filter_weights(geometry);
  if (W == 0) return;
  if (thin::rows(geometry.out) == 0) {
    NFMIMO_CUDA_CHECK(cudaMemsetAsync(dw, 0, std::size_t(W) * dtype_size(t), stream));
    return;
  }
  const thin::FilterPartition part = thin::filter_partition(geometry);
  NFMIMO_DISPATCH(t, thin_conv_filter_partial_kernel<T><<<part.chunks, thin::kFilterThreads, 0, stream>>>(
                         static_cast<const T*>(x), static_cast<const T*>(dy), scratch, geometry, part));
  NFMIMO_CUDA_CHECK_LAUNCH();
  NFMIMO_DISPATCH(t, thin_conv_filter_finish_kernel<T><<<blocks_for(std::size_t(W)), kThreads, 0, stream>>>(
                         scratch, static_cast<T*>(dw), W, part.chunks));
  NFMIMO_CUDA_CHECK_LAUNCH();
}

}  // namespace nfmimo::nn::gpu
