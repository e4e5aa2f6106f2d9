// The iterative l1 / TV baselines on the GPU (radar/iterative.hpp describes the algorithm): a device-resident
// loop over the plan's forward and adjoint kernels with small kernels for the vector updates, the TV prox and
// the per-frame reductions. The per-frame FISTA decisions run on the device with the same code as the CPU
// solver (radar/iterative_math.hpp); the host only checks, every few iterations, whether any frame is still
// active.
//
// All scratch for plan.max_batch() frames is allocated by the constructor; solving allocates nothing except
// the objective history when a larger iteration limit than before is asked for. This header compiles without
// nvcc.
#pragma once

#include <memory>

#include "kernels/gpu_imaging.hpp"
#include "radar/iterative.hpp"

namespace nfmimo {

class GpuIterativeSolver final : public IterativeSolver {
 public:
  // `plan` must outlive the solver. Runs the power iteration at once. InputError when CUDA is unavailable.
  explicit GpuIterativeSolver(const GpuImagingPlan& plan, const PowerIterationOptions& power = {});
  ~GpuIterativeSolver() override;
  GpuIterativeSolver(const GpuIterativeSolver&) = delete;
  GpuIterativeSolver& operator=(const GpuIterativeSolver&) = delete;

  double lipschitz() const override;
  // Host memory, any number of frames (in chunks of the plan's max_batch); synchronous.
  std::vector<IterativeReport> solve(const cfloat* y, cfloat* x, int frames,
                                     const IterativeOptions& options) const override;
  // Device memory: y [batch, K, T, R] -> x [batch, V], batch <= plan.max_batch(). Work is queued on `stream`;
  // the call returns after the stream has finished (the reports are read back).
  std::vector<IterativeReport> solve_device(const cfloat* d_y, cfloat* d_x, int batch,
                                            const IterativeOptions& options, cudaStream_t stream) const;
  std::string device_description() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nfmimo
