// nfmimo train --arch unet3d|unet2d|resnet|cv-unet3d|deepdi|deep2s-plus|denoiser --out model.h5
//              (--synthesize [--system paper --freqs K | --system meas.h5] [--grid G --snr DB ...] |
//               --data train.h5 --val val.h5)
//              (--epochs N | --time-budget 8m) [--batch 8] [--lr 1e-3] [--loss mse|l1|mse+ssim] [--seed S]
//              [--device auto|cpu|cuda] [--precision fp32|tf32|bf16|fp16] [--resume | --force]
// See docs/training.md.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <regex>

#include <fmt/format.h>

#include "data/atomic_file.hpp"
#include "data/hdf5.hpp"
#include "data/measurement_file.hpp"
#include "models/nn/architectures.hpp"
#include "models/learned/denoiser.hpp"
#include "models/training/trainer.hpp"
#include "models/weights.hpp"
#include "radar/error.hpp"
#include "synthesizer/scene.hpp"
#include "tools/commands.hpp"
#include "tools/progress.hpp"
#include "tools/stop_signals.hpp"

namespace nfmimo {
namespace {

struct TrainOptions {
  std::string arch = "unet3d", output, data, val, system = "paper", grid = "paper", config, snr, objects,
              types, phase, time_budget, loss = "mse", schedule = "constant", device = "auto",
              precision = "fp32", checkpoint, init, denoiser_net = "unet3d";
  int freqs = 15, batch = 8, epochs = 0, width = 0, blocks = 8, val_count = 0, patience = 3;
  std::int64_t seed = 1, data_seed = -1, val_seed = -1, epoch_size = 512, stop_after_steps = -1;
  double lr = 1e-3, ssim_weight = 1.0, weight_decay = 0, clip = 0, min_lr = 0, factor = 0.5, smooth = 0,
         sigma_max = 0.1;
  bool synthesize = false, resume = false, force = false;
};

// "8m", "90s", "1h30m", "2.5h" or plain seconds.
double parse_duration(const std::string& text) {
  static const std::regex part(R"(([0-9]*\.?[0-9]+)([hms]?))");
  double total = 0;
  std::size_t pos = 0;
  bool any = false;
  for (std::sregex_iterator it(text.begin(), text.end(), part), end; it != end; ++it) {
    if (std::size_t(it->position()) != pos) break;
    const double v = std::stod((*it)[1]);
    const std::string unit = (*it)[2];
    total += v * (unit == "h" ? 3600 : unit == "m" ? 60 : 1);
    pos += std::size_t(it->length());
    any = true;
  }
  require(any && pos == text.size() && total > 0,
          fmt::format("--time-budget: '{}' is not a positive duration (examples: 90s, 8m, 1h30m)", text));
  return total;
}

std::uint64_t seed_value(std::int64_t v, const char* option) {
  require(v >= 0, fmt::format("{} must be a non-negative integer (got {})", option, v));
  return std::uint64_t(v);
}

void run_train(const TrainOptions& o, const CLI::App& c) {
  auto given = [&](const char* name) { return c.count(name) > 0; };
  // Cheap checks first: a typo must not cost a validation set.
  // --arch denoiser: the pnp denoiser, a unet3d (default width 16) trained on noisy magnitudes
  // (models/learned/denoiser.hpp).
  // --denoiser-net resnet makes it residual (output = input + correction): it starts near the identity, which
  // a short training run needs (docs/training.md, "Denoiser").
  const bool denoiser = o.arch == "denoiser";
  const std::string architecture = denoiser ? o.denoiser_net : o.arch;
  if (denoiser)
    require(o.denoiser_net == "unet3d" || o.denoiser_net == "resnet",
            fmt::format("--denoiser-net must be unet3d or resnet (got '{}')", o.denoiser_net));
  else
    require(!given("--denoiser-net"), "--denoiser-net belongs to --arch denoiser");
  const int channels = nn::architecture_input_channels(architecture);  // InputError for unknown architectures
  if (denoiser) {
    require(o.synthesize, "--arch denoiser trains on synthesizer scenes: give --synthesize (not --data)");
    for (const char* name : {"--snr", "--phase"})
      require(!given(name), fmt::format("{} has no meaning for --arch denoiser (it sees no measurements; its "
                                        "noise is --sigma-max)",
                                        name));
  } else {
    require(!given("--sigma-max"), "--sigma-max belongs to --arch denoiser");
  }
  require(std::isfinite(o.sigma_max) && o.sigma_max >= 0,
          fmt::format("--sigma-max must be a finite number >= 0 (got {})", o.sigma_max));
  require(o.synthesize != !o.data.empty(),
          "give exactly one data source: --synthesize, or --data FILE --val FILE");
  // Every option is checked here, before the validation set or any file is made.
  require(o.batch >= 1 && o.batch <= 65536, fmt::format("--batch must be in 1..65536 (got {})", o.batch));
  require(o.freqs >= 1 && o.freqs <= kMaxNamedFrequencies,
          fmt::format("--freqs must be in 1..{} (got {})", kMaxNamedFrequencies, o.freqs));
  require(o.epochs >= 0 && o.epochs <= 1000000,
          fmt::format("--epochs must be in 0..1000000 (got {})", o.epochs));
  require(o.width >= 0 && o.width <= nn::kMaxWidth,
          fmt::format("--width must be in 0..{} (0: the default; got {})", nn::kMaxWidth, o.width));
  require(o.blocks >= 0 && o.blocks <= nn::kMaxBlocks,
          fmt::format("--blocks must be in 0..{} (got {})", nn::kMaxBlocks, o.blocks));
  require(o.patience >= 0, fmt::format("--patience must not be negative (got {})", o.patience));
  if (given("--val-count"))
    require(o.val_count >= 1 && o.val_count <= 1000000,
            fmt::format("--val-count must be in 1..1000000 (got {})", o.val_count));
  // epoch-size / batch batches per epoch must fit the trainer's 32-bit batch index.
  require(o.epoch_size >= 1 && o.epoch_size / o.batch <= std::numeric_limits<int>::max(),
          fmt::format("--epoch-size must be in 1..{} for --batch {} (got {})",
                      std::int64_t(std::numeric_limits<int>::max()) * o.batch, o.batch, o.epoch_size));
  if (given("--stop-after-steps"))
    require(o.stop_after_steps >= 0,
            fmt::format("--stop-after-steps must not be negative (got {})", o.stop_after_steps));
  require(std::isfinite(o.lr) && o.lr > 0 && o.lr <= 10,
          fmt::format("--lr must be a positive number up to 10 (got {})", o.lr));
  require(std::isfinite(o.weight_decay) && o.weight_decay >= 0,
          fmt::format("--weight-decay must be a finite number >= 0 (got {})", o.weight_decay));
  require(std::isfinite(o.clip) && o.clip >= 0,
          fmt::format("--clip must be a finite number >= 0 (got {})", o.clip));
  require(std::isfinite(o.ssim_weight) && o.ssim_weight >= 0,
          fmt::format("--ssim-weight must be a finite number >= 0 (got {})", o.ssim_weight));
  require(std::isfinite(o.min_lr) && o.min_lr >= 0,
          fmt::format("--min-lr must be a finite number >= 0 (got {})", o.min_lr));
  require(std::isfinite(o.factor) && o.factor > 0 && o.factor < 1,
          fmt::format("--factor must be in (0, 1) (got {})", o.factor));
  require(std::isfinite(o.smooth) && o.smooth >= 0 && o.smooth <= 1,
          fmt::format("--smooth must be in [0, 1] (got {})", o.smooth));
  const nn::Precision precision = nn::parse_precision(o.precision);
  const bool composite = nn::is_composite_architecture(o.arch);
  // The composites (dense first stage + CV U-Net) train on the CPU only so far: `auto` means the CPU for
  // them, an explicit cuda is refused by the trainer with the reason.
  const DeviceKind asked_device = parse_device(o.device);
  const DeviceKind device = composite && asked_device == DeviceKind::Auto ? DeviceKind::Cpu : asked_device;
  require(
      !(composite && device == DeviceKind::Cuda),
      fmt::format("--arch {} trains on the CPU only so far (the dense layer has no GPU training path): use "
                  "--device cpu",
                  o.arch));
  nn::OptimizerSettings opt;
  opt.learning_rate = o.lr;
  opt.loss = nn::parse_loss(o.loss);
  opt.ssim_weight = o.ssim_weight;
  opt.weight_decay = o.weight_decay;
  opt.clip_norm = o.clip;
  nn::ScheduleSettings schedule;
  schedule.kind = nn::parse_schedule(o.schedule);
  schedule.min_lr = given("--min-lr") ? o.min_lr : (schedule.kind == nn::ScheduleKind::Plateau ? 1e-6 : 0.0);
  schedule.factor = o.factor;
  schedule.patience = o.patience;
  const double budget = o.time_budget.empty() ? 0.0 : parse_duration(o.time_budget);
  require(o.epochs > 0 || budget > 0, "give --epochs N, --time-budget T (for example 8m), or both");

  for (const std::string* p : {&o.data, &o.val})
    if (!p->empty()) require_distinct_paths(*p, o.output);
  // What the trainer would refuse, refused before the validation set is made (the trainer checks again).
  const std::string checkpoint =
      o.checkpoint.empty() ? nn::sibling_path(o.output, ".checkpoint.h5") : o.checkpoint;
  require(!(o.resume && o.force), "--resume and --force exclude each other");
  for (const std::string& p :
       {checkpoint, nn::sibling_path(o.output, ".log.csv"), nn::sibling_path(o.output, ".log.json")})
    require_companion_name_fits(o.output, p);
  if (!o.resume && !o.force)
    for (const std::string* p : {&checkpoint, &o.output})
      if (std::filesystem::exists(*p))
        throw InputError(
            fmt::format("{} exists: continue its run with --resume, or start over with --force", *p));
  // The outputs are locked for the whole run (a second train on the same --out stops at once), which also
  // proves their folders writable before any work.
  std::vector<std::unique_ptr<OutputLock>> locks;
  for (const std::string& p : {o.output, checkpoint, nn::sibling_path(o.output, ".log.csv"),
                               nn::sibling_path(o.output, ".log.json")}) {
    AtomicOutput probe(p, true);  // the folder exists and the path is not a folder
    locks.push_back(std::make_unique<OutputLock>(p));
  }
  // Physics for host batches: the GPU when training there (or when auto finds one), else the CPU.
  const DeviceKind physics = resolve_device(device);

  nn::SampleFormat format;
  format.complex_input = channels == 2;
  format.measurement_input = composite;
  std::unique_ptr<nn::BatchSource> source;
  nn::ValidationSet validation;
  if (o.synthesize) {
    for (const char* name : {"--val"})
      require(!given(name),
              fmt::format("{} belongs to --data; --synthesize makes its own validation set", name));
    const SystemChoice chosen = resolve_system_option(o.system, o.freqs, given("--freqs"));
    format.system = chosen.system;
    // With --system FILE the grid is --grid, else the file's /grid; the paper's grid is a named system's
    // default.
    if (!chosen.file.empty() && !given("--grid")) {
      require(
          chosen.grid.has_value(),
          fmt::format("{} has no /grid: give --grid 'x0:x1:nx,y0:y1:ny,z0:z1:nz' for this array", o.system));
      format.grid = *chosen.grid;
    } else {
      format.grid = parse_grid(o.grid);
    }
    validate_grid(format.grid, format.system, "--grid");
    if (!chosen.file.empty())
      std::printf("radar system from %s: %s; grid %s%s\n", o.system.c_str(), describe(format.system).c_str(),
                  describe(format.grid).c_str(), given("--grid") ? " (--grid)" : " (the file's /grid)");
    SceneConfig config;
    if (given("--config")) config = read_scene_config(o.config);
    if (given("--snr")) parse_snr_option(o.snr, config);
    if (given("--objects")) parse_objects_option(o.objects, config);
    if (given("--types")) parse_types_option(o.types, config);
    if (given("--phase")) {
      require(o.phase == "random" || o.phase == "constant",
              fmt::format("--phase: '{}' is not random or constant", o.phase));
      config.phase = o.phase == "random" ? PhaseModel::RandomPerVoxel : PhaseModel::ConstantPerObject;
    }
    if (given("--smooth")) config.smooth_depth = o.smooth;
    validate_scene_config(config, "options");
    require(o.epoch_size >= o.batch,
            fmt::format("--epoch-size ({}) must hold at least one batch of {}", o.epoch_size, o.batch));
    const std::uint64_t data_seed =
        o.data_seed >= 0 ? seed_value(o.data_seed, "--data-seed") : seed_value(o.seed, "--seed");
    const std::uint64_t val_seed =
        o.val_seed >= 0 ? seed_value(o.val_seed, "--val-seed") : data_seed + 1000000;
    require(
        val_seed != data_seed,
        "--val-seed must differ from the training scenes' seed (validation scenes must never be trained on)");
    nn::SynthesizedSourceSettings ss;
    ss.format = format;
    ss.config = config;
    ss.seed = data_seed;
    ss.batch = o.batch;
    ss.batches_per_epoch = int(o.epoch_size / o.batch);
    ss.device = physics;
    // Training on the GPU: the scenes, their adjoint and the normalisation stay on the device.
    const int count = o.val_count > 0 ? o.val_count : 64;
    if (denoiser) {
      // No physics: pairs are rasterised scenes plus noise, on the host (fast).
      nn::DenoiserSourceSettings ds;
      ds.grid = format.grid;
      ds.config = config;
      ds.seed = data_seed;
      ds.batch = o.batch;
      ds.batches_per_epoch = int(o.epoch_size / o.batch);
      ds.sigma_max = o.sigma_max;
      source = nn::make_denoiser_source(ds, format.system);
      validation = nn::make_denoiser_validation(ds, val_seed, count);
    } else {
      source =
          physics == DeviceKind::Cuda ? nn::make_gpu_synthesized_source(ss) : nn::make_synthesized_source(ss);
      std::printf("making the validation set: %d scenes of seed %llu\n", count, (unsigned long long)val_seed);
      std::fflush(stdout);
      validation = nn::make_synthesized_validation(format, config, val_seed, count, physics);
    }
  } else {
    require(!o.val.empty(), "--data needs --val FILE (a validation dataset, never trained on)");
    for (const char* name : {"--snr", "--config", "--objects", "--types", "--phase", "--smooth",
                             "--epoch-size", "--data-seed", "--val-seed"})
      require(!given(name),
              fmt::format("{} belongs to --synthesize; --data reads its samples from the file", name));
    require(o.data != o.val,
            "--val must be another file than --data (validation samples must not be trained on)");
    const nn::TrainingFileInfo info = nn::inspect_training_file(o.data);
    if (given("--system") || given("--freqs")) {
      const RadarSystem expected =
          resolve_system_option(o.system, given("--freqs") ? o.freqs : info.system.frequencies(),
                                given("--freqs"))
              .system;
      if (const auto d = describe_difference(info.system, expected))
        throw InputError(fmt::format("{}: the dataset's radar system differs from --system {} (K = {}): {}",
                                     o.data, o.system, expected.frequencies(), *d));
    }
    if (given("--grid"))
      if (const auto d = describe_difference(info.grid, parse_grid(o.grid)))
        throw InputError(fmt::format("{}: the dataset's imaging grid differs from --grid: {}", o.data, *d));
    format.system = info.system;
    format.grid = info.grid;
    nn::FileSourceSettings fs;
    fs.path = o.data;
    fs.format = format;
    fs.batch = o.batch;
    fs.shuffle_seed = seed_value(o.seed, "--seed");
    fs.device = physics;
    source = nn::make_file_source(fs);
    validation = nn::read_validation_file(o.val, format, o.val_count, physics);
  }

  nn::TrainerSettings s;
  s.architecture = architecture;
  s.role = denoiser ? nn::kDenoiserRole : nn::kReconstructionRole;
  s.options.width = denoiser && o.width == 0 ? nn::kDenoiserDefaultWidth : o.width;
  s.options.blocks = o.blocks;
  s.optimizer = opt;
  s.schedule = schedule;
  s.epochs = o.epochs;
  s.time_budget_s = budget;
  s.seed = seed_value(o.seed, "--seed");
  s.init_from = o.init;
  s.device = device;
  s.precision = precision;
  s.validation_batch = o.batch;
  s.output = o.output;
  s.checkpoint = checkpoint;
  s.log_csv = nn::sibling_path(o.output, ".log.csv");
  s.log_json = nn::sibling_path(o.output, ".log.json");
  s.resume = o.resume;
  s.force = o.force;
  s.stop_after_steps = o.stop_after_steps;
  s.cancel = &stop_requested();
  s.command = command_line();

  std::unique_ptr<ProgressBar> bar;
  std::int64_t bar_epoch = -1;
  const int epochs = o.epochs;
  s.on_step = [&](const nn::StepProgress& p) {
    if (p.epoch != bar_epoch) {
      bar = std::make_unique<ProgressBar>(
          epochs > 0 ? fmt::format("epoch {}/{}", p.epoch + 1, epochs) : fmt::format("epoch {}", p.epoch + 1),
          std::size_t(p.batches), "batches");
      bar_epoch = p.epoch;
    }
    bar->update(std::size_t(p.index),
                fmt::format("loss {:.5g}, {:.1f} samples/s", p.mean_loss, p.samples_per_s));
  };
  s.on_epoch = [&](const nn::EpochRecord& r) {
    if (bar) bar->finish();
    std::printf(
        "epoch %d%s: loss %.6g  lr %.3g  val loss %.6g  PSNR %.2f dB  SSIM 3D %.4f  SSIM 2D %.4f  "
        "%.2f samples/s  %.0f s\n",
        r.epoch, r.partial ? " (partial)" : "", r.train_loss, r.learning_rate, r.val_loss, r.val_psnr_db,
        r.val_ssim_3d, r.val_ssim_2d, r.samples_per_s, r.epoch_seconds);
    std::fflush(stdout);
  };
  s.on_message = [](const std::string& m) {
    std::printf("%s\n", m.c_str());
    std::fflush(stdout);
  };

  std::printf("training %s on %s; validation: %s\n", o.arch.c_str(), source->description().c_str(),
              validation.description.c_str());
  std::fflush(stdout);
  nn::TrainingResult r;
  {
    StopSignals signals;
    r = nn::train(s, *source, validation);
  }
  if (bar) bar->finish();
  switch (r.outcome) {
    case nn::TrainingOutcome::Completed:
    case nn::TrainingOutcome::TimeBudget:
      std::printf("trained %lld steps (%lld samples) in %.0f s on %s (%s): %s\n", (long long)r.steps,
                  (long long)r.samples, r.seconds, r.device.c_str(),
                  r.outcome == nn::TrainingOutcome::Completed ? "epochs done" : "time budget",
                  o.output.c_str());
      if (r.final)
        std::printf("final validation: loss %.6g  PSNR %.2f dB  SSIM 3D %.4f  SSIM 2D %.4f\n",
                    r.final->val_loss, r.final->val_psnr_db, r.final->val_ssim_3d, r.final->val_ssim_2d);
      return;
    case nn::TrainingOutcome::Interrupted:
    case nn::TrainingOutcome::Stopped:
      std::fprintf(
          stderr,
          "nfmimo: training %s after %lld steps; %s holds the state: rerun with --resume to continue\n",
          r.outcome == nn::TrainingOutcome::Interrupted ? "interrupted" : "stopped (--stop-after-steps)",
          (long long)r.steps, s.checkpoint.c_str());
      if (r.outcome == nn::TrainingOutcome::Interrupted) throw CommandExit{130};
      return;
  }
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  CLI::App* c =
      app.add_subcommand("train", "Train a network of the paper for a radar system (docs/training.md)");
  c->add_option("--arch", o->arch,
                "unet3d | unet2d | resnet | cv-unet3d | deepdi | deep2s-plus | denoiser (the pnp denoiser)")
      ->capture_default_str();
  c->add_option("--denoiser-net", o->denoiser_net,
                "--arch denoiser: unet3d (sigmoid output) or resnet (residual: input + correction)")
      ->capture_default_str();
  c->add_option("--sigma-max", o->sigma_max,
                "--arch denoiser: noise sigma per sample uniform in [0, this] (magnitudes of max 1)")
      ->capture_default_str();
  c->add_option("--out,-o", o->output, "Weights file to write (HDF5)")->required();
  c->add_flag("--synthesize", o->synthesize, "Make training scenes on the fly with the synthesizer");
  c->add_option("--data", o->data, "Training dataset (measurement file with /targets)");
  c->add_option("--val", o->val, "Validation dataset (with --data)");
  c->add_option("--val-count", o->val_count,
                "Validation samples (--synthesize: default 64; --data: the first N rows, 0 = all)");
  c->add_option("--system", o->system,
                "Radar system: a name (paper) or an nfmimo file such as `nfmimo import`'s output, whose "
                "/system and /grid are used (--synthesize; checked against --data)")
      ->capture_default_str();
  c->add_option("--freqs,-K", o->freqs, "Frequencies of --system")->capture_default_str();
  c->add_option("--grid", o->grid, "Imaging grid 'x0:x1:nx,y0:y1:ny,z0:z1:nz' (m) or 'paper'")
      ->capture_default_str();
  c->add_option("--config", o->config, "Scene configuration (JSON, docs/synthesizer.md)");
  c->add_option("--snr", o->snr, "SNR in dB: DB, MIN:MAX or none (default 30)");
  c->add_option("--objects", o->objects, "Objects per scene: N or MIN:MAX (default 1:5)");
  c->add_option("--types", o->types, "Object types, comma-separated");
  c->add_option("--phase", o->phase, "random | constant");
  c->add_option("--smooth", o->smooth, "Smooth magnitude variation depth in [0, 1]");
  c->add_option("--epoch-size", o->epoch_size, "Samples per epoch with --synthesize (whole batches)")
      ->capture_default_str();
  c->add_option("--data-seed", o->data_seed, "Seed of the training scenes (--synthesize; default --seed)");
  c->add_option("--val-seed", o->val_seed, "Seed of the validation scenes (default: data seed + 1000000)");
  c->add_option("--epochs", o->epochs, "Stop after N epochs");
  c->add_option("--time-budget", o->time_budget, "Stop after this much training time (90s, 8m, 1h30m)");
  c->add_option("--batch", o->batch, "Samples per step")->capture_default_str();
  c->add_option("--lr", o->lr, "Learning rate (Adam)")->capture_default_str();
  c->add_option("--loss", o->loss, "mse | l1 | mse+ssim")->capture_default_str();
  c->add_option("--ssim-weight", o->ssim_weight, "Weight of (1 - SSIM) in mse+ssim")->capture_default_str();
  c->add_option("--weight-decay", o->weight_decay, "Decoupled weight decay (AdamW) of conv weights")
      ->capture_default_str();
  c->add_option("--clip", o->clip, "Clip the global gradient norm to this (0: off)")->capture_default_str();
  c->add_option("--schedule", o->schedule, "constant | cosine | plateau")->capture_default_str();
  c->add_option("--min-lr", o->min_lr, "Final rate (cosine) or floor (plateau, default 1e-6)");
  c->add_option("--factor", o->factor, "Plateau: rate reduction factor")->capture_default_str();
  c->add_option("--patience", o->patience, "Plateau: epochs without improvement before a reduction")
      ->capture_default_str();
  c->add_option("--width", o->width,
                "First-level channels (U-Nets, default 32; denoiser 16) or feature channels (ResNet, 64)");
  c->add_option("--blocks", o->blocks, "ResNet blocks")->capture_default_str();
  c->add_option("--init", o->init,
                "Start from the weights of this model (fine-tuning) instead of random weights");
  c->add_option("--seed", o->seed, "Seed of the initial weights, file shuffling and (default) scenes")
      ->capture_default_str();
  c->add_option("--device,-d", o->device, "auto | cpu | cuda")->capture_default_str();
  c->add_option("--precision", o->precision, "fp32 | tf32 | bf16 | fp16 (GPU; the CPU trains in fp32)")
      ->capture_default_str();
  c->add_option("--checkpoint", o->checkpoint, "Checkpoint file (default OUT.checkpoint.h5)");
  c->add_flag("--resume", o->resume, "Continue the run from its checkpoint (starts it if there is none)");
  c->add_flag("--force,-f", o->force, "Start over: replace the checkpoint, the output and the logs");
  c->add_option("--stop-after-steps", o->stop_after_steps,
                "Stop as if interrupted after N steps of this session (leaves a resumable checkpoint)");
  c->callback([o, c] { run_train(*o, *c); });
}

}  // namespace nfmimo
