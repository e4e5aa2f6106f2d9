// Training losses and their exact gradients (models/training/backend.hpp, LossKind).
//
// The network's output and the target are [n, 1, x, y, z] (one magnitude volume per sample, z fastest). Every
// loss is a mean, so its scale does not depend on the batch or the grid:
//   mse       (1 / (n V)) sum (o - t)^2                      gradient 2 (o - t) / (n V)
//   l1        (1 / (n V)) sum |o - t|                        gradient sign(o - t) / (n V), 0 where o == t
//   mse+ssim  mse + w (1 - (1 / n) sum_i SSIM_3D(o_i, t_i))  SSIM of models/metrics.hpp (Gaussian 11 taps,
//             data range 1) on the raw output (not normalised to its maximum: the sigmoid output and the
//             targets already lie in [0, 1], and a max-normalisation would make the loss non-smooth).
// Arithmetic is in double precision and in a fixed order (the same inputs give the same bits whatever the
// thread count), which the CPU backend's reproducibility relies on.
#pragma once

#include <span>

#include "models/metrics.hpp"
#include "models/training/backend.hpp"

namespace nfmimo::nn {

struct LossSettings {
  LossKind kind = LossKind::Mse;
  double ssim_weight = 1.0;  // mse+ssim only
};

// Returns the loss of a batch of n volumes of `shape` and, when `gradient` is not empty, writes
// d(loss)/d(output) into it (same size as `output`). InputError for sizes that do not match.
double loss_and_gradient(const LossSettings& settings, std::span<const double> output,
                         std::span<const double> target, int n, VolumeShape shape,
                         std::span<double> gradient);
// Float buffers (what the backends hold); computed in double.
double loss_and_gradient(const LossSettings& settings, const float* output, const float* target, int n,
                         VolumeShape shape, float* gradient);

}  // namespace nfmimo::nn
