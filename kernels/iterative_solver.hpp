// The iterative solvers behind one interface: the CPU or GPU backend of an Imager (radar/iterative.hpp).
#pragma once

#include <memory>

#include "kernels/imager.hpp"
#include "radar/iterative.hpp"

namespace nfmimo {

// A solver on the imager's device (CpuIterativeSolver on its CpuOperator, GpuIterativeSolver on its
// GpuImagingPlan). `imager` must outlive the solver. Runs the power iteration for the step size.
std::unique_ptr<IterativeSolver> make_iterative_solver(const Imager& imager,
                                                       const PowerIterationOptions& power = {});

}  // namespace nfmimo
