#include "models/training/data.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/hdf5.hpp"
#include "data/measurement_file.hpp"
#include "kernels/device_buffer.hpp"
#include "kernels/gpu_imaging.hpp"
#include "kernels/gpu_normalise.hpp"
#include "kernels/imager.hpp"
#include "models/learned/composite.hpp"
#include "models/learned/pipeline.hpp"
#include "radar/error.hpp"
#include "radar/random.hpp"
#include "synthesizer/synthesizer.hpp"

namespace nfmimo::nn {

void normalised_target_magnitudes(const cfloat* targets, int count, std::size_t V, float* out) {
  normalise_by_frame_max(targets, count, V, NormaliseMode::Magnitude, out);
}

// ---- the physics stage ----------------------------------------------------------------------------------

SamplePreparer::SamplePreparer(const SampleFormat& format, DeviceKind device, int max_batch)
    : format_(format),
      imager_(std::make_unique<Imager>(format.system, format.grid, device, max_batch)),
      adjoint_(std::size_t(max_batch) * format.voxels()) {}

SamplePreparer::~SamplePreparer() = default;

std::string SamplePreparer::device_description() const { return imager_->device_description(); }

void SamplePreparer::prepare(const cfloat* measurements, const cfloat* targets, int count, float* input,
                             float* target) {
  const std::size_t V = format_.voxels();
  adjoint_.resize(std::max(adjoint_.size(), std::size_t(count) * V));
  imager_->image(Method::Adjoint, ImagingMode::Exact, measurements, adjoint_.data(), count);
  if (format_.measurement_input) {
    scales_.resize(std::size_t(count));
    measurement_scales(adjoint_.data(), count, V, scales_.data());
    scale_measurements(measurements, count, format_.system.samples_per_frame(), scales_.data(),
                       reinterpret_cast<cfloat*>(input));
  } else {
    normalise_network_input(adjoint_.data(), count, V, format_.complex_input, input);
  }
  normalised_target_magnitudes(targets, count, V, target);
}

int BatchSource::produce_device(std::int64_t, int, float*, float*, cudaStream_t) {
  throw InputError(fmt::format("the data source '{}' works in host memory only", description()));
}

namespace {

void resize_batch(HostBatch& b, const SampleFormat& format, int count) {
  b.count = count;
  b.input.resize(std::size_t(count) * format.input_size());
  b.target.resize(std::size_t(count) * format.voxels());
}

// ---- synthesizer --------------------------------------------------------------------------------------

class SynthesizedSource final : public BatchSource {
 public:
  explicit SynthesizedSource(const SynthesizedSourceSettings& s)
      : s_(s),
        synth_(s.format.system, s.format.grid, s.config, s.seed, s.device, s.batch),
        preparer_(s.format, s.device, s.batch) {
    require(s.batch >= 1, fmt::format("the batch size must be positive (got {})", s.batch));
    require(s.batches_per_epoch >= 1,
            fmt::format("an epoch needs at least one batch (got {})", s.batches_per_epoch));
  }

  std::string description() const override {
    return fmt::format("synthesizer on the fly (seed {}, {} samples per epoch, {})", s_.seed,
                       std::int64_t(s_.batch) * s_.batches_per_epoch, synth_.device_description());
  }
  std::string record_json() const override { return record(s_); }
  // What decides the samples (not the device: both devices make the same scenes).
  static std::string record(const SynthesizedSourceSettings& s) {
    nlohmann::json j;
    j["kind"] = "synthesize";
    j["seed"] = s.seed;
    j["samples_per_epoch"] = std::int64_t(s.batch) * s.batches_per_epoch;
    j["scene_config"] = nlohmann::json::parse(scene_config_json(s.config));
    return j.dump();
  }
  const SampleFormat& format() const override { return s_.format; }
  int batch_size() const override { return s_.batch; }
  int batches_per_epoch() const override { return s_.batches_per_epoch; }

  void produce(std::int64_t epoch, int index, HostBatch& out) override {
    const std::uint64_t first =
        (std::uint64_t(epoch) * std::uint64_t(s_.batches_per_epoch) + std::uint64_t(index)) *
        std::uint64_t(s_.batch);
    const SampleBatch b = synth_.batch(first, s_.batch);
    out.epoch = epoch;
    out.index = index;
    resize_batch(out, s_.format, s_.batch);
    preparer_.prepare(b.measurements.data(), b.targets.data(), s_.batch, out.input.data(), out.target.data());
  }

 private:
  SynthesizedSourceSettings s_;
  Synthesizer synth_;
  SamplePreparer preparer_;
};

// ---- synthesizer on the GPU ---------------------------------------------------------------------------

class GpuSynthesizedSource final : public BatchSource {
 public:
  explicit GpuSynthesizedSource(const SynthesizedSourceSettings& s)
      : s_(checked(s)),
        host_record_(SynthesizedSource::record(s)),
        synth_(s.format.system, s.format.grid, s.config, s.seed, DeviceKind::Cuda, s.batch),
        plan_(s.format.system, s.format.grid, s.batch),
        targets_(2 * std::size_t(s.batch) * s.format.voxels()),
        measurements_(2 * std::size_t(s.batch) * s.format.system.samples_per_frame()),
        adjoint_(2 * std::size_t(s.batch) * s.format.voxels()),
        snr_(std::size_t(s.batch)) {}

  std::string description() const override {
    return fmt::format("synthesizer on the fly on the GPU (seed {}, {} samples per epoch, {})", s_.seed,
                       std::int64_t(s_.batch) * s_.batches_per_epoch, synth_.device_description());
  }
  std::string record_json() const override { return host_record_; }
  const SampleFormat& format() const override { return s_.format; }
  int batch_size() const override { return s_.batch; }
  int batches_per_epoch() const override { return s_.batches_per_epoch; }
  bool device_resident() const override { return true; }

  int produce_device(std::int64_t epoch, int index, float* d_input, float* d_target,
                     cudaStream_t stream) override {
    const std::uint64_t first =
        (std::uint64_t(epoch) * std::uint64_t(s_.batches_per_epoch) + std::uint64_t(index)) *
        std::uint64_t(s_.batch);
    // cfloat has float2's layout: the float buffers hold interleaved real and imaginary parts.
    auto* targets = reinterpret_cast<cfloat*>(targets_.data());
    auto* measurements = reinterpret_cast<cfloat*>(measurements_.data());
    auto* adjoint = reinterpret_cast<cfloat*>(adjoint_.data());
    const std::size_t V = s_.format.voxels();
    synth_.generate_device(first, s_.batch, targets, measurements, snr_.data(), stream);
    plan_.image(Method::Adjoint, ImagingMode::Exact, measurements, adjoint, s_.batch, stream);
    normalise_by_sample_max(adjoint, d_input, s_.batch, V,
                            s_.format.complex_input ? NormaliseMode::Complex : NormaliseMode::Magnitude,
                            stream);
    complex_magnitude(targets, d_target, std::size_t(s_.batch) * V, stream);
    return s_.batch;
  }

  void produce(std::int64_t epoch, int index, HostBatch& out) override {
    if (!stream_) {
      stream_ = std::make_unique<DeviceStream>();
      input_ = std::make_unique<DeviceBuffer<float>>(std::size_t(s_.batch) * s_.format.channels() *
                                                     s_.format.voxels());
      target_ = std::make_unique<DeviceBuffer<float>>(std::size_t(s_.batch) * s_.format.voxels());
    }
    out.epoch = epoch;
    out.index = index;
    resize_batch(out, s_.format, s_.batch);
    produce_device(epoch, index, input_->data(), target_->data(), stream_->get());
    input_->download(out.input.data(), out.input.size(), stream_->get());
    target_->download(out.target.data(), out.target.size(), stream_->get());
    stream_->synchronize();
  }

 private:
  static const SynthesizedSourceSettings& checked(const SynthesizedSourceSettings& s) {
    require(!s.format.measurement_input,
            "the GPU data source makes image inputs only; deepdi and deep2s-plus train from host data "
            "(--device cpu)");
    require(s.batch >= 1, fmt::format("the batch size must be positive (got {})", s.batch));
    require(s.batches_per_epoch >= 1,
            fmt::format("an epoch needs at least one batch (got {})", s.batches_per_epoch));
    return s;
  }

  SynthesizedSourceSettings s_;
  std::string host_record_;
  Synthesizer synth_;
  GpuImagingPlan plan_;
  DeviceBuffer<float> targets_, measurements_, adjoint_, snr_;
  // Host copies (produce): created on first use.
  std::unique_ptr<DeviceStream> stream_;
  std::unique_ptr<DeviceBuffer<float>> input_, target_;
};

// ---- dataset files ------------------------------------------------------------------------------------

template <class T>
void require_finite_rows(const std::vector<T>& values, std::size_t per_row, const std::string& path,
                         const char* dataset, std::int64_t first_row) {
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i].real()) || !std::isfinite(values[i].imag()))
      throw InputError(fmt::format("{}: dataset '{}', row {}: holds a non-finite value", path, dataset,
                                   first_row + std::int64_t(i / per_row)));
}

void require_same_format(const TrainingFileInfo& info, const SampleFormat& format, const std::string& path,
                         const std::string& expected_source) {
  if (const auto d = describe_difference(info.system, format.system))
    throw InputError(fmt::format("{}: the radar system differs from {}: {}", path, expected_source, *d));
  if (const auto d = describe_difference(info.grid, format.grid))
    throw InputError(fmt::format("{}: the imaging grid differs from {}: {}", path, expected_source, *d));
}

class FileSource final : public BatchSource {
 public:
  explicit FileSource(const FileSourceSettings& s) : s_(s), info_(inspect_training_file(s.path)) {
    require(s.batch >= 1, fmt::format("the batch size must be positive (got {})", s.batch));
    require_same_format(info_, s.format, s.path, "the one being trained for");
    require(info_.rows >= s.batch,
            fmt::format("{}: holds {} samples, fewer than one batch of {}", s.path, info_.rows, s.batch));
  }

  std::string description() const override {
    return fmt::format("{} ({} samples, {} batches of {} per epoch, shuffled)", s_.path, info_.rows,
                       batches_per_epoch(), s_.batch);
  }
  std::string record_json() const override {
    nlohmann::json j;
    j["kind"] = "file";
    j["path"] = s_.path;
    j["rows"] = info_.rows;
    j["shuffle_seed"] = s_.shuffle_seed;
    return j.dump();
  }
  const SampleFormat& format() const override { return s_.format; }
  int batch_size() const override { return s_.batch; }
  int batches_per_epoch() const override { return int(info_.rows / s_.batch); }

  void produce(std::int64_t epoch, int index, HostBatch& out) override {
    if (!file_) {
      h5::silence_library_errors();  // per thread: errors become exceptions with our own messages
      file_ = std::make_unique<h5::File>(s_.path, h5::File::Mode::Read);
      preparer_ = std::make_unique<SamplePreparer>(s_.format, s_.device, s_.batch);
    }
    if (epoch != permutation_epoch_) {
      permutation_ = epoch_permutation(info_.rows, s_.shuffle_seed, epoch);
      permutation_epoch_ = epoch;
    }
    const std::size_t KTR = s_.format.system.samples_per_frame(), V = s_.format.voxels();
    measurements_.resize(std::size_t(s_.batch) * KTR);
    targets_.resize(std::size_t(s_.batch) * V);
    for (int i = 0; i < s_.batch; ++i) {
      const std::int64_t row = permutation_[std::size_t(index) * s_.batch + i];
      auto m = file_->read_rows<cfloat>("/measurements", hsize_t(row), 1);
      auto t = file_->read_rows<cfloat>("/targets", hsize_t(row), 1);
      require_finite_rows(m.data, KTR, s_.path, "/measurements", row);
      require_finite_rows(t.data, V, s_.path, "/targets", row);
      std::copy(m.data.begin(), m.data.end(), measurements_.begin() + std::size_t(i) * KTR);
      std::copy(t.data.begin(), t.data.end(), targets_.begin() + std::size_t(i) * V);
    }
    out.epoch = epoch;
    out.index = index;
    resize_batch(out, s_.format, s_.batch);
    preparer_->prepare(measurements_.data(), targets_.data(), s_.batch, out.input.data(), out.target.data());
  }

 private:
  FileSourceSettings s_;
  TrainingFileInfo info_;
  // Used by the producing thread only (opened there on first use).
  std::unique_ptr<h5::File> file_;
  std::unique_ptr<SamplePreparer> preparer_;
  std::int64_t permutation_epoch_ = -1;
  std::vector<std::int64_t> permutation_;
  std::vector<cfloat> measurements_, targets_;
};

}  // namespace

std::unique_ptr<BatchSource> make_synthesized_source(const SynthesizedSourceSettings& settings) {
  return std::make_unique<SynthesizedSource>(settings);
}

std::unique_ptr<BatchSource> make_gpu_synthesized_source(const SynthesizedSourceSettings& settings) {
  resolve_device(DeviceKind::Cuda);  // InputError with the reason when there is no usable GPU
  return std::make_unique<GpuSynthesizedSource>(settings);
}

TrainingFileInfo inspect_training_file(const std::string& path) {
  const MeasurementHeader h = read_measurement_header(path);
  if (!h.has_targets)
    throw InputError(fmt::format(
        "{}: no /targets dataset; training needs the ground truth of every sample (datasets made by `nfmimo "
        "synthesize` have it; see docs/formats.md)",
        path));
  if (!h.grid)
    throw InputError(fmt::format("{}: /targets is present but /grid is not (see docs/formats.md)", path));
  const h5::File f(path, h5::File::Mode::Read);
  const h5::Dims m = f.shape("/measurements"), t = f.shape("/targets");
  const RadarSystem& s = h.system;
  const h5::Dims em = {hsize_t(h.frames), hsize_t(s.frequencies()), hsize_t(s.transmitters()),
                       hsize_t(s.receivers())};
  const h5::Dims et = {hsize_t(h.frames), hsize_t(h.grid->x().size), hsize_t(h.grid->y().size),
                       hsize_t(h.grid->z().size)};
  auto dims = [](const h5::Dims& d) {
    std::string out;
    for (auto v : d) out += (out.empty() ? "" : ", ") + std::to_string(v);
    return "[" + out + "]";
  };
  if (m != em)
    throw InputError(fmt::format("{}: has shape {}; training expects {} (N frames of K x T x R)",
                                 f.where("/measurements"), dims(m), dims(em)));
  if (t != et)
    throw InputError(fmt::format("{}: has shape {}; expected {} (N from /measurements, sizes from /grid)",
                                 f.where("/targets"), dims(t), dims(et)));
  if (!f.is_complex("/measurements") || !f.is_complex("/targets"))
    throw InputError(fmt::format("{}: /measurements and /targets must be complex (compound {{r, i}})", path));
  return {h.system, *h.grid, std::int64_t(h.frames)};
}

std::unique_ptr<BatchSource> make_file_source(const FileSourceSettings& settings) {
  return std::make_unique<FileSource>(settings);
}

std::vector<std::int64_t> epoch_permutation(std::int64_t n, std::uint64_t seed, std::int64_t epoch) {
  std::vector<std::int64_t> p(std::size_t(std::max<std::int64_t>(n, 0)));
  for (std::int64_t i = 0; i < n; ++i) p[std::size_t(i)] = i;
  // Fisher-Yates from the end; draw k picks j uniform in [0, i]. A counter-based stream per epoch, so any
  // epoch's order is computed directly (resume) and is the same everywhere.
  const RandomStream rs(seed, std::uint64_t(epoch));
  for (std::int64_t i = n - 1; i > 0; --i) {
    const auto j = std::int64_t(rs.uniform(std::uint64_t(i)) * double(i + 1));
    std::swap(p[std::size_t(i)], p[std::size_t(std::min(j, i))]);
  }
  return p;
}

ValidationSet make_synthesized_validation(const SampleFormat& format, const SceneConfig& config,
                                          std::uint64_t seed, int count, DeviceKind device) {
  require(count >= 1, fmt::format("the validation set needs at least one sample (got {})", count));
  const int chunk = std::min(count, 64);
  const Synthesizer synth(format.system, format.grid, config, seed, device, chunk);
  SamplePreparer preparer(format, device, chunk);
  ValidationSet v;
  v.count = count;
  const std::size_t V = format.voxels();
  v.input.resize(std::size_t(count) * format.input_size());
  v.target.resize(std::size_t(count) * V);
  for (int first = 0; first < count; first += chunk) {
    const int n = std::min(chunk, count - first);
    const SampleBatch b = synth.batch(std::uint64_t(first), n);
    preparer.prepare(b.measurements.data(), b.targets.data(), n,
                     v.input.data() + std::size_t(first) * format.input_size(),
                     v.target.data() + std::size_t(first) * V);
  }
  v.description = fmt::format("{} synthesizer scenes of seed {}", count, seed);
  nlohmann::json j;
  j["kind"] = "synthesize";
  j["seed"] = seed;
  j["count"] = count;
  j["scene_config"] = nlohmann::json::parse(scene_config_json(config));
  v.record_json = j.dump();
  return v;
}

ValidationSet read_validation_file(const std::string& path, const SampleFormat& format, int max_count,
                                   DeviceKind device) {
  const TrainingFileInfo info = inspect_training_file(path);
  require_same_format(info, format, path, "the training data's");
  require(info.rows >= 1, fmt::format("{}: holds no samples", path));
  const int count = int(max_count > 0 ? std::min<std::int64_t>(max_count, info.rows) : info.rows);
  const h5::File f(path, h5::File::Mode::Read);
  const auto m = f.read_rows<cfloat>("/measurements", 0, hsize_t(count));
  const auto t = f.read_rows<cfloat>("/targets", 0, hsize_t(count));
  const std::size_t V = format.voxels();
  require_finite_rows(m.data, format.system.samples_per_frame(), path, "/measurements", 0);
  require_finite_rows(t.data, V, path, "/targets", 0);
  ValidationSet v;
  v.count = count;
  v.input.resize(std::size_t(count) * format.input_size());
  v.target.resize(std::size_t(count) * V);
  const int chunk = std::min(count, 64);
  SamplePreparer preparer(format, device, chunk);
  const std::size_t KTR = format.system.samples_per_frame();
  for (int first = 0; first < count; first += chunk) {
    const int n = std::min(chunk, count - first);
    preparer.prepare(m.data.data() + std::size_t(first) * KTR, t.data.data() + std::size_t(first) * V, n,
                     v.input.data() + std::size_t(first) * format.input_size(),
                     v.target.data() + std::size_t(first) * V);
  }
  v.description = fmt::format("the first {} samples of {}", count, path);
  nlohmann::json j;
  j["kind"] = "file";
  j["path"] = path;
  j["count"] = count;
  v.record_json = j.dump();
  return v;
}

// ---- prefetching --------------------------------------------------------------------------------------

Prefetcher::Prefetcher(BatchSource& source, std::int64_t epoch, int index, int depth, int threads)
    : source_(source),
      epoch_(epoch),
      index_(index),
      depth_(std::max(depth, 1)),
      threads_(std::max(threads, 1)) {
  thread_ = std::thread([this] { run(); });
}

Prefetcher::~Prefetcher() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Prefetcher::run() {
  omp_set_num_threads(threads_);  // this thread's own OpenMP setting; the trainer's is unchanged
  try {
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || int(ready_.size()) < depth_; });
        if (stop_) return;
      }
      HostBatch b;
      source_.produce(epoch_, index_, b);
      if (++index_ == source_.batches_per_epoch()) index_ = 0, ++epoch_;
      {
        std::lock_guard lock(mutex_);
        ready_.push_back(std::move(b));
      }
      cv_.notify_all();
    }
  } catch (...) {
    {
      std::lock_guard lock(mutex_);
      error_ = std::current_exception();
    }
    cv_.notify_all();
  }
}

HostBatch Prefetcher::next() {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [&] { return !ready_.empty() || error_; });
  if (ready_.empty()) std::rethrow_exception(error_);
  HostBatch b = std::move(ready_.front());
  ready_.pop_front();
  lock.unlock();
  cv_.notify_all();
  return b;
}

}  // namespace nfmimo::nn
