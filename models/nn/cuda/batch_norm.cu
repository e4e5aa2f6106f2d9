// Batch norm (statistics, coefficients, apply, backward) and the per-channel sums of bias gradients.
#include "models/nn/cuda/common.cuh"

namespace nfmimo::nn::gpu {

namespace {

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

}  // namespace

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

}  // namespace nfmimo::nn::gpu
