// The learned pipelines' per-sample normalisation on the GPU: the physics stage's complex volumes become the
// network's input in one kernel (docs/networks.md, "Pipelines"), for the pipelines and for the trainer's GPU
// data path (synthesizer -> adjoint -> this -> network, all on the device). The formulas and their rounding
// are those of the CPU implementation (kernels/normalise.hpp), evaluated by the same functions.
//
// One block per frame finds the maximum and writes the frame (the second read hits L2). Device pointers,
// ordered on `stream`, no host synchronisation. This header compiles without nvcc; a build without CUDA
// throws InputError.
#pragma once

#include <cstddef>

#include "kernels/normalise.hpp"
#include "radar/complex.hpp"
#include "kernels/device_buffer.hpp"

namespace nfmimo {

void normalise_by_sample_max(const cfloat* d_volumes, float* d_input, int frames, std::size_t voxels,
                             NormaliseMode mode, cudaStream_t stream);
// d_scales[f] = float(1 / max_v |a[f, v]|) (1 for an all-zero frame), as frame_max_scales on the CPU.
void frame_max_scales_device(const cfloat* d_volumes, int frames, std::size_t voxels, float* d_scales,
                             cudaStream_t stream);

// out[i] = |in[i]| (no normalisation): the training targets of the GPU data path (the synthesizer's complex
// scenes -> the magnitudes the network learns to output).
void complex_magnitude(const cfloat* d_in, float* d_out, std::size_t count, cudaStream_t stream);

}  // namespace nfmimo
