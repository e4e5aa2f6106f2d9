// Training data: where the trainer's batches come from.
//
// A sample becomes a training pair exactly as a learned pipeline sees it (models/learned/pipeline.hpp):
//   input  = the exact adjoint A^H y of its measurements, divided by its own largest magnitude
//            (normalise_network_input: the magnitude, or [real, imag] channels for cv-unet3d)
//   target = |x| / max|x| of its ground truth (an all-zero target stays zero); synthesizer scenes already
//   have
//            max |x| = 1, so for them this is |x|.
//
// A BatchSource is deterministic: batch b of epoch e is a pure function of the source's settings, e and b, so
// a run resumed at any batch sees the same data as an uninterrupted one. Two host sources exist: the
// synthesizer generating fresh scenes on the fly (never a repeated sample), and a dataset file read by a
// reader thread with per-epoch shuffling. A GPU source (the synthesizer's generate_device -> GPU adjoint -> a
// normalisation kernel) fits the same interface through produce_device, for device-resident training
// backends.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kernels/device.hpp"
#include "radar/complex.hpp"
#include "radar/system.hpp"
#include "synthesizer/scene.hpp"
#include "kernels/device_buffer.hpp"

namespace nfmimo {
class Imager;
}

namespace nfmimo::nn {

// |x| / max|x| per sample: targets [count, V] complex -> out [count, V].
void normalised_target_magnitudes(const cfloat* targets, int count, std::size_t voxels, float* out);

// The system and grid that samples are made for, and what the network takes as input.
struct SampleFormat {
  RadarSystem system;
  ImagingGrid grid;
  bool complex_input = false;  // cv-unet3d: [real, imag] channels instead of the magnitude
  // deepdi, deep2s-plus: the input is the measurements scaled by 1 / max|A^H y| ([M] complex as floats; see
  // models/learned/composite.hpp) instead of an image.
  bool measurement_input = false;

  int channels() const { return complex_input ? 2 : 1; }
  std::size_t voxels() const { return grid.voxels(); }
  // Floats of one sample's input.
  std::size_t input_size() const {
    return measurement_input ? 2 * system.samples_per_frame() : std::size_t(channels()) * voxels();
  }
};

// The physics stage for host samples: the exact adjoint through Imager on `device`, then the normalisations
// above.
class SamplePreparer {
 public:
  SamplePreparer(const SampleFormat& format, DeviceKind device, int max_batch);
  ~SamplePreparer();
  // measurements [count, K, T, R] and targets [count, V] -> input [count, input_size()], target [count, V].
  void prepare(const cfloat* measurements, const cfloat* targets, int count, float* input, float* target);
  std::string device_description() const;

 private:
  SampleFormat format_;
  std::unique_ptr<Imager> imager_;
  std::vector<cfloat> adjoint_;
  std::vector<float> scales_;
};

struct HostBatch {
  std::int64_t epoch = 0;
  int index = 0;
  int count = 0;
  std::vector<float> input;   // [count, format.input_size()]
  std::vector<float> target;  // [count, V]
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual std::string description() const = 0;
  // JSON object (text) saying what the data is: stored in checkpoints (a resumed run must see the same data)
  // and in the training record of the weights file.
  virtual std::string record_json() const = 0;
  virtual const SampleFormat& format() const = 0;
  virtual int batch_size() const = 0;
  virtual int batches_per_epoch() const = 0;

  // Batch `index` of `epoch` in host memory. Called from the prefetch thread, one call at a time.
  virtual void produce(std::int64_t epoch, int index, HostBatch& out) = 0;

  // Device-resident sources write batch `index` of `epoch` straight into device memory on `stream`
  // (input [batch, channels, V], target [batch, V]) and return the sample count. The default refuses.
  virtual bool device_resident() const { return false; }
  virtual int produce_device(std::int64_t epoch, int index, float* d_input, float* d_target,
                             cudaStream_t stream);
};

struct SynthesizedSourceSettings {
  SampleFormat format;
  SceneConfig config;
  std::uint64_t seed = 1;
  int batch = 8;
  int batches_per_epoch = 64;
  DeviceKind device = DeviceKind::Cpu;  // where the scenes and the adjoint are computed (host wrappers)
};
// Fresh synthesizer scenes: batch b of epoch e holds samples (e * batches_per_epoch + b) * batch + [0, batch)
// of `seed`, so no sample is ever repeated and every epoch is new data.
std::unique_ptr<BatchSource> make_synthesized_source(const SynthesizedSourceSettings& settings);

// The same samples made on the GPU (settings.device is ignored: CUDA), device-resident: produce_device runs
// the synthesizer's generate_device, the plan's exact adjoint, the per-sample normalisation kernel and |x|
// for the targets, all queued on the caller's stream with no host synchronisation; produce (host backends)
// copies the batch back. Inputs agree with the host source within float tolerance (another summation order in
// the adjoint); targets are |x| without the division by the maximum, which synthesizer scenes already have
// equal to 1. The record is the host source's, so a run may be resumed on either device. InputError without a
// usable GPU.
std::unique_ptr<BatchSource> make_gpu_synthesized_source(const SynthesizedSourceSettings& settings);

// What a dataset file offers for training, after checking that it can be used: a measurement file with /grid
// and /targets [N, nx, ny, nz] matching /measurements [N, K, T, R]. InputError naming the file otherwise.
struct TrainingFileInfo {
  RadarSystem system;
  ImagingGrid grid;
  std::int64_t rows = 0;
};
TrainingFileInfo inspect_training_file(const std::string& path);

struct FileSourceSettings {
  std::string path;
  SampleFormat format;  // must match the file's system and grid (checked)
  int batch = 8;
  std::uint64_t shuffle_seed = 1;
  DeviceKind device = DeviceKind::Cpu;
};
// A dataset file: each epoch visits floor(N / batch) batches of a fresh permutation of the rows (Fisher-Yates
// driven by Philox(shuffle_seed, epoch)); the N mod batch rows at the end of each permutation sit that epoch
// out, so every batch has the same size (batch statistics stay comparable). Rows are read by the prefetch
// thread; a non-finite value is an InputError naming the file, the dataset and the row.
std::unique_ptr<BatchSource> make_file_source(const FileSourceSettings& settings);

// The permutation of [0, n) that a file source uses in `epoch` (exposed for tests).
std::vector<std::int64_t> epoch_permutation(std::int64_t n, std::uint64_t seed, std::int64_t epoch);

// A fixed validation set, held in memory.
struct ValidationSet {
  int count = 0;
  std::vector<float> input;   // [count, channels, V]
  std::vector<float> target;  // [count, V]
  std::string description, record_json;
};
// `count` synthesizer scenes of `seed` (samples 0 .. count - 1): use a seed that training never uses.
ValidationSet make_synthesized_validation(const SampleFormat& format, const SceneConfig& config,
                                          std::uint64_t seed, int count, DeviceKind device);
// The first min(N, max_count) rows of a dataset file (max_count 0: all).
ValidationSet read_validation_file(const std::string& path, const SampleFormat& format, int max_count,
                                   DeviceKind device);

// Runs a source ahead of the trainer on a background thread (`depth` batches in flight), starting at
// (epoch, index) and continuing across epochs. The thread runs OpenMP code with `threads` threads, so that
// the training step keeps the cores. An exception in the producer is rethrown by next().
class Prefetcher {
 public:
  Prefetcher(BatchSource& source, std::int64_t epoch, int index, int depth = 2, int threads = 1);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;
  HostBatch next();

 private:
  void run();

  BatchSource& source_;
  std::int64_t epoch_;
  int index_, depth_, threads_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<HostBatch> ready_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace nfmimo::nn
