#include "models/learned/complex_dense.hpp"

#include <Eigen/Dense>

#include <cmath>

#include <fmt/format.h>

#include "radar/error.hpp"
#include "radar/physics.hpp"
#include "radar/random.hpp"

namespace nfmimo::nn {
namespace {

using RowMatrix = Eigen::Matrix<cfloat, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Each frame's measurements times its scale, as an [n, M] matrix.
RowMatrix scaled_inputs(const cfloat* y, int n, int M, const float* scale) {
  RowMatrix Y = Eigen::Map<const RowMatrix>(y, n, M);
  if (scale)
    for (int i = 0; i < n; ++i) Y.row(i) *= scale[i];
  return Y;
}

}  // namespace

ComplexDense::ComplexDense(int inputs, int outputs)
    : inputs_(inputs), outputs_(outputs), w_(std::size_t(inputs) * outputs), b_(std::size_t(outputs)) {
  require(inputs > 0 && outputs > 0,
          fmt::format("a dense layer needs positive sizes (got {} x {})", outputs, inputs));
}

ComplexDense ComplexDense::adjoint(const RadarSystem& s, const ImagingGrid& g) {
  validate_system(s, "system");
  validate_grid(g, s, "grid");
  const int K = s.frequencies(), T = s.transmitters(), R = s.receivers();
  const int M = static_cast<int>(s.samples_per_frame()), V = static_cast<int>(g.voxels());
  ComplexDense layer(M, V);
#pragma omp parallel for schedule(static)
  for (int v = 0; v < V; ++v) {
    const int iz = v % g.z().size, iy = (v / g.z().size) % g.y().size, ix = v / (g.z().size * g.y().size);
    const double px = g.x()[ix], py = g.y()[iy], pz = g.z()[iz];
    std::vector<cdouble> et(T), er(R);
    for (int k = 0; k < K; ++k) {
      const double kappa = wavenumber(s.sweep[k]);
      // conj(A[(k,t,r), v]) = exp(+j kappa (Rt + Rr)) / (4 pi Rt Rr), factorised per antenna, in double.
      for (int t = 0; t < T; ++t) {
        const Vec3& a = s.array.tx()[t];
        const double rt = std::hypot(px - a.x, py - a.y, pz - a.z);
        et[t] = std::polar(1.0 / (4.0 * kPi * rt), reduce_phase(kappa * rt));
      }
      for (int r = 0; r < R; ++r) {
        const Vec3& a = s.array.rx()[r];
        const double rr = std::hypot(px - a.x, py - a.y, pz - a.z);
        er[r] = std::polar(1.0 / rr, reduce_phase(kappa * rr));
      }
      cfloat* row = &layer.w_[std::size_t(v) * M + std::size_t(k) * T * R];
      for (int t = 0; t < T; ++t)
        for (int r = 0; r < R; ++r) row[t * R + r] = cfloat(et[t] * er[r]);
    }
  }
  return layer;
}

ComplexDense ComplexDense::random(int inputs, int outputs, std::uint64_t seed) {
  ComplexDense layer(inputs, outputs);
  const RandomStream rng(seed, 0xDE45E);
  const double sigma = std::sqrt(0.5 / inputs);  // complex variance 1 / inputs
  for (std::size_t i = 0; i < layer.w_.size(); ++i) {
    double a, b;
    rng.normal2(i, &a, &b);
    layer.w_[i] = cfloat(static_cast<float>(sigma * a), static_cast<float>(sigma * b));
  }
  return layer;
}

void ComplexDense::forward(const cfloat* y, int n, float* out, const float* scale) const {
  complex_dense_forward(w_.data(), b_.data(), inputs_, outputs_, y, n, out, scale);
}

void ComplexDense::backward(const cfloat* y, int n, const float* grad_out, cfloat* grad_w, cfloat* grad_b,
                            const float* scale) const {
  complex_dense_backward(inputs_, outputs_, y, n, grad_out, grad_w, grad_b, scale);
}

void complex_dense_forward(const cfloat* w, const cfloat* bias, int inputs, int outputs, const cfloat* y,
                           int n, float* out, const float* scale) {
  const RowMatrix Y = scaled_inputs(y, n, inputs, scale);
  const Eigen::Map<const RowMatrix> W(w, outputs, inputs);
  const RowMatrix X = Y * W.transpose();  // [n, V]: one complex GEMM streams W once per batch
  for (int i = 0; i < n; ++i) {
    float* re = out + std::size_t(i) * 2 * outputs;
    float* im = re + outputs;
    for (int v = 0; v < outputs; ++v) {
      const cfloat x = X(i, v) + bias[v];
      re[v] = x.real();
      im[v] = x.imag();
    }
  }
}

void complex_dense_backward(int inputs, int outputs, const cfloat* y, int n, const float* grad_out,
                            cfloat* grad_w, cfloat* grad_b, const float* scale) {
  const RowMatrix Y = scaled_inputs(y, n, inputs, scale);
  RowMatrix G(n, outputs);
  for (int i = 0; i < n; ++i) {
    const float* gr = grad_out + std::size_t(i) * 2 * outputs;
    const float* gi = gr + outputs;
    for (int v = 0; v < outputs; ++v) G(i, v) = cfloat(gr[v], gi[v]);
  }
  Eigen::Map<RowMatrix> GW(grad_w, outputs, inputs);
  GW.noalias() += G.transpose() * Y.conjugate();  // dL/dW = g conj(y), summed over the batch
  for (int v = 0; v < outputs; ++v) grad_b[v] += G.col(v).sum();
}

void complex_dense_forward_reference(const ComplexDense& layer, const cfloat* y, int n, double* out,
                                     const float* scale) {
  const int M = layer.inputs(), V = layer.outputs();
  for (int i = 0; i < n; ++i)
    for (int v = 0; v < V; ++v) {
      cdouble x = cdouble(layer.bias()[v]);
      for (int m = 0; m < M; ++m)
        x += cdouble(layer.weights()[std::size_t(v) * M + m]) * cdouble(y[std::size_t(i) * M + m]) *
             (scale ? double(scale[i]) : 1.0);
      out[(std::size_t(i) * 2) * V + v] = x.real();
      out[(std::size_t(i) * 2 + 1) * V + v] = x.imag();
    }
}

void complex_dense_backward_reference(const ComplexDense& layer, const cfloat* y, int n,
                                      const double* grad_out, cdouble* grad_w, cdouble* grad_b,
                                      const float* scale) {
  const int M = layer.inputs(), V = layer.outputs();
  for (int i = 0; i < n; ++i)
    for (int v = 0; v < V; ++v) {
      const cdouble g(grad_out[(std::size_t(i) * 2) * V + v], grad_out[(std::size_t(i) * 2 + 1) * V + v]);
      grad_b[v] += g;
      for (int m = 0; m < M; ++m)
        grad_w[std::size_t(v) * M + m] +=
            g * std::conj(cdouble(y[std::size_t(i) * M + m]) * (scale ? double(scale[i]) : 1.0));
    }
}

}  // namespace nfmimo::nn
