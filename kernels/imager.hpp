// One interface to the physics operators on either device, for host memory: the CPU plan (CpuOperator) or the
// GPU plan (GpuImagingPlan), chosen once from --device (auto picks the GPU when one is present).
#pragma once

#include <memory>
#include <string>

#include "kernels/device.hpp"
#include "kernels/gpu_imaging.hpp"
#include "radar/cpu_operator.hpp"

namespace nfmimo {

class Imager {
 public:
  // `max_batch` sizes the GPU plan's scratch; host calls of any batch are processed in chunks of it.
  Imager(const RadarSystem& system, const ImagingGrid& grid, DeviceKind requested, int max_batch = 64);
  ~Imager();

  DeviceKind device() const { return device_; }
  std::string device_description() const;
  const RadarSystem& system() const { return system_; }
  const ImagingGrid& grid() const { return grid_; }

  void forward(const cfloat* x, cfloat* y, int batch) const;
  void image(Method method, ImagingMode mode, const cfloat* y, cfloat* x, int batch) const;

  const CpuOperator* cpu() const { return cpu_.get(); }
  const GpuImagingPlan* gpu() const { return gpu_.get(); }

 private:
  RadarSystem system_;
  ImagingGrid grid_;
  DeviceKind device_;
  std::unique_ptr<CpuOperator> cpu_;
  std::unique_ptr<GpuImagingPlan> gpu_;
};

}  // namespace nfmimo
