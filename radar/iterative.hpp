// Iterative reconstruction with sparsity (l1) or total-variation (TV) regularisation of the magnitude, on the
// shared physics operators (docs/iterative.md).
//
//   minimise F(x) = 0.5 ||A x - y||^2 + lambda R(|x|),   R = sum_v |x_v|  or  R = TV(|x|) (3D isotropic),
//
// by accelerated proximal gradient (FISTA / MFISTA, Beck and Teboulle 2009) with step 1/L, L = ||A^H A|| from
// a power iteration. The TV prox is an inner fast gradient projection on the dual (warm-started). The weight
// is relative: lambda = lambda_rel * max_v |(A^H y)_v| per frame (lambda_rel >= 1 makes x = 0 the l1
// solution), so one setting works at every signal level.
//
// One interface, two backends: CpuIterativeSolver (here, on CpuOperator) and GpuIterativeSolver
// (kernels/gpu_iterative.hpp, on GpuImagingPlan, device-resident loop). make_iterative_solver()
// (kernels/iterative_solver.hpp) picks one from an Imager.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "radar/complex.hpp"
#include "radar/iterative_math.hpp"
#include "radar/system.hpp"

namespace nfmimo {

class CpuOperator;

std::string to_string(Regularizer r);
std::string to_string(Acceleration a);
Acceleration parse_acceleration(const std::string& name);  // "ista", "fista", "mfista"; InputError otherwise

struct IterativeOptions {
  Regularizer regularizer = Regularizer::L1;
  double lambda =
      0;  // relative weight lambda_rel (see the header comment); default_iterative_options() sets it
  int max_iterations = 100;
  double tolerance = 1e-3;  // stop when ||x_{k+1} - x_k|| / ||x_{k+1}|| <= tolerance (0: run max_iterations)
  Acceleration acceleration = Acceleration::Fista;
  int tv_iterations = 10;  // inner FGP iterations per TV prox (warm-started from the previous prox)
  double l1_weight = 0;    // tv only: relative weight of an added sum |x| term (same rule as lambda)
};

// The documented defaults for a regulariser, including the weight chosen by the validation sweep
// (docs/iterative.md).
IterativeOptions default_iterative_options(Regularizer regularizer);
// InputError with a message naming the option: negative or non-finite weight, zero iterations, ...
void validate(const IterativeOptions& options);

struct PowerIterationOptions {
  int max_iterations = 100;
  double tolerance = 1e-4;  // relative change of the estimate between iterations
  double margin = 1.05;     // the estimate approaches ||A^H A|| from below; the step uses margin * estimate
  std::uint64_t seed = 0x5eed;
};

// Deterministic start vector of the power iteration (the same on every backend), unit norm.
std::vector<cfloat> power_iteration_start(std::size_t voxels, std::uint64_t seed);

struct IterativeReport {
  int iterations = 0;
  bool converged = false;         // the relative-change rule stopped it (not the iteration limit)
  double lambda = 0;              // absolute weight used: lambda_rel * max |A^H y|
  double lambda_l1 = 0;           // absolute weight of the l1 term added to TV
  double step = 0;                // 1 / L
  std::vector<double> objective;  // F(x_k), k = 0 (x_0 = 0) .. iterations
};

class IterativeSolver {
 public:
  virtual ~IterativeSolver() = default;
  // L used for the step size 1/L (power-iteration estimate of ||A^H A|| times the margin).
  virtual double lipschitz() const = 0;
  // Host memory: y [frames, K, T, R] -> x [frames, V]; every frame is solved independently (its own weight,
  // stopping point and report).
  virtual std::vector<IterativeReport> solve(const cfloat* y, cfloat* x, int frames,
                                             const IterativeOptions& options) const = 0;
  virtual std::string device_description() const = 0;
};

class CpuIterativeSolver final : public IterativeSolver {
 public:
  // `op` must outlive the solver. Runs the power iteration at once.
  explicit CpuIterativeSolver(const CpuOperator& op, const PowerIterationOptions& power = {});
  double lipschitz() const override { return lipschitz_; }
  std::vector<IterativeReport> solve(const cfloat* y, cfloat* x, int frames,
                                     const IterativeOptions& options) const override;
  std::string device_description() const override;

 private:
  const CpuOperator& op_;
  double lipschitz_ = 0;
};

// Pieces exposed for tests and for the GPU backend's parity checks (CPU, double accumulation).

// R(|x|) for one volume [nx, ny, nz] (without the optional l1 term of TV).
double regularizer_value(Regularizer r, const ImagingGrid& grid, const cfloat* x);
// TV of a real volume (isotropic, forward differences, Neumann boundary, index units).
double total_variation(const ImagingGrid& grid, const float* m);
// F(x) for one frame with the absolute weights `lambda` (and `lambda_l1` for the l1 term added to TV).
double iterative_objective(const CpuOperator& op, Regularizer r, double lambda, const cfloat* x,
                           const cfloat* y, double lambda_l1 = 0);

// TV prox of a real volume: m = argmin_{m >= 0} 0.5 ||m - b||^2 + mu TV(m) + mu1 sum m, by `iterations` FGP
// steps starting from the dual field `p` [3][V] (updated in place, for warm starts; zeros for a cold start).
std::vector<float> tv_prox(const ImagingGrid& grid, const std::vector<float>& b, float mu, int iterations,
                           std::vector<float>& p, float mu1 = 0);
// Duality gap of that problem at the dual point p (|p_v| <= 1), evaluated at m = m(p) (iterative_math.hpp):
// P(m) - L(m, p) = mu (TV(m) - <D m, p>) >= 0, zero only at the solution.
double tv_prox_duality_gap(const ImagingGrid& grid, const std::vector<float>& b, float mu,
                           const std::vector<float>& p, float mu1 = 0);

}  // namespace nfmimo
