// GpuIterativeSolver in a build without CUDA: constructing one is a clear error, never a silent CPU fallback.
#include "kernels/device.hpp"
#include "kernels/gpu_iterative.hpp"
#include "radar/error.hpp"

namespace nfmimo {

struct GpuIterativeSolver::Impl {};

GpuIterativeSolver::GpuIterativeSolver(const GpuImagingPlan&, const PowerIterationOptions&) {
  throw InputError("the GPU was asked for, but " + cuda_unavailable_reason());
}
GpuIterativeSolver::~GpuIterativeSolver() = default;
double GpuIterativeSolver::lipschitz() const { return 0; }
std::vector<IterativeReport> GpuIterativeSolver::solve(const cfloat*, cfloat*, int,
                                                       const IterativeOptions&) const {
  return {};
}
std::vector<IterativeReport> GpuIterativeSolver::solve_device(const cfloat*, cfloat*, int,
                                                              const IterativeOptions&, GpuStream) const {
  return {};
}
std::string GpuIterativeSolver::device_description() const { return "none"; }

}  // namespace nfmimo
