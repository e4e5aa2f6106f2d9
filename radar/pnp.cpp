#include "radar/pnp.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <complex>

#include <fmt/format.h>

#include "radar/cpu_operator.hpp"
#include "radar/error.hpp"

namespace nfmimo {
namespace {

// Element-wise loops are a few flops per element: threads only pay off on large volumes.
constexpr std::size_t kParallelElements = std::size_t(1) << 16;

double dot_re(const cfloat* a, const cfloat* b, std::size_t n) {  // Re <a, b>
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n >= kParallelElements)
  for (std::size_t i = 0; i < n; ++i)
    s += double(a[i].real()) * b[i].real() + double(a[i].imag()) * b[i].imag();
  return s;
}

double norm_sq(const cfloat* v, std::size_t n) { return dot_re(v, v, n); }

double distance_sq(const cfloat* a, const cfloat* b, std::size_t n) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n >= kParallelElements)
  for (std::size_t i = 0; i < n; ++i) s += std::norm(std::complex<double>(a[i]) - std::complex<double>(b[i]));
  return s;
}

// out = (A^H A + rho I) v; `scratch` holds S samples.
void apply_normal(const PnpOperator& op, double rho, const cfloat* v, cfloat* out, cfloat* scratch) {
  op.forward(v, scratch);
  op.adjoint(scratch, out);
  const float r = float(rho);
  const std::size_t V = op.voxels;
#pragma omp parallel for schedule(static) if (V >= kParallelElements)
  for (std::size_t i = 0; i < V; ++i) out[i] += r * v[i];
}

}  // namespace

FunctionDenoiser soft_threshold_denoiser(std::size_t voxels, float mu) {
  return FunctionDenoiser(
      voxels,
      [mu](const float* m, float* out, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) out[i] = std::max(m[i] - mu, 0.0f);
      },
      fmt::format("soft threshold {:g}", mu));
}

PnpOperator pnp_operator(const CpuOperator& op) {
  PnpOperator p;
  p.voxels = op.grid().voxels();
  p.samples = op.system().samples_per_frame();
  p.forward = [&op](const cfloat* x, cfloat* y) { op.forward(x, y, 1); };
  p.adjoint = [&op](const cfloat* y, cfloat* x) { op.image(Method::Adjoint, y, x, 1); };
  p.device = fmt::format("cpu ({} threads)", omp_get_max_threads());
  return p;
}

PnpOptions default_pnp_options() {
  PnpOptions o;
  // Chosen by the validation sweep rule of docs/pnp.md, "Choosing rho" (nfmimo_sweep_lambda --methods pnp):
  // the best of {0.02, 0.05, 0.2} in both settings of docs/results.md with the residual denoiser.
  o.rho = 0.2;
  return o;
}

void validate(const PnpOptions& o) {
  require(std::isfinite(o.rho) && o.rho > 0,
          fmt::format("the ADMM weight rho must be a finite number > 0 (got {})", o.rho));
  require(o.max_iterations >= 1,
          fmt::format("the iteration limit must be at least 1 (got {})", o.max_iterations));
  require(o.cg_iterations >= 1,
          fmt::format("the CG step limit cg_iterations must be at least 1 (got {})", o.cg_iterations));
  require(std::isfinite(o.cg_tolerance) && o.cg_tolerance >= 0,
          fmt::format("the CG tolerance must be a finite number >= 0 (got {})", o.cg_tolerance));
  require(std::isfinite(o.tolerance) && o.tolerance >= 0,
          fmt::format("the stopping tolerance must be a finite number >= 0 (got {})", o.tolerance));
}

CgResult solve_regularised_normal_equations(const PnpOperator& op, double rho, const cfloat* b, cfloat* x,
                                            int max_steps, double tolerance, cfloat* mx) {
  require(rho > 0, "CG: rho must be positive (the system is then Hermitian positive definite)");
  const std::size_t V = op.voxels;
  std::vector<cfloat> r(V), p(V), q(V), scratch(op.samples);
  if (mx)
    std::copy(mx, mx + V, q.begin());
  else
    apply_normal(op, rho, x, q.data(), scratch.data());
  for (std::size_t i = 0; i < V; ++i) r[i] = b[i] - q[i];
  const double b_norm = std::sqrt(norm_sq(b, V));
  CgResult result;
  if (b_norm == 0) {  // the solution is 0
    std::fill(x, x + V, cfloat(0));
    if (mx) std::fill(mx, mx + V, cfloat(0));
    return result;
  }
  double rs = norm_sq(r.data(), V);
  result.relative_residual = std::sqrt(rs) / b_norm;
  std::copy(r.begin(), r.end(), p.begin());
  while (result.steps < max_steps && result.relative_residual > tolerance) {
    apply_normal(op, rho, p.data(), q.data(), scratch.data());
    // <p, M p> is real for the Hermitian M, so the real part of the inner product is all of it.
    const double pq = dot_re(p.data(), q.data(), V);
    if (!(pq > 0)) break;  // p = 0 in float: nothing left to reduce
    const float alpha = float(rs / pq);
#pragma omp parallel for schedule(static) if (V >= kParallelElements)
    for (std::size_t i = 0; i < V; ++i) {
      x[i] += alpha * p[i];
      r[i] -= alpha * q[i];
      if (mx) mx[i] += alpha * q[i];
    }
    const double rs_next = norm_sq(r.data(), V);
    const float beta = float(rs_next / rs);
    rs = rs_next;
#pragma omp parallel for schedule(static) if (V >= kParallelElements)
    for (std::size_t i = 0; i < V; ++i) p[i] = r[i] + beta * p[i];
    ++result.steps;
    result.relative_residual = std::sqrt(rs) / b_norm;
  }
  return result;
}

PnpSolver::PnpSolver(PnpOperator op, double lipschitz) : op_(std::move(op)), lipschitz_(lipschitz) {
  require(std::isfinite(lipschitz) && lipschitz > 0, "pnp: ||A^H A|| must be a positive number");
  require(op_.voxels > 0 && op_.samples > 0 && op_.forward && op_.adjoint, "pnp: incomplete operator");
}

std::vector<PnpReport> PnpSolver::solve(const cfloat* y, cfloat* x_out, int frames, const PnpOptions& o,
                                        MagnitudeDenoiser& denoiser) const {
  validate(o);
  require(frames >= 0, "the frame count must not be negative");
  const std::size_t V = op_.voxels, S = op_.samples;
  const double rho = o.rho * lipschitz_;
  const float frho = float(rho);
  std::vector<cfloat> aty(V), rhs(V), x(V), mx(V), x_prev(V), z(V), z_prev(V), u(V), u_prev(V);
  std::vector<float> magnitude(V), denoised(V);
  std::vector<PnpReport> reports(frames);

  for (int n = 0; n < frames; ++n) {
    PnpReport& rep = reports[n];
    rep.rho = rho;
    cfloat* out = x_out + std::size_t(n) * V;
    op_.adjoint(y + std::size_t(n) * S, aty.data());
    if (norm_sq(aty.data(), V) == 0) {
      std::fill(out, out + V, cfloat(0));
      rep.converged = true;
      continue;
    }
    std::fill(x.begin(), x.end(), cfloat(0));
    std::fill(mx.begin(), mx.end(), cfloat(0));  // (A^H A + rho I) x for x = 0
    std::fill(z.begin(), z.end(), cfloat(0));
    std::fill(u.begin(), u.end(), cfloat(0));
    while (true) {
      x_prev.swap(x);
      std::copy(x_prev.begin(), x_prev.end(), x.begin());  // CG warm start
      z_prev.swap(z);
      u_prev.swap(u);
      // x-update: (A^H A + rho I) x = A^H y + rho (z - u).
#pragma omp parallel for schedule(static) if (V >= kParallelElements)
      for (std::size_t i = 0; i < V; ++i) rhs[i] = aty[i] + frho * (z_prev[i] - u_prev[i]);
      rep.cg_steps += solve_regularised_normal_equations(op_, rho, rhs.data(), x.data(), o.cg_iterations,
                                                         o.cg_tolerance, mx.data())
                          .steps;
      // z-update: the denoiser on the magnitude of v = x + u, phase kept.
      for (std::size_t i = 0; i < V; ++i) magnitude[i] = std::abs(x[i] + u_prev[i]);
      denoiser.denoise(magnitude.data(), denoised.data());
#pragma omp parallel for schedule(static) if (V >= kParallelElements)
      for (std::size_t i = 0; i < V; ++i) {
        const cfloat v = x[i] + u_prev[i];
        z[i] = magnitude[i] > 0 ? v * (denoised[i] / magnitude[i]) : cfloat(denoised[i], 0.0f);
        u[i] = u_prev[i] + x[i] - z[i];  // scaled dual update
      }
      ++rep.iterations;
      const double x_norm_sq = norm_sq(x.data(), V);
      auto relative = [x_norm_sq](double d_sq) {
        return x_norm_sq > 0 ? std::sqrt(d_sq / x_norm_sq) : (d_sq > 0 ? HUGE_VAL : 0.0);
      };
      const double change = relative(distance_sq(x.data(), x_prev.data(), V));
      const double primal = relative(distance_sq(x.data(), z.data(), V));
      rep.change.push_back(change);
      rep.primal_residual.push_back(primal);
      rep.admm_change.push_back(
          std::sqrt(distance_sq(z.data(), z_prev.data(), V) + distance_sq(u.data(), u_prev.data(), V)));
      if (std::max(change, primal) <= o.tolerance) {
        rep.converged = true;
        break;
      }
      if (rep.iterations >= o.max_iterations) break;
    }
    std::copy(z.begin(), z.end(), out);
  }
  return reports;
}

}  // namespace nfmimo
