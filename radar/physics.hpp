// Formulas shared by the CPU and CUDA implementations, so that both compute exactly the same thing.
//
// Born forward model (paper eq. 1, with the free-space Green's function on both paths):
//   y[k,t,r] = sum_v x[v] exp(-j kappa_k (Rt(v) + Rr(v))) / (4 pi Rt(v) Rr(v)),   kappa_k = 2 pi f_k / c.
// Every imaging method of the foundation is a weighted backprojection
//   x[v] = sum_{k,t,r} y[k,t,r] W_k(t,r,v) exp(+j kappa_k (Rt + Rr))
// whose weight factorises into a transmitter and a receiver part, W = g_tx(k,Rt,dzt) g_rx(k,Rr,dzr):
//   adjoint (A^H):   g_tx = 1 / (4 pi Rt),             g_rx = 1 / Rr
//   backprojection:  g_tx = 1,                          g_rx = 1
//   Kirchhoff:       g   = (dR/dz) (1 + j kappa R) / R  (both sides), because
//                    4 (dRr/dz)(dRt/dz)((j kappa)^2 Rr Rt + j kappa (Rr+Rt) + 1) / (4 Rr Rt)
//                    = [(dRt/dz)(1 + j kappa Rt)/Rt] [(dRr/dz)(1 + j kappa Rr)/Rr],  dR/dz = (z_v - z_a)/R.
// Each gain has the form c0 + j kappa c1 with real c0, c1 depending on (R, dz) only.
#pragma once

#if defined(__CUDACC__)
#define NFMIMO_HD __host__ __device__ inline
#else
#define NFMIMO_HD inline
#endif

namespace nfmimo {

inline constexpr double kSpeedOfLight = 299792458.0;  // m/s
inline constexpr double kPi = 3.14159265358979323846;
inline constexpr double kTwoPi = 2.0 * kPi;

enum class Method : int { Adjoint = 0, Backprojection = 1, Kirchhoff = 2 };
// Exact: every (k, t, r) term evaluated. Fast: range compression with a zero-padded inverse FFT per TX/RX
// pair and interpolation at Rt + Rr (uniform sweeps; adjoint and backprojection).
enum class ImagingMode : int { Exact = 0, Fast = 1 };

// Wavenumber kappa = 2 pi f / c in rad/m.
NFMIMO_HD double wavenumber(double frequency_hz) { return kTwoPi * frequency_hz / kSpeedOfLight; }

// Gain of one antenna's side of the imaging weight: g = c0 + j kappa c1 (see the header comment).
// `transmitter` selects which side carries the 1/(4 pi) of the adjoint.
struct SideGain {
  double c0;
  double c1;
};

NFMIMO_HD SideGain side_gain(Method method, bool transmitter, double range, double dz) {
  switch (method) {
    case Method::Adjoint:
      return {transmitter ? 1.0 / (4.0 * kPi * range) : 1.0 / range, 0.0};
    case Method::Backprojection:
      return {1.0, 0.0};
    case Method::Kirchhoff:
    default: {
      const double dr_dz = dz / range;
      return {dr_dz / range, dr_dz};
    }
  }
}

// Reduce a phase (radians, any size) to [-pi, pi] in double precision before it is rounded to float: a float
// phase of 300 rad would carry an error of ~3e-5 rad, larger than the float operators' 1e-5 budget.
NFMIMO_HD double reduce_phase(double phase) {
  constexpr double inv_two_pi = 1.0 / kTwoPi;
#if defined(__CUDA_ARCH__)
  return phase - rint(phase * inv_two_pi) * kTwoPi;
#else
  const double turns = phase * inv_two_pi;
  const double nearest = static_cast<double>(static_cast<long long>(turns + (turns >= 0 ? 0.5 : -0.5)));
  return phase - nearest * kTwoPi;
#endif
}

}  // namespace nfmimo
