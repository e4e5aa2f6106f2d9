// Plug-and-play ADMM with a magnitude denoiser (Oral and Oktem, "Plug-and-Play Regularization on Magnitude
// with Deep Priors for 3D Near-Field MIMO Imaging", IEEE TCI 2024; docs/pnp.md).
//
// Per frame, the split problem  minimise 0.5 ||A x - y||^2 + g(|z|)  subject to x = z  is solved by scaled
// ADMM, with the prox of g on the magnitude replaced by a denoiser D that acts on magnitudes and keeps the
// phase:
//
//   x_{k+1} = (A^H A + rho I)^{-1} (A^H y + rho (z_k - u_k))     conjugate gradient, warm-started at x_k,
//                                                                  at most cg_iterations steps
//   v       = x_{k+1} + u_k
//   z_{k+1} = D(|v|) e^{j arg v}                                  (D(0) voxels get phase 0)
//   u_{k+1} = u_k + x_{k+1} - z_{k+1}
//
// from x_0 = z_0 = u_0 = 0. With D = the magnitude soft threshold at lambda / rho (the prox of
// (lambda / rho) sum |z|), this is exactly ADMM for the l1 problem of radar/iterative.hpp; with D = identity
// (g = 0) u stays 0 and x_k is the iterated-Tikhonov (proximal-point) sequence, which tends to the
// minimum-norm least-squares solution.
//
// Weight: rho is relative, rho_abs = rho_rel * L with L = ||A^H A|| from the power iteration, so one setting
// fits any system, and the CG system (A^H A + rho_abs I) has condition number <= (1 + rho_rel) / rho_rel.
// Scale: the ADMM is linear in y except for D; a denoiser that wants its training range (magnitudes in
// [0, 1]) normalises its own input (models/learned/denoiser.hpp divides |v| by its maximum and multiplies the
// output back), which makes the whole method scale-equivariant: pnp(c y) = c pnp(y).
//
// Stopping: after iteration k, stop when max(||x_k - x_{k-1}|| / ||x_k||, ||x_k - z_k|| / ||x_k||) <=
// tolerance (the iterate settled and is feasible), or at max_iterations. The result is z (the denoised
// iterate; x = z at convergence).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "radar/complex.hpp"

namespace nfmimo {

class CpuOperator;

// A denoiser of magnitude volumes: out [V] = D(magnitude [V]) for one volume in the grid's layout.
class MagnitudeDenoiser {
 public:
  virtual ~MagnitudeDenoiser() = default;
  virtual void denoise(const float* magnitude, float* out) = 0;
  virtual std::string description() const = 0;
};

// A denoiser from a function (tests, experiments).
class FunctionDenoiser final : public MagnitudeDenoiser {
 public:
  using Function = std::function<void(const float* magnitude, float* out, std::size_t voxels)>;
  FunctionDenoiser(std::size_t voxels, Function f, std::string description)
      : voxels_(voxels), f_(std::move(f)), description_(std::move(description)) {}
  void denoise(const float* magnitude, float* out) override { f_(magnitude, out, voxels_); }
  std::string description() const override { return description_; }

 private:
  std::size_t voxels_;
  Function f_;
  std::string description_;
};

// max(m - mu, 0): with mu = lambda / rho_abs, pnp is ADMM for 0.5 ||Ax - y||^2 + lambda sum |x|.
FunctionDenoiser soft_threshold_denoiser(std::size_t voxels, float mu);

// The physics operator for one frame on host memory: CpuOperator here, the GPU plan's host wrappers through
// pnp_operator(const Imager&) (kernels/iterative_solver.hpp).
struct PnpOperator {
  std::size_t voxels = 0, samples = 0;  // V and K * T * R
  std::function<void(const cfloat* x, cfloat* y)> forward;
  std::function<void(const cfloat* y, cfloat* x)> adjoint;  // exact adjoint A^H
  std::string device;
};
PnpOperator pnp_operator(const CpuOperator& op);  // `op` must outlive the result

struct PnpOptions {
  double rho = 0;              // relative ADMM weight rho_rel (see above); default_pnp_options() sets it
  int max_iterations = 20;     // ADMM iterations (one denoiser call each)
  int cg_iterations = 5;       // CG steps per x-update (warm-started, so few are needed late in the run)
  double cg_tolerance = 1e-4;  // CG stops early at ||residual|| <= cg_tolerance ||right-hand side||
  double tolerance = 1e-3;     // the ADMM stopping rule above (0: run max_iterations)
};
// The documented defaults, rho by the rule of docs/pnp.md, "Choosing rho".
PnpOptions default_pnp_options();
// InputError naming the option: rho not > 0, iterations < 1, negative tolerances, ...
void validate(const PnpOptions& options);

struct PnpReport {
  int iterations = 0;
  bool converged = false;               // the stopping rule ended it (not the iteration limit)
  double rho = 0;                       // absolute weight rho_rel * L
  int cg_steps = 0;                     // CG steps of all x-updates
  std::vector<double> change;           // ||x_k - x_{k-1}|| / ||x_k||, k = 1 .. iterations
  std::vector<double> primal_residual;  // ||x_k - z_k|| / ||x_k||
  // sqrt(||z_k - z_{k-1}||^2 + ||u_k - u_{k-1}||^2): non-increasing for ADMM with a convex g and exact
  // x-updates (He and Yuan, SIAM J. Numer. Anal. 2012), the test of the l1 case.
  std::vector<double> admm_change;
};

struct CgResult {
  int steps = 0;
  double relative_residual = 0;  // ||b - (A^H A + rho I) x|| / ||b|| as tracked by the recursion
};
// Solves (A^H A + rho I) x = b (rho > 0, absolute) by conjugate gradient from the x given (warm start):
// at most `max_steps` steps, stopping at relative residual <= tolerance. Float vectors, double reductions.
// `mx` (optional): (A^H A + rho I) x of the x given, updated to that of the result (accumulated from the CG
// directions, so the next warm start needs no operator call for its initial residual; ADMM uses it).
CgResult solve_regularised_normal_equations(const PnpOperator& op, double rho, const cfloat* b, cfloat* x,
                                            int max_steps, double tolerance, cfloat* mx = nullptr);

class PnpSolver {
 public:
  // `lipschitz`: ||A^H A|| (the power-iteration estimate of an IterativeSolver), the unit of rho.
  PnpSolver(PnpOperator op, double lipschitz);
  // Host memory: y [frames, K, T, R] -> x [frames, V]; frames are independent. A frame with A^H y = 0
  // returns 0 (0 iterations, converged).
  std::vector<PnpReport> solve(const cfloat* y, cfloat* x, int frames, const PnpOptions& options,
                               MagnitudeDenoiser& denoiser) const;
  double lipschitz() const { return lipschitz_; }
  const PnpOperator& op() const { return op_; }

 private:
  PnpOperator op_;
  double lipschitz_;
};

}  // namespace nfmimo
