// Element-wise formulas of the iterative solvers, shared by the CPU loops and the CUDA kernels so that both
// run the same algorithm (see radar/iterative.hpp and docs/iterative.md).
//
// Problem, per frame:   minimise F(x) = 0.5 ||A x - y||^2 + lambda R(|x|)   over complex x in C^V,
// with R = sum |x_v| (l1) or R = TV(|x|), the 3D isotropic total variation of the magnitude, optionally plus
// lambda_l1 sum |x_v| (TV + l1: TV alone does not penalise a constant magnitude, so it leaves a flat
// background). Proximal-gradient step with step s = 1/L: u = prox_{s lambda R(|.|)}(z - s A^H (A z - y)).
// Both proximal maps act on the magnitude and keep the phase, which is their exact solution: for fixed
// magnitudes m the phases minimising ||m e^{j phi} - w||^2 are those of w, and the remaining problem in m >=
// 0 is the real prox of R at |w| on m >= 0 (soft thresholding clips at 0; the TV prox below carries the
// constraint).
#pragma once

#include <cmath>

#include "radar/physics.hpp"

namespace nfmimo {

enum class Regularizer : int { L1 = 0, TotalVariation = 1 };
// None: ISTA (monotone for an exact prox). Fista: Beck-Teboulle 2009, O(1/k^2) but not monotone.
// MonotoneFista: MFISTA (Beck-Teboulle 2009, TIP): keeps the better of the prox point and the previous
// iterate.
enum class Acceleration : int { None = 0, Fista = 1, MonotoneFista = 2 };

// prox of mu |.| on one complex value (re, im): magnitude soft threshold, phase kept.
NFMIMO_HD void soft_threshold_magnitude(float& re, float& im, float mu) {
  const float m = sqrtf(re * re + im * im);
  const float scale = m > mu ? (m - mu) / m : 0.0f;
  re *= scale;
  im *= scale;
}

// Forward differences of a real volume m [nx, ny, nz] (z fastest) at (ix, iy, iz), zero at the last index of
// each axis (Neumann boundary): the discrete gradient D of the TV. Index units (voxel steps).
NFMIMO_HD void forward_differences(const float* m, int ix, int iy, int iz, int nx, int ny, int nz,
                                   float d[3]) {
  const long long v = (static_cast<long long>(ix) * ny + iy) * nz + iz;
  const float c = m[v];
  d[0] = ix + 1 < nx ? m[v + static_cast<long long>(ny) * nz] - c : 0.0f;
  d[1] = iy + 1 < ny ? m[v + nz] - c : 0.0f;
  d[2] = iz + 1 < nz ? m[v + 1] - c : 0.0f;
}

// (D^T p)_v for a dual field p stored component-major [3][V]: the adjoint of forward_differences
// (= minus the discrete divergence).
NFMIMO_HD float differences_adjoint(const float* p, long long V, int ix, int iy, int iz, int nx, int ny,
                                    int nz) {
  const long long v = (static_cast<long long>(ix) * ny + iy) * nz + iz;
  const long long sx = static_cast<long long>(ny) * nz, sy = nz;
  const float* px = p;
  const float* py = p + V;
  const float* pz = p + 2 * V;
  float s = 0.0f;
  if (ix + 1 < nx) s -= px[v];
  if (ix > 0) s += px[v - sx];
  if (iy + 1 < ny) s -= py[v];
  if (iy > 0) s += py[v - sy];
  if (iz + 1 < nz) s -= pz[v];
  if (iz > 0) s += pz[v - 1];
  return s;
}

// Isotropic TV density at one voxel: |(D m)_v|.
NFMIMO_HD double tv_density(const float d[3]) {
  return sqrt(static_cast<double>(d[0]) * d[0] + static_cast<double>(d[1]) * d[1] +
              static_cast<double>(d[2]) * d[2]);
}

// The TV prox with the magnitude constraint and the optional l1 term, h(m) = mu1 sum m + indicator(m >= 0):
//   m* = argmin 0.5 ||m - b||^2 + h(m) + mu TV(m).
// Its dual (Beck-Teboulle 2009, IEEE TIP 18(11), with prox_h in place of their projection P_C) is
//   max_{|p_v| <= 1} min_m 0.5 ||m - b||^2 + h(m) + mu <D m, p>,
//   attained at m(p) = prox_h(b - mu D^T p) = max(b - mu D^T p - mu1, 0),
// a smooth problem in p whose gradient (-mu D m(p)) is Lipschitz with constant mu^2 ||D||^2 <= 12 mu^2
// (prox_h is non-expansive; 3D forward differences). It is solved by the fast gradient projection (FGP) with
// step 1 / (12 mu^2), and m* = m(p*): exact for the sum, with no splitting of TV and l1.
NFMIMO_HD float tv_primal(float b, float mu, float dtp, float mu1) { return fmaxf(b - mu * dtp - mu1, 0.0f); }

// One voxel of the FGP dual step: `g` = (D m(r))_v from the previous pass; `p` holds p_{k-1} and receives
// p_k; `r` holds the extrapolated point and receives r_{k+1} = p_k + beta (p_k - p_{k-1}).
NFMIMO_HD void fgp_update(float* p, float* r, long long V, long long v, const float g[3], float inv_12mu,
                          float beta) {
  float q[3];
  for (int c = 0; c < 3; ++c) q[c] = r[c * V + v] + inv_12mu * g[c];
  const float norm = sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2]);
  const float shrink = norm > 1.0f ? 1.0f / norm : 1.0f;  // projection onto the unit ball of each voxel
  for (int c = 0; c < 3; ++c) {
    const float pk = q[c] * shrink;
    const float pk1 = p[c * V + v];
    p[c * V + v] = pk;
    r[c * V + v] = pk + beta * (pk - pk1);
  }
}

// FISTA momentum sequence t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2.
NFMIMO_HD double fista_next_t(double t) { return 0.5 * (1.0 + sqrt(1.0 + 4.0 * t * t)); }

// Per-frame state of the outer iteration (the same struct lives in host and device memory).
struct FrameState {
  double t;          // FISTA t_k
  double objective;  // F(x_k)
  double lambda;     // absolute regularisation weight
  double lambda_l1;  // absolute weight of the l1 term added to TV (0 for plain TV and for l1)
  int iterations;    // completed iterations
  int active;        // 1 while the frame iterates
  int converged;     // 1 when the stopping rule (not the iteration limit) ended it
  int pad;
};

// How the vectors move after one prox step (applied element-wise to x, z and to their images A x, A z):
//   x_new = accept ? u : x;   z = x_new + a (u - x_new) + b (x_new - x).
struct FrameUpdate {
  int apply;   // 0: the frame is frozen (it stopped earlier)
  int accept;  // MFISTA may keep the previous iterate
  float a, b;
};

// One outer decision for a frame, from the candidate u = prox(...) and the per-frame sums
// objective_u = F(u), change_sq = ||u - x_k||^2, u_norm_sq = ||u||^2. The stopping rule is on the relative
// change
// ||u - x_k|| / ||u|| <= tolerance (measured on the prox point, so that an MFISTA rejection does not look
// like convergence); the iteration limit ends the frame too.
NFMIMO_HD FrameUpdate fista_decide(FrameState& s, double objective_u, double change_sq, double u_norm_sq,
                                   int acceleration, double tolerance, int max_iterations) {
  FrameUpdate up{0, 0, 0.0f, 0.0f};
  if (!s.active) return up;
  up.apply = 1;
  const bool monotone = acceleration == static_cast<int>(Acceleration::MonotoneFista);
  up.accept = (!monotone || objective_u <= s.objective) ? 1 : 0;
  const double t_next = fista_next_t(s.t);
  if (acceleration == static_cast<int>(Acceleration::Fista)) {
    up.b = static_cast<float>((s.t - 1.0) / t_next);
  } else if (monotone) {
    up.a = static_cast<float>(s.t / t_next);
    up.b = static_cast<float>((s.t - 1.0) / t_next);
  }
  s.t = t_next;
  if (up.accept) s.objective = objective_u;
  s.iterations += 1;
  const double change = u_norm_sq > 0 ? sqrt(change_sq / u_norm_sq) : (change_sq > 0 ? HUGE_VAL : 0.0);
  if (change <= tolerance) {
    s.converged = 1;
    s.active = 0;
  } else if (s.iterations >= max_iterations) {
    s.active = 0;
  }
  return up;
}

// Applies a FrameUpdate to one element of (x, z) given the candidate u (voxels, or their images under A).
NFMIMO_HD void fista_move(const FrameUpdate& up, float& x_re, float& x_im, float& z_re, float& z_im,
                          float u_re, float u_im) {
  const float xn_re = up.accept ? u_re : x_re, xn_im = up.accept ? u_im : x_im;
  z_re = xn_re + up.a * (u_re - xn_re) + up.b * (xn_re - x_re);
  z_im = xn_im + up.a * (u_im - xn_im) + up.b * (xn_im - x_im);
  x_re = xn_re;
  x_im = xn_im;
}

}  // namespace nfmimo
