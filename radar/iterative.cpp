#include "radar/iterative.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "radar/cpu_operator.hpp"
#include "radar/error.hpp"
#include "radar/random.hpp"

namespace nfmimo {

std::string to_string(Regularizer r) { return r == Regularizer::L1 ? "l1" : "tv"; }

std::string to_string(Acceleration a) {
  switch (a) {
    case Acceleration::None:
      return "ista";
    case Acceleration::Fista:
      return "fista";
    case Acceleration::MonotoneFista:
      return "mfista";
  }
  return "unknown";
}

Acceleration parse_acceleration(const std::string& name) {
  for (Acceleration a : {Acceleration::None, Acceleration::Fista, Acceleration::MonotoneFista})
    if (name == to_string(a)) return a;
  throw InputError(fmt::format("unknown acceleration '{}' (ista, fista, mfista)", name));
}

IterativeOptions default_iterative_options(Regularizer regularizer) {
  IterativeOptions o;
  o.regularizer = regularizer;
  // Chosen by the validation sweep recorded in docs/iterative.md (tools/sweep_lambda.cpp): best mean PSNR on
  // 8 validation scenes (paper system, K = 15, 30 dB). TV carries an l1 term by default: TV of the magnitude
  // alone leaves a flat background (a constant magnitude costs nothing) and scored 3-4 dB lower.
  if (regularizer == Regularizer::L1) {
    o.lambda = 0.02;
  } else {
    o.lambda = 0.01;
    o.l1_weight = 0.02;
  }
  return o;
}

void validate(const IterativeOptions& o) {
  require(std::isfinite(o.lambda) && o.lambda >= 0,
          fmt::format("the regularisation weight lambda must be a finite number >= 0 (got {})", o.lambda));
  require(o.max_iterations >= 1,
          fmt::format("the iteration limit must be at least 1 (got {})", o.max_iterations));
  require(std::isfinite(o.tolerance) && o.tolerance >= 0,
          fmt::format("the stopping tolerance must be a finite number >= 0 (got {})", o.tolerance));
  require(o.tv_iterations >= 1,
          fmt::format("the inner TV iteration count must be at least 1 (got {})", o.tv_iterations));
  require(std::isfinite(o.l1_weight) && o.l1_weight >= 0,
          fmt::format("the weight of the added l1 term must be a finite number >= 0 (got {})", o.l1_weight));
  require(o.l1_weight == 0 || o.regularizer == Regularizer::TotalVariation,
          "the added l1 term is an option of tv (l1 has its weight in lambda)");
}

std::vector<cfloat> power_iteration_start(std::size_t voxels, std::uint64_t seed) {
  const RandomStream rng(seed, 0);
  std::vector<cfloat> v(voxels);
  double norm = 0;
  for (std::size_t i = 0; i < voxels; ++i) {
    double a, b;
    rng.normal2(i, &a, &b);
    v[i] = {static_cast<float>(a), static_cast<float>(b)};
    norm += a * a + b * b;
  }
  const float scale = static_cast<float>(1.0 / std::sqrt(norm));
  for (auto& z : v) z *= scale;
  return v;
}

namespace {

// Element-wise loops and TV passes are a few flops per element: threads only pay off on large volumes (and
// small parallel regions are slow where cores are shared).
constexpr std::size_t kParallelElements = std::size_t(1) << 16;
constexpr long long kParallelVoxels = 1 << 13;

double norm_sq(const cfloat* v, std::size_t n) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n >= kParallelElements)
  for (std::size_t i = 0; i < n; ++i) s += std::norm(std::complex<double>(v[i]));
  return s;
}

double distance_sq(const cfloat* a, const cfloat* b, std::size_t n) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n >= kParallelElements)
  for (std::size_t i = 0; i < n; ++i) s += std::norm(std::complex<double>(a[i]) - std::complex<double>(b[i]));
  return s;
}

struct Dims {
  int nx, ny, nz;
  long long V;
  explicit Dims(const ImagingGrid& g)
      : nx(g.x().size), ny(g.y().size), nz(g.z().size), V(static_cast<long long>(g.voxels())) {}
};

// out = m(q) = max(b - mu D^T q - mu1, 0) (the primal point of a dual field q).
void primal_from_dual(const Dims& d, const float* b, float mu, float mu1, const float* q, float* out) {
#pragma omp parallel for schedule(static) if (d.V >= kParallelVoxels)
  for (int ix = 0; ix < d.nx; ++ix)
    for (int iy = 0; iy < d.ny; ++iy)
      for (int iz = 0; iz < d.nz; ++iz) {
        const long long v = (static_cast<long long>(ix) * d.ny + iy) * d.nz + iz;
        out[v] = tv_primal(b[v], mu, differences_adjoint(q, d.V, ix, iy, iz, d.nx, d.ny, d.nz), mu1);
      }
}

// FGP for the TV prox (radar/iterative_math.hpp: tv_primal, fgp_update). p [3][V] is the warm start and
// receives the result; r [3][V] and tmp [V] are scratch; m receives m(p).
void tv_prox_fgp(const Dims& d, const float* b, float mu, float mu1, int iterations, float* p, float* r,
                 float* tmp, float* m) {
  if (mu <= 0) {  // no TV term: the prox of h alone
    for (long long i = 0; i < d.V; ++i) m[i] = tv_primal(b[i], 0.0f, 0.0f, mu1);
    return;
  }
  std::copy(p, p + 3 * d.V, r);
  const float inv_12mu = 1.0f / (12.0f * mu);
  double t = 1.0;
  for (int it = 0; it < iterations; ++it) {
    primal_from_dual(d, b, mu, mu1, r, tmp);
    const double t_next = fista_next_t(t);
    const float beta = static_cast<float>((t - 1.0) / t_next);
    t = t_next;
#pragma omp parallel for schedule(static) if (d.V >= kParallelVoxels)
    for (int ix = 0; ix < d.nx; ++ix)
      for (int iy = 0; iy < d.ny; ++iy)
        for (int iz = 0; iz < d.nz; ++iz) {
          float g[3];
          forward_differences(tmp, ix, iy, iz, d.nx, d.ny, d.nz, g);
          fgp_update(p, r, d.V, (static_cast<long long>(ix) * d.ny + iy) * d.nz + iz, g, inv_12mu, beta);
        }
  }
  primal_from_dual(d, b, mu, mu1, p, m);
}

double total_variation(const Dims& d, const float* m) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (d.V >= kParallelVoxels)
  for (int ix = 0; ix < d.nx; ++ix)
    for (int iy = 0; iy < d.ny; ++iy)
      for (int iz = 0; iz < d.nz; ++iz) {
        float g[3];
        forward_differences(m, ix, iy, iz, d.nx, d.ny, d.nz, g);
        s += tv_density(g);
      }
  return s;
}

double regularizer_value(Regularizer r, const Dims& d, const cfloat* x, std::vector<float>& magnitude) {
  if (r == Regularizer::L1) {
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (d.V >= kParallelVoxels)
    for (long long i = 0; i < d.V; ++i) s += std::abs(std::complex<double>(x[i]));
    return s;
  }
  magnitude.resize(d.V);
  for (long long i = 0; i < d.V; ++i) magnitude[i] = std::abs(x[i]);
  return total_variation(d, magnitude.data());
}

}  // namespace

double total_variation(const ImagingGrid& grid, const float* m) { return total_variation(Dims(grid), m); }

double regularizer_value(Regularizer r, const ImagingGrid& grid, const cfloat* x) {
  std::vector<float> scratch;
  return regularizer_value(r, Dims(grid), x, scratch);
}

double iterative_objective(const CpuOperator& op, Regularizer r, double lambda, const cfloat* x,
                           const cfloat* y, double lambda_l1) {
  const std::size_t S = op.system().samples_per_frame();
  std::vector<cfloat> ax(S);
  op.forward(x, ax.data(), 1);
  double f = 0.5 * distance_sq(ax.data(), y, S) + lambda * regularizer_value(r, op.grid(), x);
  if (lambda_l1 > 0) f += lambda_l1 * regularizer_value(Regularizer::L1, op.grid(), x);
  return f;
}

std::vector<float> tv_prox(const ImagingGrid& grid, const std::vector<float>& b, float mu, int iterations,
                           std::vector<float>& p, float mu1) {
  const Dims d(grid);
  require(b.size() == std::size_t(d.V) && p.size() == 3 * std::size_t(d.V),
          "tv_prox: sizes do not match the grid");
  std::vector<float> r(3 * d.V), tmp(d.V), m(d.V);
  tv_prox_fgp(d, b.data(), mu, mu1, iterations, p.data(), r.data(), tmp.data(), m.data());
  return m;
}

double tv_prox_duality_gap(const ImagingGrid& grid, const std::vector<float>& b, float mu,
                           const std::vector<float>& p, float mu1) {
  const Dims d(grid);
  std::vector<float> m(d.V);
  primal_from_dual(d, b.data(), mu, mu1, p.data(), m.data());
  double tv = 0, pairing = 0;  // TV(m) and <D m, p>
  for (int ix = 0; ix < d.nx; ++ix)
    for (int iy = 0; iy < d.ny; ++iy)
      for (int iz = 0; iz < d.nz; ++iz) {
        const long long v = (static_cast<long long>(ix) * d.ny + iy) * d.nz + iz;
        float g[3];
        forward_differences(m.data(), ix, iy, iz, d.nx, d.ny, d.nz, g);
        tv += tv_density(g);
        for (int c = 0; c < 3; ++c) pairing += double(g[c]) * p[c * d.V + v];
      }
  return mu * (tv - pairing);
}

CpuIterativeSolver::CpuIterativeSolver(const CpuOperator& op, const PowerIterationOptions& power) : op_(op) {
  require(power.max_iterations >= 1 && power.margin >= 1, "power iteration: invalid options");
  const std::size_t V = op.grid().voxels(), S = op.system().samples_per_frame();
  std::vector<cfloat> v = power_iteration_start(V, power.seed), w(V), av(S);
  double estimate = 0;
  for (int it = 0; it < power.max_iterations; ++it) {
    op.forward(v.data(), av.data(), 1);
    op.image(Method::Adjoint, av.data(), w.data(), 1);
    // ||A^H A v|| for a unit v: a lower bound of ||A^H A|| that increases towards it.
    const double next = std::sqrt(norm_sq(w.data(), V));
    if (!(next > 0)) throw Error("power iteration: A^H A v vanished; the operator is zero on this grid");
    const float scale = static_cast<float>(1.0 / next);
    for (std::size_t i = 0; i < V; ++i) v[i] = w[i] * scale;
    const bool settled = std::abs(next - estimate) <= power.tolerance * next;
    estimate = next;
    if (settled) break;
  }
  lipschitz_ = power.margin * estimate;
}

std::string CpuIterativeSolver::device_description() const {
  return fmt::format("cpu ({} threads)", omp_get_max_threads());
}

std::vector<IterativeReport> CpuIterativeSolver::solve(const cfloat* y, cfloat* x, int frames,
                                                       const IterativeOptions& o) const {
  validate(o);
  require(frames >= 0, "the frame count must not be negative");
  const Dims d(op_.grid());
  const std::size_t V = d.V, S = op_.system().samples_per_frame();
  const double step = 1.0 / lipschitz_;
  std::vector<cfloat> xs(V), u(V), z(V), g(V), ax(S), au(S), az(S), r(S);
  std::vector<float> mag, m, p, rr, tmp;
  if (o.regularizer == Regularizer::TotalVariation) {
    mag.resize(V);
    m.resize(V);
    p.resize(3 * V);
    rr.resize(3 * V);
    tmp.resize(V);
  }
  std::vector<IterativeReport> reports(frames);

  for (int n = 0; n < frames; ++n) {
    const cfloat* yn = y + n * S;
    IterativeReport& rep = reports[n];
    // Weight relative to max |A^H y| (the smallest l1 weight whose solution is x = 0).
    op_.image(Method::Adjoint, yn, g.data(), 1);
    double peak = 0;
    for (std::size_t i = 0; i < V; ++i) peak = std::max(peak, double(std::abs(g[i])));
    const double lambda_l1 = o.regularizer == Regularizer::TotalVariation ? o.l1_weight * peak : 0.0;
    FrameState s{1.0, 0.5 * norm_sq(yn, S), o.lambda * peak, lambda_l1, 0, 1, 0, 0};
    rep.lambda = s.lambda;
    rep.lambda_l1 = s.lambda_l1;
    rep.step = step;
    rep.objective = {s.objective};
    std::fill(xs.begin(), xs.end(), cfloat(0));
    std::fill(z.begin(), z.end(), cfloat(0));
    std::fill(ax.begin(), ax.end(), cfloat(0));
    std::fill(az.begin(), az.end(), cfloat(0));
    std::fill(p.begin(), p.end(), 0.0f);
    const float mu = static_cast<float>(step * s.lambda), mu1 = static_cast<float>(step * s.lambda_l1),
                fstep = static_cast<float>(step);

    while (s.active) {
      // Gradient step at the extrapolated point z: w = z - s A^H (A z - y).
      for (std::size_t i = 0; i < S; ++i) r[i] = az[i] - yn[i];
      op_.image(Method::Adjoint, r.data(), g.data(), 1);
#pragma omp parallel for schedule(static) if (V >= kParallelElements)
      for (std::size_t i = 0; i < V; ++i) u[i] = z[i] - fstep * g[i];
      // Prox of the magnitude regulariser, phase kept.
      if (o.regularizer == Regularizer::L1) {
#pragma omp parallel for schedule(static) if (V >= kParallelElements)
        for (std::size_t i = 0; i < V; ++i) {
          float re = u[i].real(), im = u[i].imag();
          soft_threshold_magnitude(re, im, mu);
          u[i] = {re, im};
        }
      } else {
        for (std::size_t i = 0; i < V; ++i) mag[i] = std::abs(u[i]);
        tv_prox_fgp(d, mag.data(), mu, mu1, o.tv_iterations, p.data(), rr.data(), tmp.data(), m.data());
#pragma omp parallel for schedule(static) if (V >= kParallelElements)
        for (std::size_t i = 0; i < V; ++i) u[i] = mag[i] > 0 ? u[i] * (m[i] / mag[i]) : cfloat(0);
      }
      op_.forward(u.data(), au.data(), 1);
      double objective_u =
          0.5 * distance_sq(au.data(), yn, S) + s.lambda * regularizer_value(o.regularizer, d, u.data(), tmp);
      if (s.lambda_l1 > 0) objective_u += s.lambda_l1 * regularizer_value(Regularizer::L1, d, u.data(), tmp);
      const FrameUpdate up =
          fista_decide(s, objective_u, distance_sq(u.data(), xs.data(), V), norm_sq(u.data(), V),
                       static_cast<int>(o.acceleration), o.tolerance, o.max_iterations);
      auto move = [&up](std::vector<cfloat>& xv, std::vector<cfloat>& zv, const std::vector<cfloat>& uv) {
#pragma omp parallel for schedule(static) if (xv.size() >= kParallelElements)
        for (std::size_t i = 0; i < xv.size(); ++i) {
          float xr = xv[i].real(), xi = xv[i].imag(), zr, zi;
          fista_move(up, xr, xi, zr, zi, uv[i].real(), uv[i].imag());
          xv[i] = {xr, xi};
          zv[i] = {zr, zi};
        }
      };
      move(xs, z, u);
      move(ax, az, au);
      rep.objective.push_back(s.objective);
    }
    rep.iterations = s.iterations;
    rep.converged = s.converged != 0;
    std::copy(xs.begin(), xs.end(), x + n * V);
  }
  return reports;
}

}  // namespace nfmimo
