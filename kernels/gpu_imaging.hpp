// The physics operators on the GPU: matrix-free forward and imaging kernels, and the fast FFT-mode adjoint.
//
// A plan per (system, grid, maximum batch) owns the geometry tables, cuFFT plans and scratch memory, so
// executing it allocates nothing. Device-pointer entry points take an explicit stream and never synchronise;
// the host wrappers upload, execute, download and synchronise (tests, CLI). This header compiles without
// nvcc.
#pragma once

#include <memory>

#include "radar/complex.hpp"
#include "radar/physics.hpp"
#include "radar/system.hpp"
#include "kernels/device_buffer.hpp"

namespace nfmimo {

class GpuImagingPlan {
 public:
  // Throws InputError when CUDA is unavailable (built without it, or no GPU) and OutOfMemoryError when the
  // scratch for `max_batch` does not fit.
  GpuImagingPlan(const RadarSystem& system, const ImagingGrid& grid, int max_batch,
                 int fast_oversampling = 16);
  ~GpuImagingPlan();
  GpuImagingPlan(const GpuImagingPlan&) = delete;
  GpuImagingPlan& operator=(const GpuImagingPlan&) = delete;

  const RadarSystem& system() const;
  const ImagingGrid& grid() const;
  int max_batch() const;

  // Device memory: x [batch, V], y [batch, K, T, R] (cfloat has float2's layout). batch <= max_batch.
  // forward and fast-mode image write the plan's scratch, which serves one stream at a time: a call on
  // another stream while the previous one still has work queued on this plan throws Error (one plan per
  // stream, or synchronise before switching). These methods are const in the operator's sense, not
  // thread-safe.
  void forward(const cfloat* d_x, cfloat* d_y, int batch, cudaStream_t stream) const;
  void image(Method method, ImagingMode mode, const cfloat* d_y, cfloat* d_x, int batch,
             cudaStream_t stream) const;

  // Host memory, any batch (processed in chunks of max_batch); synchronous.
  void forward_host(const cfloat* x, cfloat* y, int batch) const;
  void image_host(Method method, ImagingMode mode, const cfloat* y, cfloat* x, int batch) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nfmimo
