// The learned methods' per-frame max normalisation, once: a CPU implementation here (kernels/normalise.cpp)
// and a CUDA one (kernels/gpu_normalise.cu) that round alike, because both evaluate the formulas below.
//
//   peak      = max_v |a[f, v]|                  |a| in float (std::abs / hypotf), the maximum exact
//   scale     = 1 / peak in double, or 1 when peak = 0 (an all-zero frame stays zero)
//   Magnitude out[f, 0, v] = float(|a| * scale)          (deep2s and its variants, training targets)
//   Complex   out[f, 0, v] = float(Re a * scale), out[f, 1, v] = float(Im a * scale)      (cv-deep2s)
//   scales    s[f] = float(scale)                        (Deep2S+ / DeepDI scale the measurements by it)
// Each product is formed in double and rounded once to float, so the CPU result does not depend on how the
// loops are split, and the GPU reproduces it up to the last bit of |a| (hypotf against the C library's
// cabsf).
#pragma once

#include <cstddef>

#include "radar/complex.hpp"
#include "radar/physics.hpp"

namespace nfmimo {

enum class NormaliseMode { Magnitude, Complex };

NFMIMO_HD double frame_max_scale(float peak) { return peak > 0.0f ? 1.0 / double(peak) : 1.0; }
NFMIMO_HD float scale_to_float(float value, double scale) { return float(double(value) * scale); }

// CPU: out has frames * voxels floats (Magnitude) or frames * 2 * voxels (Complex).
void normalise_by_frame_max(const cfloat* volumes, int frames, std::size_t voxels, NormaliseMode mode,
                            float* out);
// CPU: s[f] = float(frame_max_scale(peak of frame f)).
void frame_max_scales(const cfloat* volumes, int frames, std::size_t voxels, float* scales);

}  // namespace nfmimo
