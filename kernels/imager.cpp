#include "kernels/imager.hpp"

#include <omp.h>

#include <fmt/format.h>

namespace nfmimo {

Imager::Imager(const RadarSystem& system, const ImagingGrid& grid, DeviceKind requested, int max_batch)
    : system_(system), grid_(grid), device_(resolve_device(requested)) {
  if (device_ == DeviceKind::Cuda)
    gpu_ = std::make_unique<GpuImagingPlan>(system, grid, max_batch);
  else
    cpu_ = std::make_unique<CpuOperator>(system, grid);
}

Imager::~Imager() = default;

std::string Imager::device_description() const {
  if (device_ == DeviceKind::Cuda) {
    const auto info = gpu_info(0);
    return fmt::format("cuda ({})", info ? info->name : "GPU");
  }
  return fmt::format("cpu ({} threads)", omp_get_max_threads());
}

void Imager::forward(const cfloat* x, cfloat* y, int batch) const {
  if (gpu_)
    gpu_->forward_host(x, y, batch);
  else
    cpu_->forward(x, y, batch);
}

void Imager::image(Method method, ImagingMode mode, const cfloat* y, cfloat* x, int batch) const {
  if (gpu_)
    gpu_->image_host(method, mode, y, x, batch);
  else if (mode == ImagingMode::Fast)
    cpu_->image_fast(method, y, x, batch);
  else
    cpu_->image(method, y, x, batch);
}

}  // namespace nfmimo
