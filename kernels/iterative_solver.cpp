#include "kernels/iterative_solver.hpp"

#include "kernels/gpu_iterative.hpp"

namespace nfmimo {

std::unique_ptr<IterativeSolver> make_iterative_solver(const Imager& imager,
                                                       const PowerIterationOptions& power) {
  if (imager.gpu()) return std::make_unique<GpuIterativeSolver>(*imager.gpu(), power);
  return std::make_unique<CpuIterativeSolver>(*imager.cpu(), power);
}

}  // namespace nfmimo
