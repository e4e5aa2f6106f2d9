// The trainer behind `nfmimo train`: epochs of optimisation steps on a TrainingBackend, validation after each
// epoch, learning-rate schedules, atomic checkpoints, resume, logs, and the weights file with its training
// record. See docs/training.md.
//
// Reproducibility: the data of step s is fixed by the source (batch b of epoch e), the initial weights by the
// seed, and every backend step is deterministic on the CPU, so the same settings give the same weights bit
// for bit, and a run interrupted anywhere and resumed from its checkpoint ends with the same weights as an
// uninterrupted one.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kernels/device.hpp"
#include "models/training/optimizer.hpp"
#include "models/training/backend.hpp"
#include "models/training/data.hpp"
#include "models/weights.hpp"

namespace nfmimo::nn {

struct EpochRecord {
  int epoch = 0;         // 1-based
  bool partial = false;  // the run stopped inside this epoch (time budget); it resumes where it stopped
  std::int64_t steps = 0, samples = 0;  // totals at the end of the record
  double train_loss = 0;                // mean over the epoch's steps
  double learning_rate = 0;             // of the epoch's last step
  double gradient_norm = 0;             // mean over the epoch's steps (before clipping)
  double val_loss = 0, val_psnr_db = 0, val_ssim_3d = 0, val_ssim_2d = 0;  // validation means
  double samples_per_s = 0;    // training samples per second of the epoch's steps (data waits included)
  double epoch_seconds = 0;    // steps and validation
  double elapsed_seconds = 0;  // the run's training time so far (all sessions)
};

struct StepProgress {
  std::int64_t epoch = 0;  // 0-based
  int index = 0, batches = 0;
  double mean_loss = 0;  // over the epoch's steps so far
  double samples_per_s = 0;
};

struct TrainerSettings {
  std::string architecture = "unet3d";
  std::string role = kReconstructionRole;  // kDenoiserRole: a pnp denoiser (recorded in the weights file)
  ArchitectureOptions options;
  OptimizerSettings optimizer;
  ScheduleSettings schedule;
  int epochs = 0;            // stop after this many epochs (0: no limit; then a time budget is needed)
  double time_budget_s = 0;  // > 0: stop this session's training after about this many seconds
  std::uint64_t seed = 1;    // initial weights
  std::string init_from;     // a weights file to start from instead of random weights (fine-tuning); its
                             // architecture, width, blocks, system and grid must match the run's
  DeviceKind device = DeviceKind::Cpu;
  Precision precision = Precision::Fp32;
  int validation_batch = 8;

  std::string output;      // the weights file, written when the run completes (epochs or time budget)
  std::string checkpoint;  // written atomically after every epoch and when the run stops
  std::string log_csv, log_json;
  bool resume = false;                 // continue from the checkpoint (starts the run if there is none)
  bool force = false;                  // start over: replace an existing checkpoint, output and logs
  std::int64_t stop_after_steps = -1;  // >= 0: stop as if interrupted after this many steps of this session
  const std::atomic<bool>* cancel = nullptr;  // set (a signal handler) to stop after the current step
  std::string command;                        // the command line, for the training record

  std::function<void(const StepProgress&)> on_step;
  std::function<void(const EpochRecord&)> on_epoch;
  std::function<void(const std::string&)>
      on_message;  // one-line notes (resumed from ..., checkpoint written)
};

enum class TrainingOutcome {
  Completed,    // the epoch limit was reached: output written
  TimeBudget,   // the time budget ran out: output written
  Interrupted,  // cancel was set: checkpoint written, no output
  Stopped       // stop_after_steps: checkpoint written, no output
};

struct TrainingResult {
  TrainingOutcome outcome = TrainingOutcome::Completed;
  std::vector<EpochRecord> records;     // every epoch of the run, all sessions (and a final partial one)
  std::optional<EpochRecord> final;     // the last validated state
  std::int64_t steps = 0, samples = 0;  // totals of the run
  double seconds = 0;                   // training time of the run (all sessions)
  std::string device;                   // the backend's description
  std::string training_record;          // the JSON stored in the weights file
};

// "model.h5" -> "model.checkpoint.h5"; the log files likewise ".log.csv", ".log.json".
std::string sibling_path(const std::string& output, const std::string& suffix);

// Validation: the backend's inference-mode outputs on the set, the loss and the image-quality means of
// docs/metrics.md (each volume normalised to its maximum).
EpochRecord validate(TrainingBackend& backend, const ValidationSet& validation, const OptimizerSettings& loss,
                     int batch);

TrainingResult train(const TrainerSettings& settings, BatchSource& source, const ValidationSet& validation);

}  // namespace nfmimo::nn
