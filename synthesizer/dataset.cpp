#include "synthesizer/dataset.hpp"

#include <sys/resource.h>
#include <sys/statvfs.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <limits>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "data/atomic_file.hpp"
#include "data/hdf5.hpp"
#include "data/measurement_file.hpp"
#include "radar/error.hpp"
#include "synthesizer/synthesizer.hpp"

namespace nfmimo {

namespace fs = std::filesystem;

std::int64_t DatasetSpec::first() const { return count * shard_index / shard_count; }
std::int64_t DatasetSpec::end() const { return count * (shard_index + 1) / shard_count; }

std::string partial_path(const std::string& output) { return output + ".partial"; }

void parse_shard_option(const std::string& text, int& index, int& count) {
  const auto slash = text.find('/');
  long i = -1, n = -1;
  try {
    std::size_t used_i = 0, used_n = 0;
    if (slash != std::string::npos) {
      i = std::stol(text.substr(0, slash), &used_i);
      n = std::stol(text.substr(slash + 1), &used_n);
      if (used_i != slash || used_n != text.size() - slash - 1) i = n = -1;
    }
  } catch (const std::exception&) {
    i = n = -1;
  }
  require(slash != std::string::npos && n >= 1 && i >= 0 && n <= 1000000,
          fmt::format("--shard: '{}' is not i/n (shard i of n, 0 <= i < n)", text));
  require(i < n,
          fmt::format("--shard: '{}' is out of range: the shard index must satisfy 0 <= i < {}", text, n));
  index = static_cast<int>(i);
  count = static_cast<int>(n);
}

void validate_dataset_spec(const DatasetSpec& s) {
  require(s.count >= 1 && s.count <= kMaxDatasetCount,
          fmt::format("--count must be in 1..{} (got {})", kMaxDatasetCount, s.count));
  require(s.shard_count >= 1 && s.shard_index >= 0 && s.shard_index < s.shard_count,
          fmt::format("--shard: {}/{} is out of range (0 <= i < n)", s.shard_index, s.shard_count));
  require(s.shard_count <= s.count,
          fmt::format("--shard: {} shards for {} samples would leave shards empty", s.shard_count, s.count));
  require(s.seed <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()),
          "the seed must be below 2^63 (it is stored as a signed 64-bit attribute)");
  validate_scene_config(s.config, "scene configuration");
  validate_system(s.system, "system");
  validate_grid(s.grid, s.system, "grid");
  validate_scene_grid(s.grid, "grid");
}

std::optional<std::string> describe_difference(const DatasetSpec& a, const DatasetSpec& b,
                                               bool compare_shard) {
  if (scene_config_json(a.config) != scene_config_json(b.config))
    return fmt::format("the configuration differs:\n  {}\nvs\n  {}", scene_config_json(a.config),
                       scene_config_json(b.config));
  if (a.seed != b.seed) return fmt::format("the seed differs: {} vs {}", a.seed, b.seed);
  if (a.count != b.count) return fmt::format("the sample count differs: {} vs {}", a.count, b.count);
  if (compare_shard && (a.shard_index != b.shard_index || a.shard_count != b.shard_count))
    return fmt::format("the shard differs: {}/{} vs {}/{}", a.shard_index, a.shard_count, b.shard_index,
                       b.shard_count);
  if (auto d = describe_difference(a.system, b.system, 1e-12)) return "the system differs: " + *d;
  if (auto d = describe_difference(a.grid, b.grid, 1e-12)) return "the grid differs: " + *d;
  return std::nullopt;
}

namespace {

constexpr const char* kGenerator = "nfmimo synthesize " NFMIMO_VERSION;

std::string shard_string(const DatasetSpec& s) { return fmt::format("{}/{}", s.shard_index, s.shard_count); }

// A new, empty dataset file: attributes, /system, /grid and the three extendable datasets.
void create_dataset_file(h5::File& f, const DatasetSpec& s, std::int64_t first_sample, int gzip,
                         const std::string& device) {
  f.set_attribute("/", "nfmimo_format", std::string("measurements"));
  f.set_attribute("/", "nfmimo_version", static_cast<long long>(kFormatVersion));
  f.set_attribute("/", "generator", std::string(kGenerator));
  f.set_attribute("/", "synthesizer_config", scene_config_json(s.config));
  f.set_attribute("/", "seed", static_cast<long long>(s.seed));
  f.set_attribute("/", "count", static_cast<long long>(s.count));
  f.set_attribute("/", "shard", shard_string(s));
  f.set_attribute("/", "first_sample", static_cast<long long>(first_sample));
  f.set_attribute("/", "gzip_level", static_cast<long long>(gzip));
  f.set_attribute("/", "device", device);
  f.set_attribute("/", "complete", 0LL);
  write_system(f, s.system);
  write_grid(f, s.grid);
  h5::WriteOptions wo;
  wo.extendable = true;
  wo.gzip_level = gzip;
  const RadarSystem& sys = s.system;
  f.write<cfloat>("/measurements",
                  {0, hsize_t(sys.frequencies()), hsize_t(sys.transmitters()), hsize_t(sys.receivers())},
                  nullptr, wo);
  f.set_attribute("/measurements", "index_order", std::string("N, frequency, transmitter, receiver"));
  f.write<cfloat>("/targets",
                  {0, hsize_t(s.grid.x().size), hsize_t(s.grid.y().size), hsize_t(s.grid.z().size)}, nullptr,
                  wo);
  f.set_attribute("/targets", "index_order", std::string("N, x, y, z (z fastest)"));
  h5::WriteOptions snr_options = wo;
  snr_options.chunk = {4096};  // 4-byte rows: one sample per chunk would be all overhead
  f.write<float>("/snr_db", {0}, nullptr, snr_options);
  f.set_attribute("/snr_db", "units", std::string("dB"));
  f.flush();
}

std::int64_t int_attribute(const h5::File& f, const char* name) {
  const auto v = f.int_attribute("/", name);
  if (!v)
    throw InputError(fmt::format(
        "{}: the root attribute '{}' is missing (not a complete nfmimo dataset header)", f.path(), name));
  return *v;
}

DatasetInfo read_info(const h5::File& f) {
  const std::string path = f.path();
  const auto format = f.string_attribute("/", "nfmimo_format");
  require(format && *format == "measurements",
          fmt::format("{}: not an nfmimo measurement file (root attribute nfmimo_format)", path));
  const auto config = f.string_attribute("/", "synthesizer_config");
  require(
      config.has_value(),
      fmt::format("{}: not a dataset made by nfmimo synthesize (no 'synthesizer_config' attribute)", path));
  DatasetInfo info;
  DatasetSpec& s = info.spec;
  s.config = parse_scene_config(*config, path + ": attribute synthesizer_config");
  s.seed = static_cast<std::uint64_t>(int_attribute(f, "seed"));
  s.count = int_attribute(f, "count");
  parse_shard_option(f.string_attribute("/", "shard").value_or(""), s.shard_index, s.shard_count);
  s.system = read_system(f);
  const auto grid = read_grid(f);
  require(grid.has_value(), fmt::format("{}: /grid is missing", path));
  s.grid = *grid;
  info.first_sample = int_attribute(f, "first_sample");
  info.complete = int_attribute(f, "complete") != 0;
  info.gzip_level = static_cast<int>(f.int_attribute("/", "gzip_level").value_or(0));
  info.device = f.string_attribute("/", "device").value_or("");
  // Shapes: the trailing dimensions must match the system and grid; the complete rows are the shortest length
  // (an interrupted write may have extended one dataset and not the others).
  const RadarSystem& sys = s.system;
  const h5::Dims m = f.shape("/measurements"), t = f.shape("/targets"), r = f.shape("/snr_db");
  const h5::Dims m_tail = {hsize_t(sys.frequencies()), hsize_t(sys.transmitters()), hsize_t(sys.receivers())};
  const h5::Dims t_tail = {hsize_t(s.grid.x().size), hsize_t(s.grid.y().size), hsize_t(s.grid.z().size)};
  require(m.size() == 4 && std::equal(m_tail.begin(), m_tail.end(), m.begin() + 1),
          fmt::format("{}: has the wrong shape for /system", f.where("/measurements")));
  require(t.size() == 4 && std::equal(t_tail.begin(), t_tail.end(), t.begin() + 1),
          fmt::format("{}: has the wrong shape for /grid", f.where("/targets")));
  require(r.size() == 1, fmt::format("{}: must be one-dimensional", f.where("/snr_db")));
  info.rows = static_cast<std::int64_t>(std::min({m[0], t[0], r[0]}));
  require(info.first_sample == s.first(), fmt::format("{}: first_sample {} does not start shard {}", path,
                                                      info.first_sample, shard_string(s)));
  require(info.rows <= s.end() - s.first(),
          fmt::format("{}: holds {} samples, more than shard {} has ({})", path, info.rows, shard_string(s),
                      s.end() - s.first()));
  return info;
}

// Room to write `bytes` more to `path` (an existing file): free space on its file system and the process's
// file-size limit (RLIMIT_FSIZE). A write that fails half-way can leave an HDF5 file that no longer opens, so
// the writer checks before each batch and stops cleanly while the file is still consistent.
std::int64_t room_for(const std::string& path) {
  std::int64_t room = std::numeric_limits<std::int64_t>::max();
  struct statvfs st {};
  const fs::path dir = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : fs::path(".");
  if (::statvfs(dir.c_str(), &st) == 0) room = static_cast<std::int64_t>(st.f_bavail) * st.f_frsize;
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_FSIZE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    room =
        std::min(room, static_cast<std::int64_t>(limit.rlim_cur) - static_cast<std::int64_t>(ec ? 0 : size));
  }
  return room;
}

constexpr std::int64_t kMetadataMargin = 1
                                         << 20;  // chunk index and object headers written at flush and close

std::string megabytes(std::int64_t bytes) { return fmt::format("{:.4g} MB", bytes / 1e6); }

// The disk (or the file-size limit) cannot take the next batch: nothing was written, the file is consistent.
class NoRoomError : public InputError {
 public:
  using InputError::InputError;
};

struct Batch {
  std::uint64_t first = 0;
  int count = 0;
  std::vector<cfloat> targets, measurements;
  std::vector<float> snr_db;
};

// One writer thread appends finished batches while the caller computes the next ones. Buffers circulate
// between a free list and a queue; an error in the writer stops it and is rethrown on the caller's thread.
class BatchWriter {
 public:
  BatchWriter(h5::File& file, int buffers, std::size_t V, std::size_t S, int max_batch)
      : file_(file), bytes_per_sample_(static_cast<std::int64_t>((V + S) * sizeof(cfloat) + sizeof(float))) {
    storage_.resize(buffers);
    for (Batch& b : storage_) {
      b.targets.resize(V * max_batch);
      b.measurements.resize(S * max_batch);
      b.snr_db.resize(max_batch);
      free_.push_back(&b);
    }
    thread_ = std::thread([this] { run(); });
  }
  ~BatchWriter() {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
    }
    changed_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  Batch* acquire() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return error_ || !free_.empty(); });
    if (error_) std::rethrow_exception(error_);
    Batch* b = free_.front();
    free_.pop_front();
    return b;
  }
  void submit(Batch* b) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(b);
    }
    changed_.notify_all();
  }
  // Waits until every submitted batch is written, stops the thread and rethrows its error, if any.
  void finish() {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
    }
    changed_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (error_) std::rethrow_exception(error_);
  }
  std::int64_t written() const { return written_.load(); }

 private:
  void run() {
    h5::silence_library_errors();  // per thread: errors become exceptions with our own messages
    for (;;) {
      Batch* b = nullptr;
      {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return closing_ || !queue_.empty(); });
        if (queue_.empty()) return;  // closing and drained
        b = queue_.front();
        queue_.pop_front();
      }
      try {
        const std::int64_t needed = b->count * bytes_per_sample_ + kMetadataMargin;
        const std::int64_t room = room_for(file_.path());
        if (room < needed)
          throw NoRoomError(
              fmt::format("{}: the disk is full: the next batch needs {} but only {} can be written",
                          file_.path(), megabytes(needed), megabytes(std::max<std::int64_t>(room, 0))));
        file_.append<cfloat>("/targets", b->targets.data(), b->count);
        file_.append<cfloat>("/measurements", b->measurements.data(), b->count);
        file_.append<float>("/snr_db", b->snr_db.data(), b->count);
        file_.flush();  // the file on disk is valid at every batch boundary
      } catch (...) {
        std::lock_guard lock(mutex_);
        error_ = std::current_exception();
        changed_.notify_all();
        return;
      }
      written_ += b->count;
      {
        std::lock_guard lock(mutex_);
        free_.push_back(b);
      }
      changed_.notify_all();
    }
  }

  h5::File& file_;
  std::int64_t bytes_per_sample_;  // uncompressed: an upper bound with gzip
  std::vector<Batch> storage_;
  std::deque<Batch*> free_, queue_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool closing_ = false;
  std::exception_ptr error_;
  std::atomic<std::int64_t> written_{0};
  std::thread thread_;
};

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

}  // namespace

DatasetInfo read_dataset_info(const std::string& path) {
  const h5::File f(path, h5::File::Mode::Read);
  return read_info(f);
}

DatasetRunResult synthesize_dataset(const DatasetSpec& spec, const DatasetRunOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  validate_dataset_spec(spec);
  require(o.batch >= 1 && o.batch <= kMaxBatch,
          fmt::format("--batch must be in 1..{} (got {})", kMaxBatch, o.batch));
  require(o.gzip_level >= 0 && o.gzip_level <= 9,
          fmt::format("--gzip must be in 0..9 (got {})", o.gzip_level));
  require(o.stop_after >= -1, fmt::format("--stop-after must not be negative (got {})", o.stop_after));
  {
    AtomicOutput probe(o.output, true);  // the folder exists and OUT is not a folder; creates nothing
  }
  require_companion_name_fits(o.output, partial_path(o.output));
  // One run per output at a time: the lock covers OUT.partial and OUT until the run ends, so a second run
  // (even with --force) stops at once instead of removing or corrupting this one's file.
  const OutputLock lock(o.output);
  {
    // The two batch buffers in flight, and the synthesizer's working copy of a batch: refuse before any file
    // is made rather than fail to allocate them.
    const std::uint64_t per_sample =
        (spec.grid.voxels() + spec.system.samples_per_frame()) * sizeof(cfloat) + sizeof(float);
    const std::uint64_t needed = 3 * per_sample * static_cast<std::uint64_t>(o.batch);
    if (needed > h5::available_memory())
      throw InputError(fmt::format(
          "--batch {}: the batch buffers need {:.1f} GB of memory but {:.1f} GB are available; use a smaller "
          "--batch",
          o.batch, needed / 1e9, h5::available_memory() / 1e9));
  }
  const std::string out = o.output, partial = partial_path(o.output);
  DatasetRunResult result;
  result.shard_size = spec.end() - spec.first();

  std::optional<h5::File> file;
  std::int64_t rows = 0;
  if (o.resume && exists(partial)) {
    DatasetInfo info;
    try {
      file.emplace(partial, h5::File::Mode::ReadWrite);
      info = read_info(*file);
    } catch (const InputError& e) {
      throw InputError(
          fmt::format("{} (the partial file cannot be resumed; start over with --force)", e.what()));
    }
    if (auto d = describe_difference(info.spec, spec, true))
      throw InputError(
          fmt::format("{}: cannot resume: {} (the partial file was made with other settings)", partial, *d));
    rows = info.rows;
    // Drop a torn batch: every dataset keeps exactly the rows that all of them hold.
    for (const char* name : {"/targets", "/measurements", "/snr_db"})
      if (static_cast<std::int64_t>(file->shape(name)[0]) != rows) file->resize_rows(name, rows);
  } else if (o.resume && exists(out)) {
    const DatasetInfo info = read_dataset_info(out);
    if (auto d = describe_difference(info.spec, spec, true))
      throw InputError(fmt::format("{}: exists and was made with other settings: {}", out, *d));
    require(info.complete,
            fmt::format("{}: is marked incomplete; it cannot be resumed under its final name", out));
    result.complete = true;
    result.path = out;
    result.in_file = info.rows;
    return result;
  } else {
    // Nothing to resume: start (so one command line both starts a job and continues it after a preemption).
    if (!o.force) {
      require(!exists(partial),
              fmt::format("{}: an interrupted run left this file; pass --resume to continue it or "
                          "--force to start over",
                          partial));
      require(!exists(out), fmt::format("{}: already exists; pass --force to replace it (or --resume)", out));
    }
    std::error_code ec;
    fs::remove(partial, ec);
  }

  const Synthesizer synth(spec.system, spec.grid, spec.config, spec.seed, o.device, o.batch);
  result.device = synth.device_description();
  const std::string device_kind = to_string(synth.device());
  if (!file) {
    file.emplace(partial, h5::File::Mode::Create);
    create_dataset_file(*file, spec, spec.first(), o.gzip_level, device_kind);
  } else {
    const std::string stored = file->string_attribute("/", "device").value_or("");
    if (stored.find(device_kind) == std::string::npos)
      file->set_attribute("/", "device", stored.empty() ? device_kind : stored + "+" + device_kind);
  }

  const std::int64_t end = spec.end();
  std::int64_t next = spec.first() + rows;
  std::int64_t to_write = end - next;
  if (o.stop_after >= 0) to_write = std::min(to_write, o.stop_after);
  const std::size_t V = spec.grid.voxels(), S = spec.system.samples_per_frame();
  const int stored_gzip = static_cast<int>(file->int_attribute("/", "gzip_level").value_or(0));
  if (stored_gzip == 0) {  // uncompressed: the size is known, so a run that cannot fit fails before it starts
    const std::int64_t needed =
        to_write * static_cast<std::int64_t>((V + S) * sizeof(cfloat) + sizeof(float));
    const std::int64_t room = room_for(partial);
    if (room < needed + kMetadataMargin) {
      const bool fresh = rows == 0;
      file.reset();
      std::error_code ec;
      if (fresh) fs::remove(partial, ec);
      throw InputError(
          fmt::format("{}: the disk is too full for this run: {} samples need {} but only {} can be "
                      "written (free some space, use --gzip, or make fewer samples)",
                      out, to_write, megabytes(needed), megabytes(std::max<std::int64_t>(room, 0))));
    }
  }
  std::int64_t written = 0;
  {
    BatchWriter writer(*file, 2, V, S, o.batch);
    try {
      std::int64_t generated = 0;
      while (generated < to_write) {
        if (o.cancel && o.cancel->load()) break;
        if (o.progress) o.progress(writer.written(), to_write);
        Batch* b = writer.acquire();
        b->first = static_cast<std::uint64_t>(next);
        b->count = static_cast<int>(std::min<std::int64_t>(o.batch, to_write - generated));
        synth.generate(b->first, b->count, b->targets.data(), b->measurements.data(), b->snr_db.data());
        writer.submit(b);
        next += b->count;
        generated += b->count;
      }
      writer.finish();
    } catch (const NoRoomError& e) {
      throw InputError(
          fmt::format("{}. Stopped after {} complete samples, which {} keeps: free some space and "
                      "rerun with --resume",
                      e.what(), rows + writer.written(), partial));
    } catch (const Error& e) {
      throw InputError(
          fmt::format("{} (after {} complete samples in {}; the failed write may have damaged it: try "
                      "--resume, and if the file cannot be opened, start over with --force)",
                      e.what(), rows + writer.written(), partial));
    }
    written = writer.written();
  }
  if (o.progress) o.progress(written, to_write);
  result.written = written;
  result.in_file = rows + written;
  result.complete = result.in_file == result.shard_size;
  if (result.complete) {
    file->set_attribute("/", "complete", 1LL);
    file->flush();
    file.reset();  // close before the rename
    std::error_code ec;
    fs::rename(partial, out, ec);
    if (ec)
      throw InputError(fmt::format("{}: cannot move the finished file into place: {}", out, ec.message()));
    result.path = out;
  } else {
    file->flush();
    file.reset();
    result.path = partial;
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

std::int64_t merge_datasets(const std::vector<std::string>& inputs, const std::string& output,
                            const MergeOptions& o) {
  require(!inputs.empty(), "merge: no input files");
  require(o.gzip_level >= 0 && o.gzip_level <= 9,
          fmt::format("--gzip must be in 0..9 (got {})", o.gzip_level));
  std::vector<std::pair<std::string, DatasetInfo>> parts;
  for (const std::string& path : inputs) {
    require_distinct_paths(path, output);
    DatasetInfo info = read_dataset_info(path);
    require(info.complete && info.rows == info.spec.end() - info.spec.first(),
            fmt::format(
                "{}: is not complete ({} of {} samples); finish it with `nfmimo synthesize --resume` first",
                path, info.rows, info.spec.end() - info.spec.first()));
    if (!parts.empty())
      if (auto d = describe_difference(parts.front().second.spec, info.spec, false))
        throw InputError(
            fmt::format("{} and {} belong to different runs: {}", parts.front().first, path, *d));
    parts.emplace_back(path, std::move(info));
  }
  std::sort(parts.begin(), parts.end(),
            [](const auto& a, const auto& b) { return a.second.first_sample < b.second.first_sample; });
  const DatasetSpec& run = parts.front().second.spec;
  std::int64_t expected = 0;
  std::string previous = "the start";
  for (const auto& [path, info] : parts) {
    require(info.first_sample <= expected,
            fmt::format("merge: samples [{}, {}) are missing between {} and {}", expected, info.first_sample,
                        previous, path));
    require(info.first_sample == expected,
            fmt::format("merge: {} overlaps {} (samples from {})", path, previous, info.first_sample));
    expected += info.rows;
    previous = path;
  }
  require(expected == run.count, fmt::format("merge: samples [{}, {}) of the run are missing (after {})",
                                             expected, run.count, previous));

  DatasetSpec merged = run;
  merged.shard_index = 0;
  merged.shard_count = 1;
  std::string device;
  for (const auto& p : parts)
    if (device.find(p.second.device) == std::string::npos)
      device += (device.empty() ? "" : "+") + p.second.device;

  AtomicOutput out(output, o.force);
  {
    h5::File f(out.temporary_path(), h5::File::Mode::Create, output);
    create_dataset_file(f, merged, 0, o.gzip_level, device);
    constexpr std::int64_t kRowsPerCopy = 64;  // bounded memory whatever the dataset size
    for (const auto& [path, info] : parts) {
      const h5::File in(path, h5::File::Mode::Read);
      for (std::int64_t r = 0; r < info.rows; r += kRowsPerCopy) {
        const hsize_t n = static_cast<hsize_t>(std::min(kRowsPerCopy, info.rows - r));
        f.append("/targets", in.read_rows<cfloat>("/targets", r, n).data.data(), n);
        f.append("/measurements", in.read_rows<cfloat>("/measurements", r, n).data.data(), n);
        f.append("/snr_db", in.read_rows<float>("/snr_db", r, n).data.data(), n);
      }
    }
    f.set_attribute("/", "complete", 1LL);
    f.close();
  }
  out.commit();
  return run.count;
}

}  // namespace nfmimo
