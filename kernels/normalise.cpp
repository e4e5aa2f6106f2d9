// The CPU half of the per-frame max normalisation (formulas in normalise.hpp).
#include "kernels/normalise.hpp"

#include <algorithm>
#include <cmath>

namespace nfmimo {
namespace {

float frame_peak(const cfloat* a, std::size_t voxels) {
  float peak = 0.0f;
  for (std::size_t v = 0; v < voxels; ++v) peak = std::max(peak, std::abs(a[v]));
  return peak;
}

}  // namespace

void normalise_by_frame_max(const cfloat* volumes, int frames, std::size_t voxels, NormaliseMode mode,
                            float* out) {
  for (int f = 0; f < frames; ++f) {
    const cfloat* a = volumes + std::size_t(f) * voxels;
    const double scale = frame_max_scale(frame_peak(a, voxels));
    if (mode == NormaliseMode::Complex) {
      float* re = out + std::size_t(f) * 2 * voxels;
      float* im = re + voxels;
      for (std::size_t v = 0; v < voxels; ++v)
        re[v] = scale_to_float(a[v].real(), scale), im[v] = scale_to_float(a[v].imag(), scale);
    } else {
      float* m = out + std::size_t(f) * voxels;
      for (std::size_t v = 0; v < voxels; ++v) m[v] = scale_to_float(std::abs(a[v]), scale);
    }
  }
}

void frame_max_scales(const cfloat* volumes, int frames, std::size_t voxels, float* scales) {
  for (int f = 0; f < frames; ++f)
    scales[f] = float(frame_max_scale(frame_peak(volumes + std::size_t(f) * voxels, voxels)));
}

}  // namespace nfmimo
