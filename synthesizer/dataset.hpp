// Training datasets on disk: `nfmimo synthesize` (shards, resume, gzip, a writer thread) and `nfmimo merge`.
//
// A dataset is a measurement file (docs/formats.md) with /grid, /targets and /snr_db, plus root attributes
// that say how it was made: synthesizer_config (the complete configuration as JSON), seed, count (samples of
// the whole run), shard ("i/n"), first_sample, complete (0/1), device, generator. Datasets are extendable and
// chunked one sample per chunk. A run writes OUT.partial (complete = 0) batch by batch and renames it to OUT
// when every sample is in; so OUT only ever names a complete file, and an interrupted run leaves a valid
// OUT.partial that `--resume` continues. See docs/synthesizer.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kernels/device.hpp"
#include "radar/system.hpp"
#include "synthesizer/scene.hpp"

namespace nfmimo {

// Bounds of the run options: far beyond any real dataset or batch, they keep a typo from meaning months of
// work or terabytes of memory.
inline constexpr std::int64_t kMaxDatasetCount = std::int64_t(1) << 40;
inline constexpr int kMaxBatch = 65536;

// What makes the samples of a file: sample i depends only on (config, seed, i), given the system and grid.
struct DatasetSpec {
  SceneConfig config;
  std::uint64_t seed = 1;
  std::int64_t count = 0;  // samples of the whole run (all shards)
  int shard_index = 0, shard_count = 1;
  RadarSystem system;
  ImagingGrid grid;

  // Samples [first, end) of this shard: contiguous ranges, shard i holds [count i / n, count (i + 1) / n).
  std::int64_t first() const;
  std::int64_t end() const;
};

// "i/n" with 0 <= i < n. InputError otherwise.
void parse_shard_option(const std::string& text, int& index, int& count);
// Checks count, shard, seed range, configuration, system and grid; InputError naming what is wrong.
void validate_dataset_spec(const DatasetSpec& spec);
// First difference between two specs (configuration, seed, count, system, grid and, if asked, shard).
std::optional<std::string> describe_difference(const DatasetSpec& a, const DatasetSpec& b,
                                               bool compare_shard);

// OUT.partial: where a run writes until it is complete.
std::string partial_path(const std::string& output);

struct DatasetRunOptions {
  std::string output;
  bool force = false;  // replace OUT / OUT.partial (OUT is only replaced when the new run completes)
  bool resume =
      false;  // continue OUT.partial, report that OUT is already complete, or start if neither exists
  int gzip_level = 0;  // 0..9 (new files only; a resumed file keeps its own)
  int batch = 64;      // samples per generator call and per write
  DeviceKind device = DeviceKind::Auto;
  std::int64_t stop_after = -1;  // >= 0: stop as if interrupted after this many new samples
  const std::atomic<bool>* cancel =
      nullptr;  // set (for example by a signal handler) to stop after the current batch
  // Called on the calling thread with (samples written by this run, samples this run has to write).
  std::function<void(std::int64_t, std::int64_t)> progress;
};

struct DatasetRunResult {
  bool complete = false;
  std::string path;             // OUT when complete, else OUT.partial
  std::int64_t written = 0;     // samples written by this run
  std::int64_t in_file = 0;     // samples the file holds
  std::int64_t shard_size = 0;  // samples the shard holds when complete
  double seconds = 0;
  std::string device;  // description of what generated the samples
};

DatasetRunResult synthesize_dataset(const DatasetSpec& spec, const DatasetRunOptions& options);

// What a file made by synthesize_dataset or merge_datasets says about itself.
struct DatasetInfo {
  DatasetSpec spec;
  std::int64_t first_sample = 0;
  std::int64_t rows = 0;  // complete samples (the smallest length of the three datasets)
  bool complete = false;
  int gzip_level = 0;
  std::string device;
};
DatasetInfo read_dataset_info(const std::string& path);

struct MergeOptions {
  bool force = false;
  int gzip_level = 0;
};
// Merges complete shard files of one run (same configuration, seed, count, system and grid) whose sample
// ranges tile [0, count) into one complete file, written atomically. Returns the number of samples.
std::int64_t merge_datasets(const std::vector<std::string>& inputs, const std::string& output,
                            const MergeOptions& options);

}  // namespace nfmimo
