// Complex sample types. std::complex<float> is layout-compatible with float[2] and with CUDA's float2,
// which is what lets host buffers, HDF5 compounds {r, i} and device buffers share one memory layout.
#pragma once

#include <complex>
#include <cstddef>

namespace nfmimo {

using cfloat = std::complex<float>;
using cdouble = std::complex<double>;

static_assert(sizeof(cfloat) == 2 * sizeof(float));
static_assert(sizeof(cdouble) == 2 * sizeof(double));

}  // namespace nfmimo
