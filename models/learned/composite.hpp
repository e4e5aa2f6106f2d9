// DeepDI and Deep2S+ (the paper's purely learned first stages): a complex dense layer from the measurements
// to a complex volume (ComplexDense) followed by the CV U-Net (the cv-unet3d graph), trained jointly.
//
//   deepdi       dense weights from random initialisation (ComplexDense::random), U-Net from He-normal
//   deep2s-plus  dense weights initialised to the adjoint A^H (ComplexDense::adjoint), bias 0
//
// Input normalisation (fixed, not learned): each frame's measurements y are multiplied by
//   s = 1 / max_v |(A^H y)[v]|
// the inverse of the largest magnitude of its exact adjoint image (an all-zero adjoint gives s = 1). So
// Deep2S+ at initialisation feeds the CV U-Net exactly what cv-deep2s feeds it (normalise_network_input's
// complex channels), up to float rounding, and both composites see inputs of the same scale whatever the
// scene's reflectivity. The cost is one exact adjoint per frame besides the dense layer.
//
// The dense layer's parameters live in the Model's Parameters next to the U-Net's, as float32 tensors whose
// memory is the complex layout of ComplexDense ([Re, Im] pairs), so the 573 MB matrix of K=15 exists once and
// Adam updates its real and imaginary parts like any other parameter (the real-parameter gradient convention
// of models/learned/complex_dense.hpp):
//   dense.weight  [V, M, 2]  W[v, m] = A^H[v, m] for Deep2S+ at initialisation (V voxels, M = K*T*R)
//   dense.bias    [V, 2]
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/nn/graph.hpp"
#include "models/training/backend.hpp"
#include "radar/complex.hpp"
#include "radar/system.hpp"

namespace nfmimo::nn {

inline constexpr const char* kDenseWeight = "dense.weight";
inline constexpr const char* kDenseBias = "dense.bias";

// The dense layer's parameter specs for a system and grid (shapes above).
std::vector<ParameterSpec> dense_parameter_specs(const RadarSystem& system, const ImagingGrid& grid);
// Adds the dense layer's initial parameters of `architecture` (deepdi: random from `seed`; deep2s-plus: A^H).
void add_initial_dense_parameters(const std::string& architecture, const RadarSystem& system,
                                  const ImagingGrid& grid, std::uint64_t seed, Parameters& parameters);
// The parameters without the dense layer's (what the U-Net backends take); copies only the U-Net's.
Parameters without_dense_parameters(const Parameters& parameters);
// Views of the dense layer's tensors as complex arrays (W [V][M], b [V]).
const cfloat* dense_weights(const Parameters& parameters);
const cfloat* dense_bias(const Parameters& parameters);

// s[f] = 1 / max_v |adjoint[f, v]| (1 for an all-zero frame), from the exact adjoint [frames, V].
void measurement_scales(const cfloat* adjoint, int frames, std::size_t voxels, float* scales);
// out [frames, M] = y [frames, M] * s[f]: the composites' training input (as floats, [Re, Im] pairs).
void scale_measurements(const cfloat* measurements, int frames, std::size_t samples, const float* scales,
                        cfloat* out);

// The CPU training backend of a composite: dense layer (Eigen GEMMs) + CpuNetwork (the U-Net) in training
// mode, the loss, global-norm clipping over both, AdamW on both (the dense weight counts as a decayed
// weight). `network` is the cv-unet3d graph; `initial` holds its parameters and the dense layer's for
// `samples` inputs (M) and the network's voxels. Its step() takes input [n, M] complex (scaled measurements,
// as floats).
std::unique_ptr<TrainingBackend> make_cpu_composite_training_backend(const Network& network, int samples,
                                                                     Parameters initial);

}  // namespace nfmimo::nn
