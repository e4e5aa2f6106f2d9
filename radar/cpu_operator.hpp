// Fast float implementation of the physics operators on the CPU (multithreaded, 8-lane vectorised).
//
// The plan precomputes, once per (system, grid), the unit phasors exp(+j kappa_k R_a(v)) for every frequency
// k, antenna a and voxel v, in double precision rounded to float, laid out in blocks of 8 voxels so that each
// block's data is contiguous. Executing the plan allocates only per-call scratch. Memory: 8 bytes per
// (k, antenna, voxel): 92 MB for the paper system at K=15.
#pragma once

#include <cstddef>
#include <vector>

#include "radar/aligned.hpp"
#include "radar/complex.hpp"
#include "radar/physics.hpp"
#include "radar/system.hpp"

namespace nfmimo {

// Parameters of the fast adjoint mode (range compression by a zero-padded inverse DFT of each TX/RX pair's
// frequency samples, then cubic Lagrange interpolation at Rt + Rr). See docs/physics.md.
struct FastModeParams {
  int profile_length = 0;  // M, samples per range profile (power of two)
  int center_index = 0;    // kc: the profile is computed for frequency offsets k - kc (keeps |offset| small)
  double center_wavenumber = 0;
  double samples_per_metre = 0;  // M * df / c: fractional profile index per metre of Rt + Rr
};
// M = next power of two >= oversampling * K; requires a uniform sweep (throws InputError otherwise).
FastModeParams fast_mode_params(const RadarSystem& system, int oversampling = 16);

// Cubic (4-point) Lagrange weights for sample offsets -1, 0, 1, 2 at fractional position f in [0, 1).
NFMIMO_HD void cubic_lagrange_weights(float f, float w[4]) {
  const float fm1 = f - 1.0f, fm2 = f - 2.0f, fp1 = f + 1.0f;
  w[0] = -f * fm1 * fm2 * (1.0f / 6.0f);
  w[1] = fp1 * fm1 * fm2 * 0.5f;
  w[2] = -fp1 * f * fm2 * 0.5f;
  w[3] = fp1 * f * fm1 * (1.0f / 6.0f);
}

class CpuOperator {
 public:
  static constexpr int kLanes = 8;

  CpuOperator(RadarSystem system, ImagingGrid grid);

  const RadarSystem& system() const { return system_; }
  const ImagingGrid& grid() const { return grid_; }

  // y [batch, K, T, R] = A x, x [batch, V].
  void forward(const cfloat* x, cfloat* y, int batch) const;
  // x [batch, V] = W y for the method (exact: every term evaluated).
  void image(Method method, const cfloat* y, cfloat* x, int batch) const;
  // The fast FFT-mode adjoint / backprojection (uniform sweeps only; Kirchhoff is refused). Same algorithm as
  // the CUDA fast mode, so it is also the reference that the GPU fast mode is tested against.
  void image_fast(Method method, const cfloat* y, cfloat* x, int batch, int oversampling = 16) const;

 private:
  int antennas() const { return system_.transmitters() + system_.receivers(); }

  RadarSystem system_;
  ImagingGrid grid_;
  std::size_t blocks_ = 0;
  // Per block b, antenna a (TX first, then RX), lane: range and dz = z_v - z_a, in double.
  std::vector<double> range_, dz_;
  // Per block b, frequency k, antenna a: 8 real parts then 8 imaginary parts of exp(+j kappa_k R).
  aligned_vector<float> phasor_;
  // Uniform sweeps: per block b, antenna a, the same layout of exp(+j dkappa R), so that image() steps from
  // one frequency's phasor to the next (kSeedEvery below) instead of streaming the whole table.
  aligned_vector<float> phasor_step_;
};

}  // namespace nfmimo
