// Double-precision reference operators: the literal formulas of the issue, one term at a time.
// Slow on purpose (no factorisation, no tables): they are the ground truth the fast CPU and CUDA paths are
// tested against. Layouts: x [batch, V] (z fastest), y [batch, K, T, R].
#pragma once

#include <span>
#include <vector>

#include "radar/complex.hpp"
#include "radar/physics.hpp"
#include "radar/system.hpp"

namespace nfmimo {

// y = A x with A[k,t,r; v] = exp(-j kappa_k (Rt + Rr)) / (4 pi Rt Rr).
std::vector<cdouble> forward_reference(const RadarSystem& system, const ImagingGrid& grid,
                                       std::span<const cdouble> x, int batch);

// x = W y for the given method (adjoint: W = A^H; backprojection; Kirchhoff migration).
std::vector<cdouble> image_reference(Method method, const RadarSystem& system, const ImagingGrid& grid,
                                     std::span<const cdouble> y, int batch);

// The imaging weight of one term, as written in the issue (exposed for tests of the factorised gains).
cdouble image_weight_reference(Method method, double kappa, double rt, double rr, double dzt, double dzr);

}  // namespace nfmimo
