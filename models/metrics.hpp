// Image-quality metrics as the paper reports them (definitions and edge handling: docs/metrics.md).
//
// Every metric compares magnitude volumes [nx, ny, nz] (z fastest) after each volume has been normalised to a
// maximum of 1. The low-level functions take volumes that are already on a common scale (no normalisation),
// so that they can be checked against scikit-image on arbitrary data; image_quality() normalises and computes
// all. Arithmetic is in double precision throughout.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "radar/complex.hpp"
#include "radar/system.hpp"

namespace nfmimo {

struct VolumeShape {
  int nx = 0, ny = 0, nz = 0;

  static VolumeShape of(const ImagingGrid& grid) { return {grid.x().size, grid.y().size, grid.z().size}; }
  std::size_t voxels() const { return std::size_t(nx) * ny * nz; }
};

// |v| / max|v|; an all-zero volume stays all zero (its metrics are then those of a blank image).
std::vector<double> normalized_magnitude(std::span<const float> magnitude);
std::vector<double> normalized_magnitude(std::span<const cfloat> volume);

// mean((a - b)^2).
double mean_squared_error(std::span<const double> estimate, std::span<const double> truth);
// 10 log10(peak^2 / MSE) in dB; +infinity for identical volumes (scikit-image's peak_signal_noise_ratio with
// data_range = peak).
double psnr_db(std::span<const double> estimate, std::span<const double> truth, double peak = 1.0);
// ||a - b||^2 / ||b||^2 (b the truth); +infinity when the truth is all zero and the estimate is not, 0 when
// both are.
double nmse(std::span<const double> estimate, std::span<const double> truth);

// SSIM of Wang et al. (2004) with Gaussian-weighted local statistics.
struct SsimParams {
  double sigma = 1.5;  // Gaussian window; radius = int(truncate * sigma + 0.5) = 5 taps each side (11 taps)
  double truncate = 3.5;
  double k1 = 0.01, k2 = 0.03;
  double data_range = 1.0;
};
// True 3D SSIM: local statistics over 11 x 11 x 11 Gaussian windows, averaged over the voxels at least
// `radius` from every face (scikit-image structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
// use_sample_covariance=False, data_range=1) on the [nx, ny, nz] array).
double ssim_3d(std::span<const double> estimate, std::span<const double> truth, VolumeShape shape,
               const SsimParams& params = {});
// ssim_3d and its gradient with respect to the estimate, written into `gradient` (the estimate's size): the
// SSIM term of the training loss (models/training/losses.hpp). Checked against finite differences in double.
double ssim_3d_with_gradient(std::span<const double> estimate, std::span<const double> truth,
                             VolumeShape shape, std::span<double> gradient, const SsimParams& params = {});
// The authors' variant: 2D SSIM of each x-y slice (11 x 11 windows), averaged over the nz slices.
double ssim_2d_slices(std::span<const double> estimate, std::span<const double> truth, VolumeShape shape,
                      const SsimParams& params = {});

struct ImageQuality {
  double psnr_db = 0;
  double ssim_3d = 0;
  double ssim_2d = 0;  // mean over z slices of the x-y SSIM
  double nmse = 0;
};
// Normalises both magnitude volumes to a maximum of 1, then computes every metric. InputError when the sizes
// do not match the shape.
ImageQuality image_quality(std::span<const float> estimate_magnitude, std::span<const float> truth_magnitude,
                           VolumeShape shape);
ImageQuality image_quality(std::span<const cfloat> estimate, std::span<const cfloat> truth,
                           VolumeShape shape);
ImageQuality image_quality_normalized(std::span<const double> estimate, std::span<const double> truth,
                                      VolumeShape shape);

}  // namespace nfmimo
