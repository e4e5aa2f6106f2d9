#include "models/training/losses.hpp"

#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "radar/error.hpp"

namespace nfmimo::nn {

double loss_and_gradient(const LossSettings& settings, std::span<const double> output,
                         std::span<const double> target, int n, VolumeShape shape,
                         std::span<double> gradient) {
  const std::size_t V = shape.voxels(), total = V * std::size_t(n);
  require(n >= 1, "loss: the batch is empty");
  require(output.size() == total && target.size() == total,
          fmt::format("loss: {} output and {} target values for {} volumes of {} voxels", output.size(),
                      target.size(), n, V));
  const bool want_grad = !gradient.empty();
  require(!want_grad || gradient.size() == total, "loss: the gradient buffer has the wrong size");
  const double inv = 1.0 / double(total);

  double loss = 0;
  switch (settings.kind) {
    case LossKind::Mse:
    case LossKind::MseSsim:
      for (std::size_t i = 0; i < total; ++i) {
        const double d = output[i] - target[i];
        loss += d * d;
        if (want_grad) gradient[i] = 2 * d * inv;
      }
      loss *= inv;
      break;
    case LossKind::L1:
      for (std::size_t i = 0; i < total; ++i) {
        const double d = output[i] - target[i];
        loss += std::abs(d);
        // The subgradient 0 at d == 0 (what PyTorch's L1Loss uses).
        if (want_grad) gradient[i] = (d > 0 ? inv : d < 0 ? -inv : 0.0);
      }
      loss *= inv;
      break;
  }
  if (settings.kind == LossKind::MseSsim) {
    // Samples are independent: each writes its own SSIM and gradient slice; the sum runs in sample order.
    std::vector<double> ssim(std::size_t(n), 0.0);
    std::vector<double> g(want_grad ? total : 0);
#pragma omp parallel for schedule(static)
    for (int s = 0; s < n; ++s) {
      const std::size_t off = std::size_t(s) * V;
      const auto o = output.subspan(off, V), t = target.subspan(off, V);
      ssim[std::size_t(s)] = want_grad
                                 ? ssim_3d_with_gradient(o, t, shape, std::span<double>(g).subspan(off, V))
                                 : ssim_3d(o, t, shape);
    }
    double mean_ssim = 0;
    for (double v : ssim) mean_ssim += v;
    mean_ssim /= n;
    loss += settings.ssim_weight * (1 - mean_ssim);
    if (want_grad) {
      const double scale = settings.ssim_weight / n;
      for (std::size_t i = 0; i < total; ++i) gradient[i] -= scale * g[i];
    }
  }
  return loss;
}

double loss_and_gradient(const LossSettings& settings, const float* output, const float* target, int n,
                         VolumeShape shape, float* gradient) {
  const std::size_t total = shape.voxels() * std::size_t(std::max(n, 0));
  const std::vector<double> o(output, output + total), t(target, target + total);
  std::vector<double> g(gradient ? total : 0);
  const double loss = loss_and_gradient(settings, o, t, n, shape, g);
  if (gradient)
    for (std::size_t i = 0; i < total; ++i) gradient[i] = float(g[i]);
  return loss;
}

}  // namespace nfmimo::nn
