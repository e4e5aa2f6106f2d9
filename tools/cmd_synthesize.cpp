// nfmimo synthesize --out OUT --count N [--system paper --freqs K | --system-file F] [--snr DB | MIN:MAX |
// none]
//                   [--seed S] [--config scenes.json] [--device auto|cpu|cuda] [--shard i/n] [--resume]
//                   [--force]
// nfmimo merge --out OUT SHARD...
#include <cstdio>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "data/atomic_file.hpp"
#include "data/hdf5.hpp"
#include "data/measurement_file.hpp"
#include "radar/error.hpp"
#include "synthesizer/dataset.hpp"
#include "tools/commands.hpp"
#include "tools/progress.hpp"
#include "tools/stop_signals.hpp"

namespace nfmimo {
namespace {

struct SynthesizeOptions {
  std::string output, system = "paper", system_file, grid = "paper", config, snr, objects, types, phase,
                      shard, device = "auto";
  int freqs = 15, batch = 0, gzip = 0;
  std::int64_t count = 0, stop_after = -1, seed = 1;
  double smooth = 0;
  bool resume = false, force = false;
};

bool exists(const std::string& p) {
  std::error_code ec;
  return std::filesystem::exists(p, ec);
}

// The run to make: on --resume the stored settings, with any option given on the command line on top (the
// synthesizer then refuses a partial file whose settings differ).
DatasetSpec build_spec(const SynthesizeOptions& o, const CLI::App& c) {
  auto given = [&](const char* name) { return c.count(name) > 0; };
  std::optional<DatasetInfo> stored;
  if (o.resume) {
    const std::string partial = partial_path(o.output);
    try {
      if (exists(partial))
        stored = read_dataset_info(partial);
      else if (exists(o.output))
        stored = read_dataset_info(o.output);
    } catch (const InputError& e) {
      throw InputError(fmt::format("{} (it cannot be resumed; start over with --force)", e.what()));
    }
  }
  DatasetSpec spec;
  if (stored) spec = stored->spec;
  std::optional<ImagingGrid> file_grid;
  if (given("--system-file")) {
    require(!given("--system") && !given("--freqs"),
            "--system-file replaces --system and --freqs; give one of them");
    require_distinct_paths(o.system_file, o.output);
    const h5::File f(o.system_file, h5::File::Mode::Read);
    spec.system = read_system(f);
    file_grid = read_grid(f);
  } else if (!stored || given("--system") || given("--freqs")) {
    require(o.freqs >= 1, fmt::format("--freqs must be positive (got {})", o.freqs));
    spec.system = named_system(o.system, o.freqs);
  }
  if (given("--grid"))
    spec.grid = parse_grid(o.grid);
  else if (file_grid)
    spec.grid = *file_grid;
  else if (!stored)
    spec.grid = ImagingGrid::paper();

  if (given("--config")) spec.config = read_scene_config(o.config);
  if (given("--snr")) parse_snr_option(o.snr, spec.config);
  if (given("--objects")) parse_objects_option(o.objects, spec.config);
  if (given("--types")) parse_types_option(o.types, spec.config);
  if (given("--phase")) {
    require(o.phase == "random" || o.phase == "constant",
            fmt::format("--phase: '{}' is not random or constant", o.phase));
    spec.config.phase = o.phase == "random" ? PhaseModel::RandomPerVoxel : PhaseModel::ConstantPerObject;
  }
  if (given("--smooth")) spec.config.smooth_depth = o.smooth;
  validate_scene_config(spec.config, "options");

  if (given("--count"))
    spec.count = o.count;
  else
    require(stored.has_value(), "--count is required (the number of samples to make)");
  if (given("--seed") || !stored) {
    require(o.seed >= 0, fmt::format("--seed must be a non-negative integer below 2^63 (got {})", o.seed));
    spec.seed = static_cast<std::uint64_t>(o.seed);
  }
  if (given("--shard")) parse_shard_option(o.shard, spec.shard_index, spec.shard_count);
  validate_dataset_spec(spec);
  return spec;
}

void run_synthesize(const SynthesizeOptions& o, const CLI::App& c) {
  require(!(o.resume && o.force), "--resume and --force exclude each other");
  const DatasetSpec spec = build_spec(o, c);
  DatasetRunOptions ro;
  ro.output = o.output;
  ro.force = o.force;
  ro.resume = o.resume;
  ro.gzip_level = o.gzip;
  ro.device = parse_device(o.device);
  if (c.count("--batch"))
    require(o.batch >= 1 && o.batch <= kMaxBatch,
            fmt::format("--batch must be in 1..{} (got {})", kMaxBatch, o.batch));
  ro.batch = c.count("--batch") ? o.batch : (resolve_device(ro.device) == DeviceKind::Cuda ? 1024 : 64);
  if (c.count("--stop-after"))
    require(o.stop_after >= 0, fmt::format("--stop-after must not be negative (got {})", o.stop_after));
  ro.stop_after = o.stop_after;
  ro.cancel = &stop_requested();
  std::unique_ptr<ProgressBar> bar;
  ro.progress = [&](std::int64_t done, std::int64_t total) {
    if (!bar) bar = std::make_unique<ProgressBar>("synthesize", static_cast<std::size_t>(total), "scenes");
    bar->update(static_cast<std::size_t>(done));
  };
  DatasetRunResult r;
  {
    StopSignals signals;
    r = synthesize_dataset(spec, ro);
  }
  if (bar) bar->finish();
  const std::string what = fmt::format("samples [{}, {}) of {} (shard {}/{})", spec.first(), spec.end(),
                                       spec.count, spec.shard_index, spec.shard_count);
  if (r.complete && r.written == 0) {
    std::printf("%s is already complete: %s; nothing to do\n", r.path.c_str(), what.c_str());
    return;
  }
  const double rate = r.seconds > 0 ? r.written / r.seconds : 0;
  if (r.complete) {
    std::printf("synthesized %lld samples on %s in %.1f s (%.1f scenes/s): %s -> %s\n",
                static_cast<long long>(r.written), r.device.c_str(), r.seconds, rate, what.c_str(),
                r.path.c_str());
    return;
  }
  std::fprintf(stderr,
               "nfmimo: %s after %lld new samples (%.1f scenes/s): %s holds %lld of %lld (%s); rerun "
               "with --resume to continue\n",
               stop_requested().load() ? "interrupted" : "stopped (--stop-after)",
               static_cast<long long>(r.written), rate, r.path.c_str(), static_cast<long long>(r.in_file),
               static_cast<long long>(r.shard_size), what.c_str());
  if (stop_requested().load()) throw CommandExit{130};
}

}  // namespace

void add_synthesize_command(CLI::App& app) {
  auto o = std::make_shared<SynthesizeOptions>();
  CLI::App* c =
      app.add_subcommand("synthesize", "Make a training dataset of random 3D scenes and their measurements");
  c->add_option("--out,-o", o->output, "Dataset file to write (HDF5; OUT.partial until complete)")
      ->required();
  c->add_option("--count,-n", o->count, "Samples of the whole run (all shards)");
  c->add_option("--system", o->system, "Radar system by name")->capture_default_str();
  c->add_option("--freqs,-K", o->freqs, "Number of frequencies (4-16 GHz)")->capture_default_str();
  c->add_option("--system-file", o->system_file,
                "Take /system (positions, frequencies) and, without --grid, /grid from this nfmimo file");
  c->add_option("--grid", o->grid, "Imaging grid 'x0:x1:nx,y0:y1:ny,z0:z1:nz' (m) or 'paper'")
      ->capture_default_str();
  c->add_option("--config", o->config,
                "Scene configuration (JSON, docs/synthesizer.md); options below override it");
  c->add_option("--snr", o->snr, "SNR in dB: DB, MIN:MAX (uniform per sample) or none (default 30)");
  c->add_option("--objects", o->objects, "Objects per scene: N or MIN:MAX (default 1:5)");
  c->add_option("--types", o->types, "Object types, comma-separated: ellipsoid,cuboid,cylinder,plate,point");
  c->add_option("--phase", o->phase, "random (per voxel, default) | constant (per object)");
  c->add_option("--smooth", o->smooth, "Smooth magnitude variation depth in [0, 1] (default 0: constant)");
  c->add_option("--seed", o->seed, "Seed: sample i depends only on (seed, i, configuration)")
      ->capture_default_str();
  c->add_option("--device,-d", o->device, "auto | cpu | cuda")->capture_default_str();
  c->add_option("--batch", o->batch, "Samples per batch (default 64 on the CPU, 1024 on the GPU)");
  c->add_option("--shard", o->shard,
                "Make only shard i of n (0 <= i < n): samples [count i/n, count (i+1)/n)");
  c->add_option("--gzip", o->gzip, "gzip level 0-9 for new files (0: none)")->capture_default_str();
  c->add_option("--stop-after", o->stop_after,
                "Stop after this many new samples, leaving a resumable OUT.partial");
  c->add_flag(
      "--resume", o->resume,
      "Continue OUT.partial left by an interrupted run (starts the run if there is nothing to continue)");
  c->add_flag("--force,-f", o->force, "Start over: replace OUT.partial, and OUT once the new run completes");
  c->callback([o, c] { run_synthesize(*o, *c); });
}

void add_merge_command(CLI::App& app) {
  struct MergeCli {
    std::string output;
    std::vector<std::string> inputs;
    bool force = false;
    int gzip = 0;
  };
  auto o = std::make_shared<MergeCli>();
  CLI::App* c = app.add_subcommand("merge", "Merge the shard files of one synthesize run into one dataset");
  c->add_option("inputs", o->inputs, "Complete shard files (any order)")->required();
  c->add_option("--out,-o", o->output, "Merged dataset to write")->required();
  c->add_option("--gzip", o->gzip, "gzip level 0-9 of the merged file")->capture_default_str();
  c->add_flag("--force,-f", o->force, "Replace an existing output file");
  c->callback([o] {
    const std::int64_t n = merge_datasets(o->inputs, o->output, {.force = o->force, .gzip_level = o->gzip});
    std::printf("merged %lld samples from %zu files -> %s\n", static_cast<long long>(n), o->inputs.size(),
                o->output.c_str());
  });
}

}  // namespace nfmimo
