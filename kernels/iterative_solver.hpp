// The iterative solvers behind one interface: the CPU or GPU backend of an Imager (radar/iterative.hpp).
#pragma once

#include <memory>

#include "kernels/imager.hpp"
#include "radar/iterative.hpp"
#include "radar/pnp.hpp"

namespace nfmimo {

// A solver on the imager's device (CpuIterativeSolver on its CpuOperator, GpuIterativeSolver on its
// GpuImagingPlan). `imager` must outlive the solver. Runs the power iteration for the step size.
std::unique_ptr<IterativeSolver> make_iterative_solver(const Imager& imager,
                                                       const PowerIterationOptions& power = {});

// The imager's exact forward and adjoint for one frame on host memory, for the plug-and-play solver: on the
// GPU through GpuImagingPlan's host wrappers (each call uploads and downloads one frame, 0.25 MB on the
// paper's grid, small next to the denoiser's work). `imager` must outlive the result.
PnpOperator pnp_operator(const Imager& imager);

}  // namespace nfmimo
