#include "models/training/trainer.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <cmath>
#include <memory>
#include <optional>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/atomic_file.hpp"
#include "data/hdf5.hpp"
#include "kernels/device_buffer.hpp"
#include "models/learned/composite.hpp"
#include "models/training/losses.hpp"
#include "models/training/run_files.hpp"
#include "models/metrics.hpp"
#include "models/learned/pipeline.hpp"
#include "models/transfer.hpp"
#include "models/weights.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string sibling_path(const std::string& output, const std::string& suffix) {
  const std::filesystem::path p(output);
  const std::string stem = p.extension() == ".h5" ? p.stem().string() : p.filename().string();
  return (p.parent_path() / (stem + suffix)).string();
}

namespace {

using namespace run_files;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::unique_ptr<TrainingBackend> make_backend(const TrainerSettings& s, const Network& net,
                                              const SampleFormat& format, Parameters initial) {
  const bool composite = is_composite_architecture(s.architecture);
  if (resolve_device(s.device) == DeviceKind::Cuda) {
    require(!composite,
            fmt::format("the GPU training backend does not train {} yet (its dense layer has no GPU "
                        "path): use --device cpu",
                        s.architecture));
    return make_gpu_training_backend(net, initial, s.precision);
  }
  require(s.precision == Precision::Fp32,
          fmt::format("--precision {} needs the GPU training backend; the CPU trains in fp32",
                      to_string(s.precision)));
  if (composite)
    return make_cpu_composite_training_backend(net, int(format.system.samples_per_frame()),
                                               std::move(initial));
  return make_cpu_training_backend(net, initial);
}

}  // namespace

EpochRecord validate(TrainingBackend& backend, const ValidationSet& v, const OptimizerSettings& o,
                     int batch) {
  require(v.count >= 1, "validation: the set is empty");
  const Network& net = backend.network();
  const Shape out = net.output_shape(1);
  const VolumeShape shape{out.x, out.y, out.z};
  const std::size_t V = shape.voxels(), in_size = backend.input_size();
  require(v.target.size() == V * std::size_t(v.count) && v.input.size() == in_size * std::size_t(v.count),
          "validation: the set does not match the network's input and output sizes");
  std::vector<float> prediction(V * std::size_t(v.count));
  double loss = 0;
  for (int first = 0; first < v.count; first += batch) {
    const int n = std::min(batch, v.count - first);
    float* p = prediction.data() + std::size_t(first) * V;
    backend.predict(v.input.data() + std::size_t(first) * in_size, p, n);
    loss += n * loss_and_gradient({o.loss, o.ssim_weight}, p, v.target.data() + std::size_t(first) * V, n,
                                  shape, nullptr);
  }
  std::vector<ImageQuality> q(std::size_t(v.count));
#pragma omp parallel for schedule(dynamic)
  for (int i = 0; i < v.count; ++i)
    q[std::size_t(i)] = image_quality(std::span<const float>(prediction.data() + std::size_t(i) * V, V),
                                      std::span<const float>(v.target.data() + std::size_t(i) * V, V), shape);
  EpochRecord r;
  r.val_loss = loss / v.count;
  for (const auto& x : q) {
    r.val_psnr_db += x.psnr_db / v.count;
    r.val_ssim_3d += x.ssim_3d / v.count;
    r.val_ssim_2d += x.ssim_2d / v.count;
  }
  return r;
}

namespace {

// One training session in three stages: setup (checks, the model and its starting parameters, the backend),
// the step loop, and finish (checkpoint, logs, the model file).
class TrainingRun {
 public:
  TrainingRun(const TrainerSettings& settings, BatchSource& source, const ValidationSet& validation)
      : s(settings), o(settings.optimizer), source(source), validation(validation) {}

  TrainingResult train() {
    setup();
    step_loop();
    return finish();
  }

 private:
  const TrainerSettings& s;
  const OptimizerSettings& o;
  BatchSource& source;
  const ValidationSet& validation;
  const Clock::time_point session_start = Clock::now();
  bool have_checkpoint = false;
  Model model;
  Network net;
  json identity;
  RunState run;
  std::unique_ptr<TrainingBackend> backend;
  std::optional<LearningRateSchedule> schedule;
  TrainingResult result;
  std::optional<EpochRecord> partial_record;
  double lr = 0;
  Clock::time_point epoch_start;

  // ---- setup ----------------------------------------------------------------------------------------------
  void setup() {
    check_settings();
    const SampleFormat& format = source.format();
    model.architecture = s.architecture;
    model.role = s.role;
    model.options = s.options;
    model.system = format.system;
    model.grid = format.grid;
    net = model.network();
    const bool composite = model.composite();
    require(composite == format.measurement_input,
            fmt::format("the {} model takes {} but the data holds {}", s.architecture,
                        composite ? "scaled measurements" : "images",
                        format.measurement_input ? "measurements" : "images"));
    require(composite || net.input_shape(1).c == format.channels(),
            fmt::format("the {} network takes {} input channels but the data has {}", s.architecture,
                        net.input_shape(1).c, format.channels()));
    identity = run_identity(s, source, validation);

    OptimizerState optimizer;
    Parameters initial = s.resume && have_checkpoint ? resumed_parameters(optimizer)
                         : !s.init_from.empty()      ? parameters_from_init()
                                                     : fresh_parameters();
    // A composite's dense layer is large (573 MB for K=15): the backend takes the only copy; a resumed run
    // hands it the checkpoint's parameters again through load_state (a transient second copy).
    Parameters resume_parameters;
    if (optimizer.step > 0) resume_parameters = initial;
    backend = make_backend(s, net, format, std::move(initial));
    if (optimizer.step > 0) backend->load_state(resume_parameters, optimizer);
    resume_parameters.clear();
    // Every batch of a source is full (a file's remainder is dropped); validation has a tail. Planned now,
    // the GPU backend builds no plan (cuDNN searches, a workspace, a host synchronisation) inside the loop.
    backend->plan_sizes({source.batch_size()}, covering_batch_sizes(validation.count, s.validation_batch));
    result.device = backend->description();
    schedule.emplace(o.learning_rate, s.schedule, run.schedule);
  }

  void check_settings() {
    require(s.epochs >= 0, fmt::format("--epochs must not be negative (got {})", s.epochs));
    require(s.time_budget_s >= 0, "the time budget must not be negative");
    require(s.epochs > 0 || s.time_budget_s > 0, "give --epochs N, --time-budget T, or both");
    require(!(s.resume && s.force), "--resume and --force exclude each other");
    require(!s.output.empty() && !s.checkpoint.empty(), "training needs an output and a checkpoint path");
    require(s.validation_batch >= 1, "the validation batch must be positive");
    require(s.output != s.checkpoint, "the checkpoint must not be the output file");
    require(o.learning_rate > 0 && std::isfinite(o.learning_rate),
            fmt::format("--lr must be positive (got {})", o.learning_rate));
    require(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1 && o.epsilon > 0,
            "Adam's betas must be in [0, 1) and epsilon positive");
    require(o.weight_decay >= 0 && o.clip_norm >= 0 && o.ssim_weight >= 0,
            "weight decay, clipping norm and SSIM weight must not be negative");

    // Refuse before any work what would fail or destroy something at the end.
    have_checkpoint = exists(s.checkpoint);
    if (have_checkpoint && !s.resume && !s.force)
      throw InputError(
          fmt::format("{} exists (the checkpoint of an earlier run): continue it with --resume, or start "
                      "over with --force",
                      s.checkpoint));
    if (exists(s.output) && !s.resume && !s.force)
      throw InputError(
          fmt::format("{} exists; use --force to replace it (or --resume to continue its run)", s.output));
    for (const std::string* p : {&s.output, &s.checkpoint, &s.log_csv, &s.log_json})
      if (!p->empty()) AtomicOutput probe(*p, true);  // the folder exists and is writable
  }

  Parameters resumed_parameters(OptimizerState& optimizer) {
    const SampleFormat& format = source.format();
    LoadedCheckpoint c = read_checkpoint(s.checkpoint);
    if (auto d = first_difference(c.identity, identity))
      throw InputError(
          fmt::format("{}: the checkpoint's run differs from this one ({}, checkpoint vs now); resume "
                      "with the same options, or start over with --force",
                      s.checkpoint, *d));
    if (auto d = describe_difference(c.model.system, format.system))
      throw InputError(fmt::format("{}: the checkpoint's radar system differs: {}", s.checkpoint, *d));
    if (auto d = describe_difference(c.model.grid, format.grid))
      throw InputError(fmt::format("{}: the checkpoint's imaging grid differs: {}", s.checkpoint, *d));
    optimizer = std::move(c.optimizer);
    run = std::move(c.run);
    if (s.on_message)
      s.on_message(fmt::format("resuming {} at epoch {}, batch {} ({} steps done)", s.checkpoint,
                               run.epoch + 1, run.index, run.steps));
    return std::move(c.model.parameters);
  }

  Parameters parameters_from_init() {
    const SampleFormat& format = source.format();
    const bool composite = model.composite();
    Model start = read_model(s.init_from);
    // A composite (deepdi, deep2s-plus) may start from a cv-unet3d model: its U-Net is the composite's graph,
    // and the dense layer gets the architecture's own start (A^H or random). Deep2S+ then begins as exactly
    // that cv-deep2s model, which is the paper's point of initialising from the physics.
    const bool unet_into_composite = composite && start.architecture == "cv-unet3d";
    // Another U-Net variant of the same width (unet3d -> unet2d, cv-unet3d): a transfer start
    // (models/transfer.hpp), the filters adapted where the shapes differ.
    const bool transfer = can_transfer(start.architecture, s.architecture);
    if ((start.architecture != s.architecture && !unet_into_composite && !transfer) ||
        start.options.width != s.options.width || start.options.blocks != s.options.blocks)
      throw InputError(
          fmt::format("{}: --init holds a {} network (width {}, blocks {}); this run trains {} (width {}, "
                      "blocks {})",
                      s.init_from, start.architecture, start.options.width, start.options.blocks,
                      s.architecture, s.options.width, s.options.blocks));
    if (start.role != s.role)
      throw InputError(
          fmt::format("{}: --init holds a {} model; this run trains a {}", s.init_from, start.role, s.role));
    // The network sees an image on the grid, so the grid must match; the radar system may differ: the weights
    // of a model trained for another frequency set or SNR are a better start than random ones (transfer).
    if (auto d = describe_difference(start.grid, format.grid))
      throw InputError(fmt::format(
          "{}: --init holds a model for another imaging grid than the training data's: {}", s.init_from, *d));
    // A dense first stage maps this system's measurements: its weights cannot transfer to another system.
    if (auto d = describe_difference(start.system, format.system); d && start.composite())
      throw InputError(
          fmt::format("{}: --init holds a {} model whose dense layer belongs to another radar system "
                      "({}); start from a cv-unet3d model instead (its U-Net transfers)",
                      s.init_from, start.architecture, *d));
    TransferReport transferred;
    Parameters initial;
    if (transfer) {
      initial = transfer_parameters(start, net, s.seed, &transferred);
    } else {
      initial = std::move(start.parameters);
    }
    if (unet_into_composite)
      add_initial_dense_parameters(s.architecture, format.system, format.grid, s.seed, initial);
    if (s.on_message) {
      s.on_message(fmt::format("starting from the weights of {}{}", s.init_from,
                               unet_into_composite ? " (its U-Net; the dense layer starts as for a new run)"
                               : transfer ? fmt::format(" (a {} model, transferred: {})", start.architecture,
                                                        transferred.summary())
                                          : std::string()));
      if (auto d = describe_difference(start.system, format.system))
        s.on_message(fmt::format("  (transfer: that model was trained for another radar system: {})", *d));
    }
    return initial;
  }

  Parameters fresh_parameters() {
    const SampleFormat& format = source.format();
    Parameters initial = initial_parameters(net, s.seed);
    if (model.composite())
      add_initial_dense_parameters(s.architecture, format.system, format.grid, s.seed, initial);
    return initial;
  }

  // ---- step loop ------------------------------------------------------------------------------------------
  void step_loop() {
    const int batches = source.batches_per_epoch();
    const std::int64_t planned_steps = std::int64_t(s.epochs) * batches;
    // Device-resident backends take their batches in device memory.
    std::unique_ptr<DeviceStream> stream;
    std::unique_ptr<DeviceBuffer<float>> d_input, d_target;
    const std::size_t in_size = backend->input_size() * std::size_t(source.batch_size()),
                      out_size = net.output_shape(source.batch_size()).elements();
    const bool on_device = backend->device_resident();
    if (on_device) {
      stream = std::make_unique<DeviceStream>();
      d_input = std::make_unique<DeviceBuffer<float>>(in_size);
      d_target = std::make_unique<DeviceBuffer<float>>(out_size);
    }
    // The next batches are made on a host thread while this one trains.
    std::unique_ptr<Prefetcher> prefetcher;
    if (!(on_device && source.device_resident()))
      prefetcher = std::make_unique<Prefetcher>(source, run.epoch, run.index);

    double last_epoch_seconds = 0, last_val_seconds = 0;
    lr = schedule->rate(0);
    std::int64_t session_steps = 0;
    epoch_start = Clock::now();
    for (;;) {
      if (s.epochs > 0 && run.epoch >= s.epochs) {
        result.outcome = TrainingOutcome::Completed;
        break;
      }
      const double session = seconds_since(session_start);
      if (s.time_budget_s > 0) {
        // An epoch that would not fit is not started; inside an epoch the run stops when the budget, less the
        // final validation, is spent. A session always makes at least one step.
        const bool at_epoch_start = run.index == 0 && run.epoch_steps == 0;
        if (session_steps > 0 && ((at_epoch_start && session + last_epoch_seconds > s.time_budget_s) ||
                                  session + last_val_seconds >= s.time_budget_s)) {
          result.outcome = TrainingOutcome::TimeBudget;
          break;
        }
      }
      if (s.cancel && s.cancel->load()) {
        result.outcome = TrainingOutcome::Interrupted;
        break;
      }
      if (s.stop_after_steps >= 0 && session_steps >= s.stop_after_steps) {
        result.outcome = TrainingOutcome::Stopped;
        break;
      }
      if (run.index == 0 && run.epoch_steps == 0) epoch_start = Clock::now();

      const double progress = s.epochs > 0 ? double(run.steps) / double(planned_steps)
                                           : session / s.time_budget_s;  // cosine over the session's clock
      OptimizerSettings step_settings = o;
      step_settings.learning_rate = lr = schedule->rate(progress);
      const auto queued_at = Clock::now();
      int count = source.batch_size();
      if (on_device) {
        if (source.device_resident()) {
          count =
              source.produce_device(run.epoch, run.index, d_input->data(), d_target->data(), stream->get());
        } else {
          const HostBatch b = prefetcher->next();
          count = b.count;
          d_input->upload(b.input.data(), b.input.size(), stream->get());
          d_target->upload(b.target.data(), b.target.size(), stream->get());
        }
        backend->queue_step(d_input->data(), d_target->data(), count, step_settings, stream->get());
      } else {
        const HostBatch b = prefetcher->next();
        count = b.count;
        backend->queue_step(b.input.data(), b.target.data(), count, step_settings);
      }
      // The data position advances when the step is queued; its loss is accounted when it is collected, one
      // step later, so that the device never idles while the host reads a loss (queue_step, backend.hpp).
      in_flight.push_back({run.epoch, run.index, run.steps, count, queued_at});
      ++session_steps;
      run.steps += 1;
      run.samples += count;
      run.index += 1;
      if (backend->steps_in_flight() >= TrainingBackend::kStepsInFlight) collect_oldest(batches);
      if (run.index == batches) {
        while (!in_flight.empty()) collect_oldest(batches);
        last_val_seconds = close_epoch(false);
        last_epoch_seconds = run.records.back().epoch_seconds;
        save_checkpoint();
        log_records();
      }
    }
    while (!in_flight.empty()) collect_oldest(batches);
  }

  // A queued step: where it was in the data, and when it was queued.
  struct QueuedStep {
    std::int64_t epoch, index, steps_before;
    int count;
    Clock::time_point queued_at;
  };
  std::deque<QueuedStep> in_flight;
  Clock::time_point last_collected{};

  // Accounts the oldest queued step's result: the epoch's loss and gradient-norm sums, its time (from when it
  // was queued or the previous step was collected, whichever is later, so the sum is the loop's wall time)
  // and progress; refuses a non-finite step, naming that step.
  void collect_oldest(int batches) {
    const QueuedStep q = in_flight.front();
    in_flight.pop_front();
    const StepResult r = backend->collect_step();
    const auto now = Clock::now();
    const double step_seconds =
        std::chrono::duration<double>(now - std::max(q.queued_at, last_collected)).count();
    last_collected = now;
    if (!r.finite) refuse_non_finite(r, q);
    run.epoch_steps += 1;
    run.epoch_loss_sum += r.loss;
    run.epoch_norm_sum += r.gradient_norm;
    run.epoch_step_seconds += step_seconds;
    if (s.on_step)
      s.on_step({q.epoch, int(q.index + 1), batches, run.epoch_loss_sum / run.epoch_steps,
                 double(run.epoch_steps) * source.batch_size() / run.epoch_step_seconds});
  }

  [[noreturn]] void refuse_non_finite(const StepResult& r, const QueuedStep& q) const {
    const bool saved = !run.records.empty() || (s.resume && have_checkpoint);
    const std::string kept = saved ? fmt::format("the last good checkpoint {} is kept", s.checkpoint)
                                   : "no checkpoint of this run had been written yet";
    throw Error(
        fmt::format("training stopped: the loss or the gradients are not finite at epoch {}, batch {} "
                    "(step {}: loss {}, "
                    "gradient norm {}); {}. Lower --lr, set --clip, or check the data",
                    q.epoch + 1, q.index + 1, q.steps_before + 1, r.loss, r.gradient_norm, kept));
  }

  // Validation closes an epoch (or the partial epoch the run stops in); returns the validation's seconds.
  double close_epoch(bool partial) {
    const auto v0 = Clock::now();
    EpochRecord r = validate(*backend, validation, o, s.validation_batch);
    const double val_seconds = seconds_since(v0);
    const double epoch_seconds = seconds_since(epoch_start);
    run.epoch_seconds += epoch_seconds;
    run.seconds += epoch_seconds;
    r.epoch = int(run.epoch + 1);
    r.partial = partial;
    r.steps = run.steps;
    r.samples = run.samples;
    r.train_loss = run.epoch_steps ? run.epoch_loss_sum / run.epoch_steps : NAN;
    r.gradient_norm = run.epoch_steps ? run.epoch_norm_sum / run.epoch_steps : NAN;
    r.learning_rate = lr;
    r.samples_per_s = run.epoch_step_seconds > 0
                          ? double(run.epoch_steps) * source.batch_size() / run.epoch_step_seconds
                          : 0;
    r.epoch_seconds = run.epoch_seconds;
    r.elapsed_seconds = run.seconds;
    run.last_validation = r;
    if (!partial) {
      run.records.push_back(r);
      schedule->end_epoch(r.val_loss);
      run.epoch += 1;
      run.index = 0;
      run.epoch_loss_sum = run.epoch_norm_sum = run.epoch_seconds = run.epoch_step_seconds = 0;
      run.epoch_steps = 0;
    } else {
      // The partial epoch's time is in the checkpoint's counters already; the record is for the logs.
      partial_record = r;
    }
    if (s.on_epoch) s.on_epoch(r);
    return val_seconds;
  }

  void save_checkpoint() {
    run.schedule = schedule->state();
    model.parameters = backend->parameters();
    write_checkpoint(s.checkpoint, model, backend->optimizer_state(), run, identity);
  }

  void log_records() {
    std::vector<EpochRecord> all = run.records;
    if (partial_record) all.push_back(*partial_record);
    write_logs(s, all, identity, result.device);
  }

  // ---- finish ---------------------------------------------------------------------------------------------
  TrainingResult finish() {
    const bool mid_epoch = run.index > 0;
    if (mid_epoch) {
      // This session's share of the epoch in progress goes into the counters, so that resuming continues
      // them.
      const double seconds = seconds_since(epoch_start);
      if (result.outcome == TrainingOutcome::TimeBudget) {
        close_epoch(true);  // validation for the final record; adds the time
      } else {
        run.epoch_seconds += seconds;
        run.seconds += seconds;
      }
    }
    if (mid_epoch || !exists(s.checkpoint)) save_checkpoint();
    log_records();

    result.records = run.records;
    if (partial_record) result.records.push_back(*partial_record);
    result.final = run.last_validation;
    result.steps = run.steps;
    result.samples = run.samples;
    result.seconds = run.seconds;
    if (result.outcome == TrainingOutcome::Completed || result.outcome == TrainingOutcome::TimeBudget)
      write_trained_model();
    return result;
  }

  void write_trained_model() {
    if (!result.final) result.final = validate(*backend, validation, o, s.validation_batch);
    const EpochRecord& f = *result.final;
    json record = {{"command", s.command},
                   {"device", result.device},
                   {"precision", to_string(s.precision)},
                   {"run", identity},
                   {"epochs", run.records.size() + (partial_record ? 1 : 0)},
                   {"complete_epochs", run.records.size()},
                   {"steps", run.steps},
                   {"samples", run.samples},
                   {"seconds", run.seconds},
                   {"stopped_by", result.outcome == TrainingOutcome::Completed ? "epochs" : "time budget"},
                   {"final_validation",
                    {{"loss", number(f.val_loss)},
                     {"psnr_db", number(f.val_psnr_db)},
                     {"ssim_3d", number(f.val_ssim_3d)},
                     {"ssim_2d", number(f.val_ssim_2d)},
                     {"samples", validation.count}}}};
    result.training_record = record.dump();
    model.parameters = backend->parameters();
    model.training = result.training_record;
    write_model(s.output, model, true);
  }
};

}  // namespace

TrainingResult train(const TrainerSettings& s, BatchSource& source, const ValidationSet& validation) {
  return TrainingRun(s, source, validation).train();
}

}  // namespace nfmimo::nn
