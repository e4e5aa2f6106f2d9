#include "models/metrics.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "radar/error.hpp"

namespace nfmimo {
namespace {

void require_same_size(std::size_t a, std::size_t b, const char* what) {
  require(a == b, fmt::format("{}: the volumes differ in size ({} vs {} voxels)", what, a, b));
}

void require_shape(std::size_t size, VolumeShape shape, const char* what) {
  require(shape.nx >= 1 && shape.ny >= 1 && shape.nz >= 1,
          fmt::format("{}: invalid volume shape {} x {} x {}", what, shape.nx, shape.ny, shape.nz));
  require(size == shape.voxels(), fmt::format("{}: a volume has {} voxels but the shape {} x {} x {} has {}",
                                              what, size, shape.nx, shape.ny, shape.nz, shape.voxels()));
}

// scipy.ndimage's 'reflect' extension (half-sample symmetric: d c b a | a b c d | d c b a), periodic with
// period 2n, so that it is defined for lines shorter than the filter radius too.
int reflect_index(int i, int n) {
  const int period = 2 * n;
  int m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - 1 - m;
}

// Normalised Gaussian taps exp(-x^2 / (2 sigma^2)), x = -r..r (scipy's _gaussian_kernel1d).
std::vector<double> gaussian_taps(const SsimParams& p) {
  require(p.sigma > 0 && std::isfinite(p.sigma), "SSIM: sigma must be positive");
  const int r = static_cast<int>(p.truncate * p.sigma + 0.5);
  std::vector<double> w(2 * r + 1);
  double sum = 0;
  for (int x = -r; x <= r; ++x) sum += w[x + r] = std::exp(-0.5 * x * x / (p.sigma * p.sigma));
  for (double& v : w) v /= sum;
  return w;
}

// Applies `filter(line, out)` to every line of a [nx, ny, nz] array along each axis with axes[axis] set, in
// place: `line` holds the line's samples, `out` (same length) receives the result.
template <class Filter>
void for_each_line(std::vector<double>& a, const std::array<int, 3>& dims, const std::array<bool, 3>& axes,
                   Filter filter) {
  const std::array<std::size_t, 3> stride = {std::size_t(dims[1]) * dims[2], std::size_t(dims[2]), 1};
  std::vector<double> line, out;
  for (int axis = 0; axis < 3; ++axis) {
    if (!axes[axis]) continue;
    const int n = dims[axis];
    line.resize(n);
    out.resize(n);
    // Every line along `axis`: iterate over the other two indices.
    const int o1 = axis == 0 ? 1 : 0, o2 = axis == 2 ? 1 : 2;
    for (int i1 = 0; i1 < dims[o1]; ++i1)
      for (int i2 = 0; i2 < dims[o2]; ++i2) {
        const std::size_t base = i1 * stride[o1] + i2 * stride[o2];
        for (int i = 0; i < n; ++i) line[i] = a[base + i * stride[axis]];
        filter(line, out);
        for (int i = 0; i < n; ++i) a[base + i * stride[axis]] = out[i];
      }
  }
}

// Separable filtering of a [nx, ny, nz] array along the axes with axes[axis] set, in place (reflected edges).
void gaussian_filter(std::vector<double>& a, const std::array<int, 3>& dims, const std::array<bool, 3>& axes,
                     const std::vector<double>& taps) {
  const int r = static_cast<int>(taps.size() / 2);
  for_each_line(a, dims, axes, [&](const std::vector<double>& line, std::vector<double>& out) {
    const int n = static_cast<int>(line.size());
    for (int i = 0; i < n; ++i) {
      double s = 0;
      for (int k = -r; k <= r; ++k) s += taps[k + r] * line[reflect_index(i + k, n)];
      out[i] = s;
    }
  });
}

// The adjoint (transpose) of gaussian_filter: every output sample scatters back to the input samples it was
// read from, through the same reflection. Filtering along one axis is a linear map F_axis; the composite is
// F_z F_y F_x, and since each F acts on a different index they commute, so the adjoint is the same product of
// transposes in any order.
void gaussian_filter_adjoint(std::vector<double>& a, const std::array<int, 3>& dims,
                             const std::array<bool, 3>& axes, const std::vector<double>& taps) {
  const int r = static_cast<int>(taps.size() / 2);
  for_each_line(a, dims, axes, [&](const std::vector<double>& line, std::vector<double>& out) {
    const int n = static_cast<int>(line.size());
    std::fill(out.begin(), out.end(), 0.0);
    for (int i = 0; i < n; ++i)
      for (int k = -r; k <= r; ++k) out[reflect_index(i + k, n)] += taps[k + r] * line[i];
  });
}

// Mean SSIM over the voxels of the crop: along each filtered axis, `radius` samples are dropped at both ends
// (scikit-image's crop(S, pad)); an axis too short for that (n <= 2 radius, which scikit-image refuses) keeps
// every sample.
// With `grad` not empty, also writes d(mean SSIM)/d(a) into it (the SSIM training loss).
double mean_ssim(std::span<const double> a, std::span<const double> b, VolumeShape shape,
                 const std::array<bool, 3>& axes, const SsimParams& p, const char* what,
                 std::span<double> grad = {}) {
  require_same_size(a.size(), b.size(), what);
  require_shape(b.size(), shape, what);
  require(p.data_range > 0 && p.k1 >= 0 && p.k2 >= 0, fmt::format("{}: invalid SSIM constants", what));
  const std::vector<double> taps = gaussian_taps(p);
  const int radius = static_cast<int>(taps.size() / 2);
  const std::array<int, 3> dims = {shape.nx, shape.ny, shape.nz};
  const std::size_t V = shape.voxels();

  std::vector<double> ux(a.begin(), a.end()), uy(b.begin(), b.end()), uxx(V), uyy(V), uxy(V);
  for (std::size_t i = 0; i < V; ++i) {
    uxx[i] = a[i] * a[i];
    uyy[i] = b[i] * b[i];
    uxy[i] = a[i] * b[i];
  }
  for (auto* f : {&ux, &uy, &uxx, &uyy, &uxy}) gaussian_filter(*f, dims, axes, taps);

  const double c1 = (p.k1 * p.data_range) * (p.k1 * p.data_range);
  const double c2 = (p.k2 * p.data_range) * (p.k2 * p.data_range);
  std::array<int, 3> lo{}, hi{};
  for (int d = 0; d < 3; ++d) {
    const bool crop = axes[d] && dims[d] > 2 * radius;
    lo[d] = crop ? radius : 0;
    hi[d] = crop ? dims[d] - radius : dims[d];
  }
  const bool want_grad = !grad.empty();
  if (want_grad) require_same_size(grad.size(), V, what);
  // Gradient: S = A1 A2 / (B1 B2) with A1 = 2 ux uy + c1, A2 = 2 (uxy - ux uy) + c2, B1 = ux^2 + uy^2 + c1,
  // B2 = (uxx - ux^2) + (uyy - uy^2) + c2, where ux = G a, uxx = G a^2, uxy = G (a b) are the filtered
  // fields. dS/dux, dS/duxx, dS/duxy per voxel (zero outside the crop) are pulled back through G^T, then
  // dS/da = G^T dS/dux + 2 a G^T dS/duxx + b G^T dS/duxy. B1 >= c1 > 0 and B2 >= c2 > 0 (G has positive
  // weights summing to one, so the filtered variances are non-negative), hence no division by zero.
  std::vector<double> g_u, g_uu, g_ub;
  if (want_grad) g_u.assign(V, 0.0), g_uu.assign(V, 0.0), g_ub.assign(V, 0.0);
  double sum = 0;
  std::size_t count = 0;
  for (int ix = lo[0]; ix < hi[0]; ++ix)
    for (int iy = lo[1]; iy < hi[1]; ++iy)
      for (int iz = lo[2]; iz < hi[2]; ++iz) {
        const std::size_t i = (std::size_t(ix) * dims[1] + iy) * dims[2] + iz;
        // Population (co)variances (use_sample_covariance=False), as in Wang et al. 2004.
        const double vx = uxx[i] - ux[i] * ux[i], vy = uyy[i] - uy[i] * uy[i], vxy = uxy[i] - ux[i] * uy[i];
        const double a1 = 2 * ux[i] * uy[i] + c1, a2 = 2 * vxy + c2;
        const double b1 = ux[i] * ux[i] + uy[i] * uy[i] + c1, b2 = vx + vy + c2;
        const double s = a1 * a2 / (b1 * b2);
        sum += s;
        ++count;
        if (want_grad) {
          g_u[i] = 2 * uy[i] * (a2 - a1) / (b1 * b2) + 2 * ux[i] * s * (1 / b2 - 1 / b1);
          g_uu[i] = -s / b2;
          g_ub[i] = 2 * a1 / (b1 * b2);
        }
      }
  const double inv_count = 1.0 / static_cast<double>(count);
  if (want_grad) {
    for (auto* f : {&g_u, &g_uu, &g_ub}) gaussian_filter_adjoint(*f, dims, axes, taps);
    for (std::size_t i = 0; i < V; ++i) grad[i] = (g_u[i] + 2 * a[i] * g_uu[i] + b[i] * g_ub[i]) * inv_count;
  }
  return sum * inv_count;
}

template <class T>
std::vector<double> normalize(std::span<const T> v) {
  std::vector<double> out(v.size());
  double peak = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    out[i] = std::abs(v[i]);
    require(std::isfinite(out[i]), fmt::format("image quality: voxel {} is not finite", i));
    peak = std::max(peak, out[i]);
  }
  if (peak > 0)
    for (double& x : out) x /= peak;
  return out;
}

}  // namespace

std::vector<double> normalized_magnitude(std::span<const float> magnitude) { return normalize(magnitude); }
std::vector<double> normalized_magnitude(std::span<const cfloat> volume) { return normalize(volume); }

double mean_squared_error(std::span<const double> estimate, std::span<const double> truth) {
  require_same_size(estimate.size(), truth.size(), "MSE");
  require(!truth.empty(), "MSE: the volumes are empty");
  double s = 0;
  for (std::size_t i = 0; i < truth.size(); ++i) s += (estimate[i] - truth[i]) * (estimate[i] - truth[i]);
  return s / static_cast<double>(truth.size());
}

double psnr_db(std::span<const double> estimate, std::span<const double> truth, double peak) {
  const double mse = mean_squared_error(estimate, truth);
  if (mse == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(peak * peak / mse);
}

double nmse(std::span<const double> estimate, std::span<const double> truth) {
  require_same_size(estimate.size(), truth.size(), "NMSE");
  double err = 0, ref = 0;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    err += (estimate[i] - truth[i]) * (estimate[i] - truth[i]);
    ref += truth[i] * truth[i];
  }
  if (ref == 0) return err == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return err / ref;
}

double ssim_3d(std::span<const double> estimate, std::span<const double> truth, VolumeShape shape,
               const SsimParams& params) {
  return mean_ssim(estimate, truth, shape, {true, true, true}, params, "SSIM (3D)");
}

double ssim_3d_with_gradient(std::span<const double> estimate, std::span<const double> truth,
                             VolumeShape shape, std::span<double> gradient, const SsimParams& params) {
  require(!gradient.empty(), "SSIM (3D) gradient: no output buffer");
  return mean_ssim(estimate, truth, shape, {true, true, true}, params, "SSIM (3D)", gradient);
}

double ssim_2d_slices(std::span<const double> estimate, std::span<const double> truth, VolumeShape shape,
                      const SsimParams& params) {
  // Filtering along x and y only makes every z slice an independent 2D image; the mean over the union of the
  // equally sized slice crops is the mean over slices of each slice's mean SSIM.
  return mean_ssim(estimate, truth, shape, {true, true, false}, params, "SSIM (2D slices)");
}

ImageQuality image_quality_normalized(std::span<const double> estimate, std::span<const double> truth,
                                      VolumeShape shape) {
  require_same_size(estimate.size(), truth.size(), "image quality");
  require_shape(truth.size(), shape, "image quality");
  ImageQuality q;
  q.psnr_db = psnr_db(estimate, truth, 1.0);
  q.nmse = nmse(estimate, truth);
  q.ssim_3d = ssim_3d(estimate, truth, shape);
  q.ssim_2d = ssim_2d_slices(estimate, truth, shape);
  return q;
}

ImageQuality image_quality(std::span<const float> estimate_magnitude, std::span<const float> truth_magnitude,
                           VolumeShape shape) {
  require_same_size(estimate_magnitude.size(), truth_magnitude.size(), "image quality");
  return image_quality_normalized(normalize(estimate_magnitude), normalize(truth_magnitude), shape);
}

ImageQuality image_quality(std::span<const cfloat> estimate, std::span<const cfloat> truth,
                           VolumeShape shape) {
  require_same_size(estimate.size(), truth.size(), "image quality");
  return image_quality_normalized(normalize(estimate), normalize(truth), shape);
}

}  // namespace nfmimo
