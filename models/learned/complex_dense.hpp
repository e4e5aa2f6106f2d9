// The learned first stage of DeepDI and Deep2S+: a fully connected complex layer from the measurements of one
// frame (M = K*T*R complex values) to a complex volume on the grid (V values), returned as two real channels
// [Re, Im] for the complex-valued U-Net:
//
//   x[n, v] = sum_m W[v, m] y[n, m] + b[v],     W complex [V, M] (row-major), b complex [V]
//
// Deep2S+ initialises W to the adjoint A^H (so it starts from the physics) and b to 0; DeepDI starts from
// random weights. For K=15 on the paper grid W has 2340 x 30625 complex weights (573 MB): on the CPU it is
// applied with a multithreaded complex GEMM that streams it once per batch; on the GPU it is one cuBLAS GEMM.
//
// Gradients follow the real-parameter convention used by every optimizer here: for a real loss L and
// g = dL/dRe(x) + j dL/dIm(x), the gradient with respect to (Re W, Im W) packed as a complex number is
// dL/dRe(W) + j dL/dIm(W) = g conj(y), and likewise dL/db = g.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "radar/complex.hpp"
#include "radar/system.hpp"

namespace nfmimo::nn {

class ComplexDense {
 public:
  ComplexDense() = default;
  ComplexDense(int inputs, int outputs);  // zero weights

  // W = A^H of the Born model for this system and grid, computed in double and rounded to float; b = 0.
  static ComplexDense adjoint(const RadarSystem& system, const ImagingGrid& grid);
  // W with independent complex Gaussian entries of variance 1 / inputs (Glorot-like for a linear complex
  // map), b = 0; reproducible from `seed`.
  static ComplexDense random(int inputs, int outputs, std::uint64_t seed);

  int inputs() const { return inputs_; }
  int outputs() const { return outputs_; }
  std::vector<cfloat>& weights() { return w_; }  // [outputs][inputs]
  const std::vector<cfloat>& weights() const { return w_; }
  std::vector<cfloat>& bias() { return b_; }
  const std::vector<cfloat>& bias() const { return b_; }

  // out [n, 2, outputs]: channel 0 = Re x, channel 1 = Im x. `scale[n]` (optional) multiplies each frame's
  // input first (the fixed per-frame input normalisation).
  void forward(const cfloat* y, int n, float* out, const float* scale = nullptr) const;
  // Accumulates into grad_w [outputs][inputs] and grad_b [outputs] (complex-packed real gradients, see above)
  // from grad_out [n, 2, outputs], for the inputs of the matching forward call.
  void backward(const cfloat* y, int n, const float* grad_out, cfloat* grad_w, cfloat* grad_b,
                const float* scale = nullptr) const;

 private:
  int inputs_ = 0, outputs_ = 0;
  std::vector<cfloat> w_, b_;
};

// The same computations on weights held elsewhere (a training backend's master parameters or a model's
// parameter tensors, so that the 573 MB matrix of K=15 exists once): w [outputs][inputs], b [outputs].
void complex_dense_forward(const cfloat* w, const cfloat* b, int inputs, int outputs, const cfloat* y, int n,
                           float* out, const float* scale = nullptr);
void complex_dense_backward(int inputs, int outputs, const cfloat* y, int n, const float* grad_out,
                            cfloat* grad_w, cfloat* grad_b, const float* scale = nullptr);

// Double-precision references (obvious loops) for tests.
void complex_dense_forward_reference(const ComplexDense& layer, const cfloat* y, int n, double* out,
                                     const float* scale = nullptr);
void complex_dense_backward_reference(const ComplexDense& layer, const cfloat* y, int n,
                                      const double* grad_out, cdouble* grad_w, cdouble* grad_b,
                                      const float* scale = nullptr);

}  // namespace nfmimo::nn
