// The small CUDA kernels of the cuDNN network backend (one file per concern in models/nn/cuda/: layouts,
// elementwise, pooling, structure, batch_norm, thin_conv, dense, training_step, first_stage), behind plain
// C++ declarations so that the host code that plans and drives them (network.cpp, training/gpu_backend.cpp)
// compiles without nvcc. Internal to models/: only the backend includes it.
//
// Activations inside the backend are channels-last ([n, x, y, z, c], c fastest; NDHWC with D = x) in the
// compute storage type (float32, float16 or bfloat16); every kernel computes in float32 and rounds once when
// it stores. `rows` counts voxels (n * x * y * z); a tensor holds rows * c elements. "accumulate" kernels add
// into their output (gradients of values read by several ops) instead of overwriting it.
#pragma once

#include <cstddef>

#include "models/nn/graph.hpp"
#include "kernels/device_buffer.hpp"

namespace nfmimo::nn::gpu {

using Stream = cudaStream_t;

enum class DType { F32, F16, BF16 };
std::size_t dtype_size(DType t);

enum class Act { None, ReLU, Sigmoid };

// Layout changes at the backend boundary: logical float [n, c, x, y, z] <-> internal [n, x, y, z, c].
// to_internal multiplies by `scale` (the loss scale of mixed-precision backward; 1 otherwise).
void to_internal(DType t, const float* in, void* out, const Shape& s, float scale, Stream stream);
void from_internal(DType t, const void* in, float* out, const Shape& s, Stream stream);

// y = act(y + bias) in place (bias float [c], may be null).
void bias_activation(DType t, void* y, const float* bias, std::size_t rows, int c, Act act, Stream stream);
// y = act(x) elementwise.
void activation(DType t, const void* x, void* y, std::size_t count, Act act, Stream stream);
// dx (+)= dy * act'(from the op's output y).
void activation_backward(DType t, const void* y, const void* dy, void* dx, std::size_t count, Act act,
                         bool accumulate, Stream stream);
// y = a + b.
void add(DType t, const void* a, const void* b, void* y, std::size_t count, Stream stream);
// dx (+)= dy (also the gradient copy of Add's inputs).
void pass_gradient(DType t, const void* dy, void* dx, std::size_t count, bool accumulate, Stream stream);

// Max pooling (any kernel and stride). Backward recomputes each window's first maximum (the CPU backends'
// tie rule) instead of storing an argmax.
void max_pool(DType t, const void* x, void* y, const Shape& in, const Shape& out, Triple kernel,
              Triple stride, Stream stream);
void max_pool_backward(DType t, const void* x, const void* y, const void* dy, void* dx, const Shape& in,
                       const Shape& out, Triple kernel, Triple stride, bool accumulate, Stream stream);

// y[r] = [a[r] (ca channels), b[r] (cb channels)].
void concat(DType t, const void* a, int ca, const void* b, int cb, void* y, std::size_t rows, Stream stream);
// Splits dy into da / db (each may be null when not needed).
void concat_backward(DType t, const void* dy, void* da, int ca, bool accumulate_a, void* db, int cb,
                     bool accumulate_b, std::size_t rows, Stream stream);

// out[n, p, c] = in[n, p + offset, c] where that is inside `in`, else 0 (Crop: offset = +lo; ZeroPad:
// offset = -lo). Backward is the same map with the roles swapped (accumulating when asked).
void shift_copy(DType t, const void* in, const Shape& in_shape, void* out, const Shape& out_shape,
                Triple offset, bool accumulate, Stream stream);

// out[c] (+)= scale * sum over rows of x[r, c] (bias gradients), float accumulation per block, a
// deterministic fixed-order second stage. `scratch` holds at least channel_sum_scratch(c) floats.
std::size_t channel_sum_scratch(int c);
void channel_sum(DType t, const void* x, std::size_t rows, int c, float* out, bool accumulate, float* scratch,
                 Stream stream);

// ---- batch norm (training) -----------------------------------------------------------------------
// Statistics in one read of x: each block forms per-channel (count, mean, M2) of its rows in float (Welford),
// and a second kernel merges the blocks in double (Chan et al.) in a fixed order. `scratch` holds at least
// bn_scratch(c) floats.
std::size_t bn_scratch(int c);
struct BatchNormTrainingArgs {
  const float* gamma;
  const float* beta;
  const float* pending_bias;  // a preceding convolution's bias not added to x (shifts the running mean only)
  float* running_mean;
  float* running_var;
  double momentum, epsilon;
  float* mean;     // [c] batch mean of x (without the pending bias)
  float* inv_std;  // [c]
  float* scale;    // [c] gamma * inv_std
  float* shift;    // [c] beta - mean * scale
};
void bn_statistics(DType t, const void* x, std::size_t rows, int c, const BatchNormTrainingArgs& args,
                   float* scratch, Stream stream);
// Inference coefficients from the running statistics: scale = gamma / sqrt(var + eps),
// shift = beta - (mean - pending_bias) * scale (pending_bias may be null).
void bn_inference_coefficients(const float* gamma, const float* beta, const float* running_mean,
                               const float* running_var, const float* pending_bias, double epsilon, int c,
                               float* scale, float* shift, Stream stream);
// y = x * scale + shift, then ReLU when `relu`.
void bn_apply(DType t, const void* x, void* y, std::size_t rows, int c, const float* scale,
              const float* shift, bool relu, Stream stream);
// Backward of y = [relu](bn(x)) with batch statistics: g = dy (masked by y > 0 when relu);
// dgamma = sum g xhat, dbeta = sum g (overwritten), dx (+)= scale (g - mean(g) - xhat mean(g xhat)).
void bn_backward(DType t, const void* x, const void* y, const void* dy, void* dx, std::size_t rows, int c,
                 bool relu, const float* mean, const float* inv_std, const float* scale, float* dgamma,
                 float* dbeta, bool accumulate, float* scratch, Stream stream);

// ---- thin convolutions (one input or one output channel; models/nn/cuda/thin_conv.hpp says which) ---
// Direct kernels, cross-correlation as the reference defines it (models/nn/reference.cpp): x [n, X, Y, Z, C]
// (in.c = C), y [n, X', Y', Z', K] (out.c = K), filter [K, kx, ky, kz, C] in the compute type (the
// backend's filter layout): y[n, p, k] = sum_{t, c} w[k, t, c] x[n, p * stride - pad_lo + t, c], zeros
// outside x (any padding, symmetric or not). float32 accumulation (FMA, never TF32), one rounding on
// store. Correct for any channel counts; fast enough only for thin ones.
struct ThinConv {
  Shape in, out;
  Triple kernel, stride, pad_lo;
};
// y = act(conv(x) + bias): bias float [K] (may be null), the epilogue in float before the single rounding.
void thin_conv_forward(DType t, const ThinConv& g, const void* x, const void* w, const float* bias, void* y,
                       Act act, Stream stream);
// dx (+)= conv^T(dy): one thread per input element gathers the outputs whose windows hold it (deterministic).
void thin_conv_backward_data(DType t, const ThinConv& g, const void* dy, const void* w, void* dx,
                             bool accumulate, Stream stream);
// dw = sum over n and output voxels of dy x (compute type, overwritten): per-block float partial sums over
// fixed row chunks, then a fixed-order sum of the chunks (deterministic). `scratch` holds at least
// thin_conv_filter_scratch(g) floats.
std::size_t thin_conv_filter_scratch(const ThinConv& g);
void thin_conv_backward_filter(DType t, const ThinConv& g, const void* x, const void* dy, void* dw,
                               float* scratch, Stream stream);

// ---- dense ---------------------------------------------------------------------------------------
// y[n, o] = sum_f w[o, f] x[n, f] + b[o]; w in the compute type, features in the internal (channels-last)
// order.
void dense_forward(DType t, const void* x, const void* w, const float* bias, void* y, int n, int features,
                   int outputs, Stream stream);
// dx (+)= dy w; dw = dy^T x (compute type, overwritten); db = sum dy (float, overwritten; may be null).
void dense_backward(DType t, const void* x, const void* w, const void* dy, void* dx, bool accumulate,
                    void* dw, float* db, int n, int features, int outputs, Stream stream);

// ---- parameters ----------------------------------------------------------------------------------
// out[i] = (compute type) in[i], and back.
void cast_from_float(DType t, const float* in, void* out, std::size_t count, Stream stream);
void cast_to_float(DType t, const void* in, float* out, std::size_t count, Stream stream);
void fill_zero(void* p, std::size_t bytes, Stream stream);

// ---- training step (device-resident: no host synchronisation) ------------------------------------
// Scalars of the optimisation step, kept in device memory; the host reads them back lazily.
struct StepScalars {
  double loss_sum;      // sum over elements of the loss terms of the last step
  double loss;          // mean loss of the last step
  double grad_sq;       // squared global 2-norm of the (unscaled) gradients of the last step
  float loss_scale;     // fp16: the dynamic loss scale; 1 otherwise
  int good_steps;       // fp16: finite steps since the scale last changed
  int finite;           // the last step's loss and gradients were finite (update applied)
  int reported_finite;  // what StepResult::finite says (an fp16 overflow skipped by loss scaling is not a
                        // failure)
  int skipped;          // total steps skipped (non-finite)
  float clip_factor;    // min(1, clip_norm / norm)
  long long step;       // Adam's step count (updates applied)
  float bias_correction1, bias_correction2;  // 1 / (1 - beta^step)
};

enum class LossType { Mse, L1 };
// Elementwise loss of float output y against target t (count elements): d = d(mean loss)/dy * loss_scale into
// `grad`; partial sums into scratch; then the mean into scalars->loss / loss_sum. scratch: loss_scratch()
// floats.
std::size_t loss_scratch();
void loss_and_gradient(LossType type, const float* y, const float* target, float* grad, std::size_t count,
                       StepScalars* scalars, float* scratch, Stream stream);

// Unscales the gradients (compute-type weight gradients [0, weight_count) converted into the float buffer;
// float gradients [weight_count, count) in place), forms the squared global norm and the finiteness flag,
// then decides the step: clip factor, fp16 loss-scale update, Adam's step count and bias corrections.
// scratch: grad_scratch() floats.
std::size_t grad_scratch();
struct StepSettings {
  double beta1, beta2, clip_norm;
  bool dynamic_loss_scale;
  int growth_interval;
};
void finish_gradients(DType t, const void* weight_grads, float* grads, std::size_t weight_count,
                      std::size_t count, const StepSettings& settings, StepScalars* scalars, float* scratch,
                      Stream stream);

// Fused Adam / AdamW on float32 master parameters (skipped when the step is not finite): decoupled weight
// decay on [0, decay_count), and the compute-type copy of [0, cast_count) refreshed when `compute` is not
// null.
struct AdamArgs {
  double learning_rate, beta1, beta2, epsilon, weight_decay;
};
void adam_update(float* params, float* m, float* v, const float* grads, std::size_t count,
                 std::size_t decay_count, DType t, void* compute, std::size_t cast_count,
                 const AdamArgs& args, const StepScalars* scalars, Stream stream);

// ---- the dense first stage of DeepDI / Deep2S+ (models/learned/composite.hpp)
// --------------------------------------- cfloat arrays are passed as float pairs ([Re, Im], the layout of
// std::complex<float> and cuComplex).

// The scales s[f] come from frame_max_scales_device (kernels/gpu_normalise.hpp).
// out[f, m] = y[f, m] * scales[f]: [frames, M] complex.
void scale_frames(const float* y, const float* scales, int frames, std::size_t samples, float* out,
                  Stream stream);
// input[f, 0, v] = Re(x[f, v] + b[v]), input[f, 1, v] = Im(x[f, v] + b[v]): x [frames, V] complex, b [V]
// complex.
void add_bias_split(const float* x, const float* bias, int frames, std::size_t voxels, float* input,
                    Stream stream);

}  // namespace nfmimo::nn::gpu
