// The on-device training step: loss and its gradient, gradient norm and clipping decision, Adam.
#include "models/nn/cuda/common.cuh"

namespace nfmimo::nn::gpu {

namespace {

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

}  // namespace nfmimo::nn::gpu
