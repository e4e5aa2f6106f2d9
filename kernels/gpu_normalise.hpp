// The learned pipelines' per-sample normalisation on the GPU: the physics stage's complex volumes become the
// network's input in one kernel (docs/networks.md, "Pipelines"), for the pipelines and for the trainer's GPU
// data path (synthesizer -> adjoint -> this -> network, all on the device).
//
//   Magnitude  input[f, 0, v] = |a[f, v]| / max_v |a[f, v]|                       (deep2s and its variants)
//   Complex    input[f, 0, v] = Re a[f, v] / max, input[f, 1, v] = Im a[f, v] / max (cv-deep2s)
//
// Each frame is divided by its own largest magnitude; an all-zero frame stays zero. One block per frame finds
// the maximum and writes the frame (the second read hits L2). Device pointers, ordered on `stream`, no host
// synchronisation. This header compiles without nvcc; a build without CUDA throws InputError.
#pragma once

#include <cstddef>

#include "radar/complex.hpp"

struct CUstream_st;

namespace nfmimo {

enum class NormaliseMode { Magnitude, Complex };

void normalise_by_sample_max(const cfloat* d_volumes, float* d_input, int frames, std::size_t voxels,
                             NormaliseMode mode, CUstream_st* stream);

// out[i] = |in[i]| (no normalisation): the training targets of the GPU data path (the synthesizer's complex
// scenes -> the magnitudes the network learns to output).
void complex_magnitude(const cfloat* d_in, float* d_out, std::size_t count, CUstream_st* stream);

}  // namespace nfmimo
