#include "kernels/iterative_solver.hpp"

#include "kernels/gpu_iterative.hpp"

namespace nfmimo {

std::unique_ptr<IterativeSolver> make_iterative_solver(const Imager& imager,
                                                       const PowerIterationOptions& power) {
  if (imager.gpu()) return std::make_unique<GpuIterativeSolver>(*imager.gpu(), power);
  return std::make_unique<CpuIterativeSolver>(*imager.cpu(), power);
}

PnpOperator pnp_operator(const Imager& imager) {
  if (!imager.gpu()) return pnp_operator(*imager.cpu());
  PnpOperator p;
  p.voxels = imager.grid().voxels();
  p.samples = imager.system().samples_per_frame();
  p.forward = [&imager](const cfloat* x, cfloat* y) { imager.forward(x, y, 1); };
  p.adjoint = [&imager](const cfloat* y, cfloat* x) {
    imager.image(Method::Adjoint, ImagingMode::Exact, y, x, 1);
  };
  p.device = imager.device_description();
  return p;
}

}  // namespace nfmimo
