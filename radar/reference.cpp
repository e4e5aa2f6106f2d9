#include "radar/reference.hpp"

#include <cmath>

#include "radar/error.hpp"

namespace nfmimo {
namespace {

double distance(const Vec3& a, double x, double y, double z) {
  const double dx = x - a.x, dy = y - a.y, dz = z - a.z;
  return std::sqrt(dx * dx + dy * dy + dz * dz);
}

}  // namespace

cdouble image_weight_reference(Method method, double kappa, double rt, double rr, double dzt, double dzr) {
  const cdouble j(0.0, 1.0);
  const cdouble phase = std::exp(j * kappa * (rt + rr));
  switch (method) {
    case Method::Adjoint:
      return phase / (4.0 * kPi * rt * rr);
    case Method::Backprojection:
      return phase;
    case Method::Kirchhoff: {
      const double drt_dz = dzt / rt, drr_dz = dzr / rr;
      const cdouble jk = j * kappa;
      return 4.0 * drr_dz * drt_dz * (jk * jk * rr * rt + jk * (rr + rt) + 1.0) * phase / (4.0 * rr * rt);
    }
  }
  throw InputError("unknown imaging method");
}

std::vector<cdouble> forward_reference(const RadarSystem& s, const ImagingGrid& g, std::span<const cdouble> x,
                                       int batch) {
  const int K = s.frequencies(), T = s.transmitters(), R = s.receivers();
  const std::size_t V = g.voxels();
  require(x.size() == V * batch, "forward_reference: x has the wrong size");
  std::vector<cdouble> y(s.samples_per_frame() * batch);
  const cdouble j(0.0, 1.0);
  for (int n = 0; n < batch; ++n)
    for (int k = 0; k < K; ++k) {
      const double kappa = wavenumber(s.sweep[k]);
      for (int t = 0; t < T; ++t)
        for (int r = 0; r < R; ++r) {
          cdouble acc = 0;
          for (int ix = 0; ix < g.x().size; ++ix)
            for (int iy = 0; iy < g.y().size; ++iy)
              for (int iz = 0; iz < g.z().size; ++iz) {
                const double px = g.x()[ix], py = g.y()[iy], pz = g.z()[iz];
                const double rt = distance(s.array.tx()[t], px, py, pz);
                const double rr = distance(s.array.rx()[r], px, py, pz);
                acc +=
                    x[n * V + g.index(ix, iy, iz)] * std::exp(-j * kappa * (rt + rr)) / (4.0 * kPi * rt * rr);
              }
          y[((std::size_t(n) * K + k) * T + t) * R + r] = acc;
        }
    }
  return y;
}

std::vector<cdouble> image_reference(Method method, const RadarSystem& s, const ImagingGrid& g,
                                     std::span<const cdouble> y, int batch) {
  const int K = s.frequencies(), T = s.transmitters(), R = s.receivers();
  const std::size_t V = g.voxels();
  require(y.size() == s.samples_per_frame() * batch, "image_reference: y has the wrong size");
  std::vector<cdouble> x(V * batch);
  for (int n = 0; n < batch; ++n)
    for (int ix = 0; ix < g.x().size; ++ix)
      for (int iy = 0; iy < g.y().size; ++iy)
        for (int iz = 0; iz < g.z().size; ++iz) {
          const double px = g.x()[ix], py = g.y()[iy], pz = g.z()[iz];
          cdouble acc = 0;
          for (int k = 0; k < K; ++k) {
            const double kappa = wavenumber(s.sweep[k]);
            for (int t = 0; t < T; ++t)
              for (int r = 0; r < R; ++r) {
                const Vec3& pt = s.array.tx()[t];
                const Vec3& pr = s.array.rx()[r];
                const double rt = distance(pt, px, py, pz), rr = distance(pr, px, py, pz);
                acc += image_weight_reference(method, kappa, rt, rr, pz - pt.z, pz - pr.z) *
                       y[((std::size_t(n) * K + k) * T + t) * R + r];
              }
          }
          x[n * V + g.index(ix, iy, iz)] = acc;
        }
  return x;
}

}  // namespace nfmimo
