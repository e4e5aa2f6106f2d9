// The operator on one system and grid: the CPU plan and the GPU plan, each built on first use.
#include <nanobind/stl/string.h>

#include <limits>
#include <memory>
#include <mutex>

#if NFMIMO_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "kernels/device.hpp"
#include "kernels/gpu_imaging.hpp"
#include "radar/cpu_operator.hpp"
#include "radar/names.hpp"
#include "tools/python/src/arrays.hpp"
#include "tools/python/src/bindings.hpp"

using namespace nb::literals;

namespace nfmimo::python {
namespace {

class Operator {
 public:
  Operator(RadarSystem system, ImagingGrid grid) : system_(std::move(system)), grid_(std::move(grid)) {
    validate_system(system_, "system");
    validate_grid(grid_, system_, "grid");
  }

  const RadarSystem& system() const { return system_; }
  const ImagingGrid& grid() const { return grid_; }

  std::vector<std::size_t> measurement_shape() const {
    return {std::size_t(system_.frequencies()), std::size_t(system_.transmitters()),
            std::size_t(system_.receivers())};
  }
  std::vector<std::size_t> volume_shape() const {
    return {std::size_t(grid_.x().size), std::size_t(grid_.y().size), std::size_t(grid_.z().size)};
  }

  // y = A x. x [..., nx, ny, nz], y [..., K, T, R], same device.
  void forward(InArray x, OutArray y) {
    const std::size_t batch = check_pair(x, "x", volume_shape(), y, "out", measurement_shape());
    const auto* in = static_cast<const cfloat*>(x.data());
    auto* out = static_cast<cfloat*>(y.data());
    if (batch == 0) return;
    if (x.device_type() == kDlCuda) {
      run_gpu(x.device_id(), batch, [&](const GpuImagingPlan& plan, std::size_t first, int count) {
        plan.forward(in + first * grid_.voxels(), out + first * system_.samples_per_frame(), count, nullptr);
      });
      return;
    }
    const CpuOperator& cpu = cpu_plan();
    nb::gil_scoped_release release;
    cpu.forward(in, out, static_cast<int>(batch));
  }

  // x = W y for the method. y [..., K, T, R], x [..., nx, ny, nz].
  void image(const std::string& method_name, const std::string& mode_name, InArray y, OutArray x) {
    const Method method = parse_method(method_name);
    const ImagingMode mode = parse_mode(mode_name);
    if (mode == ImagingMode::Fast) {
      require(system_.sweep.uniform(), "mode 'fast' needs uniformly spaced frequencies");
      require(method != Method::Kirchhoff, "mode 'fast' supports adjoint and backprojection, not kirchhoff");
    }
    const std::size_t batch = check_pair(y, "y", measurement_shape(), x, "out", volume_shape());
    const auto* in = static_cast<const cfloat*>(y.data());
    auto* out = static_cast<cfloat*>(x.data());
    if (batch == 0) return;
    if (y.device_type() == kDlCuda) {
      run_gpu(y.device_id(), batch, [&](const GpuImagingPlan& plan, std::size_t first, int count) {
        plan.image(method, mode, in + first * system_.samples_per_frame(), out + first * grid_.voxels(),
                   count, nullptr);
      });
      return;
    }
    const CpuOperator& cpu = cpu_plan();
    nb::gil_scoped_release release;
    if (mode == ImagingMode::Fast)
      cpu.image_fast(method, in, out, static_cast<int>(batch));
    else
      cpu.image(method, in, out, static_cast<int>(batch));
  }

  bool cpu_ready() const { return cpu_ != nullptr; }
  bool gpu_ready() const { return gpu_ != nullptr; }

 private:
  static constexpr int kGpuBatch = 16;

  RadarSystem system_;
  ImagingGrid grid_;
  std::mutex mutex_;  // plan creation, and GPU calls (the plan's scratch is shared)
  std::unique_ptr<CpuOperator> cpu_;
  std::unique_ptr<GpuImagingPlan> gpu_;
  int gpu_device_ = -1;

  std::size_t check_pair(const InArray& in, const std::string& in_name,
                         const std::vector<std::size_t>& in_shape, const OutArray& out,
                         const std::string& out_name, const std::vector<std::size_t>& out_shape) const {
    const std::size_t batch = check_array<cfloat>(in, in_name, in_shape, "complex64");
    const std::size_t out_batch = check_array<cfloat>(as_in(out), out_name, out_shape, "complex64");
    require(out_batch == batch,
            fmt::format("{}: {} frames, but {} has {}", out_name, out_batch, in_name, batch));
    require(in.device_type() == out.device_type() && in.device_id() == out.device_id(),
            fmt::format("{} and {} are on different devices", in_name, out_name));
    require(in.device_type() == kDlCpu || in.device_type() == kDlCuda,
            fmt::format("{}: only cpu and cuda arrays are supported", in_name));
    require(batch <= std::size_t(std::numeric_limits<int>::max()),
            fmt::format("{}: too many frames", in_name));
    if (in.device_type() == kDlCuda)
      require(cuda_device_count() > 0,
              fmt::format("{} is a CUDA array, but {}", in_name, cuda_unavailable_reason()));
    return batch;
  }

  // The GIL is released before the lock is taken: a thread holding the lock must never wait for the GIL
  // while another holds the GIL and waits for the lock.
  const CpuOperator& cpu_plan() {
    nb::gil_scoped_release release;
    std::lock_guard lock(mutex_);
    if (!cpu_) cpu_ = std::make_unique<CpuOperator>(system_, grid_);
    return *cpu_;
  }

  // Runs `launch` over chunks of the plan's batch on the legacy default stream, after everything queued on
  // the device (the caller's streams) and before returning, so the arrays are ready either way.
  template <class Launch>
  void run_gpu(int device, std::size_t batch, Launch launch) {
#if NFMIMO_HAVE_CUDA
    nb::gil_scoped_release release;
    std::lock_guard lock(mutex_);
    require(gpu_device_ < 0 || gpu_device_ == device,
            fmt::format("this operator runs on cuda:{}; the array is on cuda:{}", gpu_device_, device));
    if (cudaSetDevice(device) != cudaSuccess) throw InputError(fmt::format("cannot use cuda:{}", device));
    if (!gpu_) {
      gpu_ = std::make_unique<GpuImagingPlan>(system_, grid_, kGpuBatch);
      gpu_device_ = device;
    }
    if (cudaDeviceSynchronize() != cudaSuccess) throw Error("CUDA error before the operator ran");
    for (std::size_t first = 0; first < batch; first += kGpuBatch)
      launch(*gpu_, first, static_cast<int>(std::min<std::size_t>(kGpuBatch, batch - first)));
    const cudaError_t status = cudaStreamSynchronize(nullptr);
    if (status != cudaSuccess)
      throw Error(fmt::format("CUDA error in the operator: {}", cudaGetErrorString(status)));
#else
    (void)device, (void)batch, (void)launch;
    throw InputError("a CUDA array was given, but nfmimo was built without CUDA");
#endif
  }
};

}  // namespace

void bind_operator(nb::module_& m) {
  nb::class_<Operator>(m, "Operator")
      .def(nb::init<RadarSystem, ImagingGrid>(), "system"_a, "grid"_a)
      .def_prop_ro("system", &Operator::system)
      .def_prop_ro("grid", &Operator::grid)
      .def("forward", &Operator::forward, "x"_a, "out"_a)
      .def("image", &Operator::image, "method"_a, "mode"_a, "y"_a, "out"_a)
      .def_prop_ro("cpu_ready", &Operator::cpu_ready)
      .def_prop_ro("gpu_ready", &Operator::gpu_ready);
}

}  // namespace nfmimo::python
