// nfmimo._core: the engine's systems, grids, operators, method table, files and synthesizer for Python.
//
// Arrays cross the boundary through DLPack (nanobind ndarrays): the operators read their input and write
// their output in place, on the host or on the GPU, without copies; everything that allocates its result in
// C++ (reconstruct, files, the synthesizer) hands the buffer over to a numpy array that owns it. The Python
// layer (tools/python/nfmimo/) converts dtypes and layouts and allocates operator outputs; this layer checks
// every array again before any work, so a wrong call is a ValueError and never a crash. Every long call
// releases the GIL.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <omp.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#if NFMIMO_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "data/hdf5.hpp"
#include "data/measurement_file.hpp"
#include "kernels/device.hpp"
#include "kernels/gpu_imaging.hpp"
#include "models/learned/pipeline.hpp"
#include "models/weights.hpp"
#include "radar/cpu_operator.hpp"
#include "radar/error.hpp"
#include "radar/names.hpp"
#include "radar/system.hpp"
#include "synthesizer/dataset.hpp"
#include "synthesizer/scene.hpp"
#include "synthesizer/synthesizer.hpp"
#include "tools/methods.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace nfmimo {
namespace {

using InArray = nb::ndarray<nb::ro>;  // any dtype, device and layout: checked by hand below
using OutArray = nb::ndarray<>;

constexpr int kDlCpu = 1, kDlCuda = 2;

// numpy array owning a moved vector (no copy on the way out).
template <class T>
nb::ndarray<nb::numpy, T> to_numpy(std::vector<T>&& data, const std::vector<std::size_t>& shape) {
  auto* owner = new std::vector<T>(std::move(data));
  nb::capsule capsule(owner, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(owner->data(), shape.size(), shape.data(), capsule);
}

std::string shape_text(const nb::ndarray<nb::ro>& a) {
  std::string s = "(";
  for (std::size_t i = 0; i < a.ndim(); ++i) s += fmt::format("{}{}", i ? ", " : "", a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string dims_text(const std::vector<std::size_t>& dims) {
  std::string s;
  for (std::size_t i = 0; i < dims.size(); ++i) s += fmt::format("{}{}", i ? ", " : "", dims[i]);
  return s;
}

// Checks `a` is a C-contiguous array of T whose last dimensions are `trailing`; returns the product of the
// leading (batch) dimensions. InputError (ValueError in Python) naming `what` otherwise.
template <class T>
std::size_t check_array(const nb::ndarray<nb::ro>& a, const std::string& what,
                        const std::vector<std::size_t>& trailing, const char* dtype_name) {
  require(a.dtype() == nb::dtype<T>(), fmt::format("{}: expected dtype {}", what, dtype_name));
  const std::size_t nd = a.ndim();
  require(nd >= trailing.size(),
          fmt::format("{}: expected shape (..., {}), got {}", what, dims_text(trailing), shape_text(a)));
  for (std::size_t i = 0; i < trailing.size(); ++i)
    require(a.shape(nd - trailing.size() + i) == trailing[i],
            fmt::format("{}: expected shape (..., {}), got {}", what, dims_text(trailing), shape_text(a)));
  std::size_t batch = 1;
  for (std::size_t i = 0; i + trailing.size() < nd; ++i) batch *= a.shape(i);
  if (a.size() == 0) return batch;  // an empty array has no layout to check (exporters differ on its strides)
  std::int64_t expect = 1;
  for (std::size_t i = nd; i-- > 0;) {
    require(a.shape(i) <= 1 || a.stride(i) == expect,
            fmt::format("{}: the array is not C-contiguous (strides differ from its shape)", what));
    expect *= static_cast<std::int64_t>(a.shape(i));
  }
  return batch;
}

// A new array that owns its buffer, as a property's value (properties default to views into their object).
template <class A>
nb::object owned(A&& array) {
  return nb::cast(std::forward<A>(array), nb::rv_policy::move);
}

nb::ndarray<nb::ro> as_in(const OutArray& a) { return nb::ndarray<nb::ro>(a); }

// ---------------------------------------------------------------------------------------------------------
// The operator on one system and grid: the CPU plan and the GPU plan, each built on first use.
// ---------------------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------------------
// A loaded model and the pipelines built from it (one per method, device, mode, batch and precision).
// ---------------------------------------------------------------------------------------------------------
struct LoadedModel {
  std::string path;
  nn::Model model;
  std::map<std::string, std::unique_ptr<nn::LearnedPipeline>> pipelines;
  std::mutex mutex;
};

std::vector<double> array_values(const nb::ndarray<nb::ro>& a, const std::string& what, std::size_t columns) {
  require(a.device_type() == kDlCpu, fmt::format("{}: expected a host (cpu) array", what));
  require(a.dtype() == nb::dtype<double>(), fmt::format("{}: expected dtype float64", what));
  const std::vector<std::size_t> trailing =
      columns ? std::vector<std::size_t>{columns} : std::vector<std::size_t>{};
  if (columns)
    require(a.ndim() == 2, fmt::format("{}: expected shape (n, {}), got {}", what, columns, shape_text(a)));
  else
    require(a.ndim() == 1, fmt::format("{}: expected a 1-D array, got shape {}", what, shape_text(a)));
  check_array<double>(a, what, trailing, "float64");
  const auto* p = static_cast<const double*>(a.data());
  return std::vector<double>(p, p + a.size());
}

std::vector<Vec3> positions(const nb::ndarray<nb::ro>& a, const std::string& what) {
  const std::vector<double> v = array_values(a, what, 3);
  std::vector<Vec3> out(v.size() / 3);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = {v[3 * i], v[3 * i + 1], v[3 * i + 2]};
  return out;
}

nb::ndarray<nb::numpy, double> positions_array(const std::vector<Vec3>& p) {
  std::vector<double> v;
  for (const Vec3& q : p) v.insert(v.end(), {q.x, q.y, q.z});
  return to_numpy(std::move(v), {p.size(), 3});
}

RadarSystem system_from_arrays(InArray tx, InArray rx, InArray freqs) {
  RadarSystem s;
  s.array = ArrayGeometry(positions(tx, "tx_positions"), positions(rx, "rx_positions"));
  s.sweep = FrequencySweep(array_values(freqs, "frequencies", 0));
  validate_system(s, "system");
  return s;
}

ImagingGrid grid_from_axes(InArray x, InArray y, InArray z) {
  return ImagingGrid(Axis::from_values(array_values(x, "x", 0), "grid x"),
                     Axis::from_values(array_values(y, "y", 0), "grid y"),
                     Axis::from_values(array_values(z, "z", 0), "grid z"));
}

std::vector<std::size_t> volume_dims(const ImagingGrid& g) {
  return {std::size_t(g.x().size), std::size_t(g.y().size), std::size_t(g.z().size)};
}

// Host complex64 [..., K, T, R] of `system`: pointer and frame count.
std::pair<const cfloat*, int> host_measurements(const InArray& y, const RadarSystem& system) {
  require(y.device_type() == kDlCpu, "y: expected a host (cpu) array");
  const std::size_t frames =
      check_array<cfloat>(y, "y",
                          {std::size_t(system.frequencies()), std::size_t(system.transmitters()),
                           std::size_t(system.receivers())},
                          "complex64");
  require(frames <= std::size_t(std::numeric_limits<int>::max()), "y: too many frames");
  return {static_cast<const cfloat*>(y.data()), static_cast<int>(frames)};
}

// reconstruct: the method table (or, for a learned method with a loaded model, that model's cached pipeline).
// Returns (volumes [frames, V] magnitude or complex, label, device).
nb::tuple reconstruct(const std::string& method, const RadarSystem& system, const ImagingGrid& grid,
                      InArray y, LoadedModel* loaded, const std::string& model_path,
                      const std::string& device, const std::string& mode, int batch,
                      const std::string& precision, const std::map<std::string, std::string>& params,
                      bool want_complex) {
  validate_system(system, "system");
  validate_grid(grid, system, "grid");
  require(batch >= 1, fmt::format("batch must be positive (got {})", batch));
  const auto [data, frames] = host_measurements(y, system);
  MethodContext c;
  c.system = &system;
  c.grid = &grid;
  c.measurements = data;
  c.frames = frames;
  c.device = parse_device(device);
  parse_mode(mode);
  c.mode = mode;
  c.batch = batch;
  c.model = loaded ? loaded->path : model_path;
  c.precision = precision;
  c.params = params;

  const bool learned = [&] {
    for (const auto& s : nn::learned_method_specs())
      if (s.name == method) return true;
    return false;
  }();
  MethodResult r;
  if (learned && loaded) {
    require(!want_complex, fmt::format("complex=True: method '{}' produces magnitudes only", method));
    const std::string key = fmt::format("{}|{}|{}|{}|{}|{}", method, device, mode, batch, precision,
                                        params.count("precision") ? params.at("precision") : "");
    nb::gil_scoped_release release;
    std::lock_guard lock(loaded->mutex);
    auto& pipeline = loaded->pipelines[key];
    if (!pipeline) pipeline = make_learned_pipeline(method, loaded->model, loaded->path, c);
    nn::require_matching(pipeline->model(), loaded->path, system, grid, "the measurements");
    r.magnitude.resize(grid.voxels() * std::size_t(frames));
    pipeline->run(data, frames, r.magnitude.data());
    r.label = method;
    r.device = pipeline->device_description();
  } else {
    nb::gil_scoped_release release;
    r = run_method(method, c);
  }
  std::vector<std::size_t> shape{std::size_t(frames)};
  for (std::size_t d : volume_dims(grid)) shape.push_back(d);
  nb::object volumes;
  if (want_complex) {
    require(!r.complex.empty(), fmt::format("complex=True: method '{}' produces magnitudes only", method));
    volumes = nb::cast(to_numpy(std::move(r.complex), shape));
  } else {
    volumes = nb::cast(to_numpy(std::move(r.magnitude), shape));
  }
  return nb::make_tuple(volumes, r.label, r.device, r.extra_json);
}

// ---------------------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------------------
nb::tuple read_measurement_file(const std::string& path, bool targets) {
  MeasurementSet m;
  {
    nb::gil_scoped_release release;
    m = read_measurements(path, {.load_targets = targets});
  }
  std::vector<std::size_t> yshape{std::size_t(m.system.frequencies()), std::size_t(m.system.transmitters()),
                                  std::size_t(m.system.receivers())};
  if (!m.single_frame) yshape.insert(yshape.begin(), std::size_t(m.frames));
  nb::object t = nb::none(), snr = nb::none();
  if (!m.targets.empty() && m.grid) {
    std::vector<std::size_t> tshape{std::size_t(m.frames)};
    for (std::size_t d : volume_dims(*m.grid)) tshape.push_back(d);
    t = nb::cast(to_numpy(std::move(m.targets), tshape));
  }
  if (!m.snr_db.empty()) snr = nb::cast(to_numpy(std::move(m.snr_db), {std::size_t(m.frames)}));
  nb::object grid = m.grid ? nb::cast(*m.grid) : nb::none();
  return nb::make_tuple(m.system, grid, to_numpy(std::move(m.measurements), yshape), t, snr);
}

void write_measurement_file(const std::string& path, const RadarSystem& system, InArray y,
                            std::optional<ImagingGrid> grid, std::optional<InArray> targets,
                            std::optional<InArray> snr_db, bool overwrite) {
  validate_system(system, "system");
  MeasurementSet m;
  m.system = system;
  m.grid = grid;
  const auto [data, frames] = host_measurements(y, system);
  m.frames = frames;
  m.single_frame = y.ndim() == 3;
  require(y.ndim() == 3 || y.ndim() == 4,
          fmt::format("y: expected shape (N, K, T, R) or (K, T, R), got {}", shape_text(y)));
  m.measurements.assign(data, data + std::size_t(frames) * system.samples_per_frame());
  if (targets) {
    require(grid.has_value(), "targets need a grid");
    require(targets->device_type() == kDlCpu, "targets: expected a host (cpu) array");
    const std::size_t n = check_array<cfloat>(*targets, "targets", volume_dims(*grid), "complex64");
    require(n == std::size_t(frames), fmt::format("targets: {} frames, but y has {}", n, frames));
    const auto* p = static_cast<const cfloat*>(targets->data());
    m.targets.assign(p, p + n * grid->voxels());
  }
  if (snr_db) {
    require(snr_db->device_type() == kDlCpu, "snr_db: expected a host (cpu) array");
    const std::size_t n = check_array<float>(*snr_db, "snr_db", {}, "float32");
    require(n == std::size_t(frames), fmt::format("snr_db: {} values, but y has {} frames", n, frames));
    const auto* p = static_cast<const float*>(snr_db->data());
    m.snr_db.assign(p, p + n);
  }
  if (grid) validate_grid(*grid, system, "grid");
  nb::gil_scoped_release release;
  write_measurements(path, m, {.overwrite = overwrite});
}

nb::tuple read_volume_file(const std::string& path) {
  VolumeSet v;
  {
    nb::gil_scoped_release release;
    v = read_volumes(path);
  }
  std::vector<std::size_t> shape{std::size_t(v.frames)};
  for (std::size_t d : volume_dims(v.grid)) shape.push_back(d);
  nb::object volumes = v.complex.empty() ? nb::cast(to_numpy(std::move(v.magnitude), shape))
                                         : nb::cast(to_numpy(std::move(v.complex), shape));
  return nb::make_tuple(v.grid, volumes, v.method, v.source, v.device, v.extra_json);
}

void write_volume_file(const std::string& path, const ImagingGrid& grid, InArray volumes,
                       const std::string& method, const std::string& source, const std::string& device,
                       bool overwrite) {
  require(volumes.device_type() == kDlCpu, "volumes: expected a host (cpu) array");
  VolumeSet v;
  v.grid = grid;
  v.method = method;
  v.source = source;
  v.device = device;
  require(volumes.ndim() == 4, fmt::format("volumes: expected shape (N, {}), got {}",
                                           dims_text(volume_dims(grid)), shape_text(volumes)));
  if (volumes.dtype() == nb::dtype<cfloat>()) {
    v.frames = static_cast<int>(check_array<cfloat>(volumes, "volumes", volume_dims(grid), "complex64"));
    const auto* p = static_cast<const cfloat*>(volumes.data());
    v.complex.assign(p, p + std::size_t(v.frames) * grid.voxels());
  } else {
    v.frames =
        static_cast<int>(check_array<float>(volumes, "volumes", volume_dims(grid), "float32 or complex64"));
    const auto* p = static_cast<const float*>(volumes.data());
    v.magnitude.assign(p, p + std::size_t(v.frames) * grid.voxels());
  }
  nb::gil_scoped_release release;
  write_volumes(path, v, overwrite);
}

nb::dict dataset_info(const std::string& path) {
  const DatasetInfo info = read_dataset_info(path);
  nb::dict d;
  d["config"] = scene_config_json(info.spec.config);
  d["seed"] = info.spec.seed;
  d["count"] = info.spec.count;
  d["shard"] = nb::make_tuple(info.spec.shard_index, info.spec.shard_count);
  d["first_sample"] = info.first_sample;
  d["rows"] = info.rows;
  d["complete"] = info.complete;
  d["device"] = info.device;
  d["system"] = info.spec.system;
  d["grid"] = info.spec.grid;
  return d;
}

// A dataset file exactly as `nfmimo synthesize` writes it (same code: attributes, chunking, OUT.partial,
// resume).
nb::dict synthesize_dataset_file(const std::string& path, std::int64_t count, const RadarSystem& system,
                                 const ImagingGrid& grid, const std::string& config_json,
                                 const std::optional<std::string>& snr, std::int64_t seed, int shard_index,
                                 int shard_count, const std::string& device, int batch, int gzip,
                                 bool overwrite, bool resume) {
  DatasetSpec spec;
  spec.config = parse_scene_config(config_json.empty() ? "{}" : config_json, "config");
  if (snr) parse_snr_option(*snr, spec.config);
  validate_scene_config(spec.config, "config");
  require(seed >= 0, fmt::format("seed must be a non-negative integer below 2^63 (got {})", seed));
  spec.seed = static_cast<std::uint64_t>(seed);
  spec.count = count;
  spec.shard_index = shard_index;
  spec.shard_count = shard_count;
  spec.system = system;
  spec.grid = grid;
  validate_dataset_spec(spec);
  require(batch >= 1, fmt::format("batch must be positive (got {})", batch));
  DatasetRunOptions o;
  o.output = path;
  o.force = overwrite;
  o.resume = resume;
  o.gzip_level = gzip;
  o.batch = batch;
  o.device = parse_device(device);
  DatasetRunResult r;
  {
    nb::gil_scoped_release release;
    r = synthesize_dataset(spec, o);
  }
  nb::dict d;
  d["complete"] = r.complete;
  d["path"] = r.path;
  d["written"] = r.written;
  d["in_file"] = r.in_file;
  d["seconds"] = r.seconds;
  d["device"] = r.device;
  return d;
}

nb::tuple read_any_system(const std::string& path) {
  const h5::File f(path, h5::File::Mode::Read);
  const RadarSystem s = read_system(f);
  const std::optional<ImagingGrid> g = read_grid(f);
  return nb::make_tuple(s, g ? nb::cast(*g) : nb::none());
}

// ---------------------------------------------------------------------------------------------------------
// Synthesizer
// ---------------------------------------------------------------------------------------------------------
struct PySynthesizer {
  std::unique_ptr<Synthesizer> synth;

  PySynthesizer(const RadarSystem& system, const ImagingGrid& grid, const std::string& config_json,
                const std::optional<std::string>& snr, std::uint64_t seed, const std::string& device,
                int max_batch) {
    SceneConfig config = parse_scene_config(config_json.empty() ? "{}" : config_json, "config");
    if (snr) parse_snr_option(*snr, config);
    validate_scene_config(config, "config");
    validate_system(system, "system");
    validate_grid(grid, system, "grid");
    require(max_batch >= 1, fmt::format("batch must be positive (got {})", max_batch));
    nb::gil_scoped_release release;
    synth = std::make_unique<Synthesizer>(system, grid, config, seed, parse_device(device), max_batch);
  }

  nb::tuple batch(std::int64_t first, int count) const {
    require(first >= 0, fmt::format("first must be non-negative (got {})", first));
    require(count >= 0, fmt::format("count must be non-negative (got {})", count));
    const RadarSystem& s = synth->system();
    const ImagingGrid& g = synth->grid();
    std::vector<cfloat> y(std::size_t(count) * s.samples_per_frame()), x(std::size_t(count) * g.voxels());
    std::vector<float> snr(static_cast<std::size_t>(count));
    {
      nb::gil_scoped_release release;
      if (count > 0) synth->generate(std::uint64_t(first), count, x.data(), y.data(), snr.data());
    }
    std::vector<std::size_t> xshape{std::size_t(count)};
    for (std::size_t d : volume_dims(g)) xshape.push_back(d);
    return nb::make_tuple(to_numpy(std::move(y), {std::size_t(count), std::size_t(s.frequencies()),
                                                  std::size_t(s.transmitters()), std::size_t(s.receivers())}),
                          to_numpy(std::move(x), xshape), to_numpy(std::move(snr), {std::size_t(count)}));
  }
};

std::vector<double> vec3_flat(const std::vector<Vec3>& p) {
  std::vector<double> v;
  for (const Vec3& q : p) v.insert(v.end(), {q.x, q.y, q.z});
  return v;
}
std::vector<Vec3> vec3_unflat(const std::vector<double>& v) {
  std::vector<Vec3> p(v.size() / 3);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = {v[3 * i], v[3 * i + 1], v[3 * i + 2]};
  return p;
}

}  // namespace
}  // namespace nfmimo

NB_MODULE(_core, m) {
  using namespace nfmimo;
  m.doc() = "nfmimo engine bindings (use the nfmimo package, not this module)";
  // Instances legitimately outlive the interpreter's teardown (a forked DataLoader worker exits with its
  // dataset alive, an autograd graph holds an operator): nanobind's leak report at exit would only alarm
  // users.
  nb::set_leak_warnings(false);

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const InputError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const OutOfMemoryError& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  nb::class_<RadarSystem>(m, "System")
      .def_prop_ro("tx_positions", [](const RadarSystem& s) { return owned(positions_array(s.array.tx())); })
      .def_prop_ro("rx_positions", [](const RadarSystem& s) { return owned(positions_array(s.array.rx())); })
      .def_prop_ro("frequencies",
                   [](const RadarSystem& s) {
                     std::vector<double> f = s.sweep.frequencies();
                     const std::size_t n = f.size();
                     return owned(to_numpy(std::move(f), {n}));
                   })
      .def_prop_ro("measurement_shape",
                   [](const RadarSystem& s) {
                     return std::make_tuple(s.frequencies(), s.transmitters(), s.receivers());
                   })
      .def_prop_ro("uniform_frequencies", [](const RadarSystem& s) { return s.sweep.uniform(); })
      .def("__repr__", [](const RadarSystem& s) { return "nfmimo.System(" + describe(s) + ")"; })
      .def("__eq__",
           [](const RadarSystem& a, const RadarSystem& b) { return !describe_difference(a, b, 0.0); })
      .def("__getstate__",
           [](const RadarSystem& s) {
             return std::make_tuple(vec3_flat(s.array.tx()), vec3_flat(s.array.rx()), s.sweep.frequencies());
           })
      .def("__setstate__",
           [](RadarSystem& s,
              const std::tuple<std::vector<double>, std::vector<double>, std::vector<double>>& t) {
             new (&s) RadarSystem{ArrayGeometry(vec3_unflat(std::get<0>(t)), vec3_unflat(std::get<1>(t))),
                                  FrequencySweep(std::get<2>(t))};
           });

  nb::class_<ImagingGrid>(m, "Grid")
      .def_prop_ro(
          "x",
          [](const ImagingGrid& g) { return owned(to_numpy(g.x().values(), {std::size_t(g.x().size)})); })
      .def_prop_ro(
          "y",
          [](const ImagingGrid& g) { return owned(to_numpy(g.y().values(), {std::size_t(g.y().size)})); })
      .def_prop_ro(
          "z",
          [](const ImagingGrid& g) { return owned(to_numpy(g.z().values(), {std::size_t(g.z().size)})); })
      .def_prop_ro("shape",
                   [](const ImagingGrid& g) { return std::make_tuple(g.x().size, g.y().size, g.z().size); })
      .def("__repr__", [](const ImagingGrid& g) { return "nfmimo.Grid(" + describe(g) + ")"; })
      .def("__eq__",
           [](const ImagingGrid& a, const ImagingGrid& b) { return !describe_difference(a, b, 0.0); })
      .def("__getstate__",
           [](const ImagingGrid& g) {
             auto axis = [](const Axis& a) { return std::make_tuple(a.start, a.step, a.size); };
             return std::make_tuple(axis(g.x()), axis(g.y()), axis(g.z()));
           })
      .def("__setstate__",
           [](ImagingGrid& g,
              const std::tuple<std::tuple<double, double, int>, std::tuple<double, double, int>,
                               std::tuple<double, double, int>>& t) {
             auto axis = [](const std::tuple<double, double, int>& a) {
               return Axis{std::get<0>(a), std::get<1>(a), std::get<2>(a)};
             };
             new (&g) ImagingGrid(axis(std::get<0>(t)), axis(std::get<1>(t)), axis(std::get<2>(t)));
           });

  m.def("paper_system", &paper_system, "frequencies"_a = 15);
  m.def("paper_grid", &ImagingGrid::paper);
  m.def("system_from_arrays", &system_from_arrays, "tx_positions"_a, "rx_positions"_a, "frequencies"_a);
  m.def("grid_from_axes", &grid_from_axes, "x"_a, "y"_a, "z"_a);
  m.def("grid_linspace", [](double x0, double x1, int nx, double y0, double y1, int ny, double z0, double z1,
                            int nz) {
    require(nx >= 1 && ny >= 1 && nz >= 1, "grid: every axis needs at least one point");
    return ImagingGrid(Axis::linspace(x0, x1, nx), Axis::linspace(y0, y1, ny), Axis::linspace(z0, z1, nz));
  });
  m.def("read_system", &read_any_system, "path"_a);
  m.def("validate_grid", [](const ImagingGrid& g, const RadarSystem& s) { validate_grid(g, s, "grid"); });

  nb::class_<Operator>(m, "Operator")
      .def(nb::init<RadarSystem, ImagingGrid>(), "system"_a, "grid"_a)
      .def_prop_ro("system", &Operator::system)
      .def_prop_ro("grid", &Operator::grid)
      .def("forward", &Operator::forward, "x"_a, "out"_a)
      .def("image", &Operator::image, "method"_a, "mode"_a, "y"_a, "out"_a)
      .def_prop_ro("cpu_ready", &Operator::cpu_ready)
      .def_prop_ro("gpu_ready", &Operator::gpu_ready);

  nb::class_<LoadedModel>(m, "Model")
      .def("__init__",
           [](LoadedModel* self, const std::string& path) {
             nn::Model model;
             {
               nb::gil_scoped_release release;
               model = nn::read_model(path);
             }
             new (self) LoadedModel{path, std::move(model), {}, {}};
           })
      .def_prop_ro("path", [](const LoadedModel& l) { return l.path; })
      .def_prop_ro("architecture", [](const LoadedModel& l) { return l.model.architecture; })
      .def_prop_ro("role", [](const LoadedModel& l) { return l.model.role; })
      .def_prop_ro("system", [](const LoadedModel& l) { return l.model.system; })
      .def_prop_ro("grid", [](const LoadedModel& l) { return l.model.grid; })
      .def_prop_ro("cached_pipelines", [](const LoadedModel& l) { return l.pipelines.size(); });

  // A freshly initialised model written to `path` (the starting point `nfmimo train` uses; tests use tiny
  // ones).
  m.def(
      "write_initial_model",
      [](const std::string& path, const std::string& architecture, const RadarSystem& system,
         const ImagingGrid& grid, int width, int blocks, const std::string& role, unsigned long long seed,
         bool overwrite) {
        require(role == nn::kReconstructionRole || role == nn::kDenoiserRole,
                fmt::format("role: '{}' is not {} or {}", role, nn::kReconstructionRole, nn::kDenoiserRole));
        nb::gil_scoped_release release;
        nn::Model model =
            nn::make_model(architecture, system, grid, nn::ArchitectureOptions{width, blocks}, seed);
        model.role = role;
        nn::write_model(path, model, overwrite);
      },
      "path"_a, "architecture"_a, "system"_a, "grid"_a, "width"_a, "blocks"_a, "role"_a, "seed"_a,
      "overwrite"_a);
  m.def("reconstruct", &reconstruct, "method"_a, "system"_a, "grid"_a, "y"_a, "model"_a.none(),
        "model_path"_a, "device"_a, "mode"_a, "batch"_a, "precision"_a, "params"_a, "complex"_a);
  m.def("method_names", [] {
    std::vector<std::string> names;
    for (const auto& e : all_methods()) names.push_back(e.name);
    return names;
  });
  m.def("learned_method_names", [] {
    std::vector<std::string> names;
    for (const auto& s : nn::learned_method_specs()) names.push_back(s.name);
    return names;
  });

  m.def("read_measurements", &read_measurement_file, "path"_a, "targets"_a = true);
  m.def("write_measurements", &write_measurement_file, "path"_a, "system"_a, "y"_a, "grid"_a.none(),
        "targets"_a.none(), "snr_db"_a.none(), "overwrite"_a);
  m.def("read_volumes", &read_volume_file, "path"_a);
  m.def("write_volumes", &write_volume_file, "path"_a, "grid"_a, "volumes"_a, "method"_a, "source"_a,
        "device"_a, "overwrite"_a);
  m.def("read_dataset_info", &dataset_info, "path"_a);
  m.def("synthesize_dataset", &synthesize_dataset_file, "path"_a, "count"_a, "system"_a, "grid"_a, "config"_a,
        "snr"_a.none(), "seed"_a, "shard_index"_a, "shard_count"_a, "device"_a, "batch"_a, "gzip"_a,
        "overwrite"_a, "resume"_a);
  m.def("scene_config_json",
        [](const std::string& text) { return scene_config_json(parse_scene_config(text, "config")); });

  nb::class_<PySynthesizer>(m, "Synthesizer")
      .def(nb::init<const RadarSystem&, const ImagingGrid&, const std::string&,
                    const std::optional<std::string>&, std::uint64_t, const std::string&, int>(),
           "system"_a, "grid"_a, "config"_a, "snr"_a.none(), "seed"_a, "device"_a, "max_batch"_a)
      .def("batch", &PySynthesizer::batch, "first"_a, "count"_a)
      .def_prop_ro("config", [](const PySynthesizer& s) { return scene_config_json(s.synth->config()); })
      .def_prop_ro("device", [](const PySynthesizer& s) { return s.synth->device_description(); });

  // The address nanobind sees for an array (tests check that the operators work on the caller's memory).
  m.def("data_pointer", [](InArray a) { return reinterpret_cast<std::uintptr_t>(a.data()); });
  m.def("set_num_threads", [](int n) {
    require(n >= 1, fmt::format("threads must be positive (got {})", n));
    omp_set_num_threads(n);
  });
  m.def("get_num_threads", [] { return omp_get_max_threads(); });
  m.def("cuda_built", &cuda_built);
  m.def("cuda_device_count", &cuda_device_count);
  m.def("cuda_unavailable_reason", &cuda_unavailable_reason);
  m.attr("__version__") = NFMIMO_VERSION;
}
