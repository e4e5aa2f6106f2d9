// The files of a training run besides the model: its identity (what must match to resume it), the checkpoint
// (weights, optimizer state, where the run stands) and the CSV / JSON logs. Internal to models/training/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/training/trainer.hpp"
#include "models/weights.hpp"

namespace nfmimo::nn::run_files {

using json = nlohmann::json;

// JSON has no infinity or NaN: written as strings ("inf", "nan").
json number(double v);

// What must be the same for a checkpoint to be continued: everything that decides the weights.
json run_identity(const TrainerSettings& s, const BatchSource& source, const ValidationSet& validation);
// The first difference between two JSON values, as "key: a vs b".
std::optional<std::string> first_difference(const json& a, const json& b, const std::string& path = "");

// Where a run stands: what a checkpoint holds besides the parameters and the optimizer moments.
struct RunState {
  std::int64_t epoch = 0;  // 0-based epoch in progress
  int index = 0;           // next batch of that epoch
  std::int64_t steps = 0, samples = 0;
  double seconds = 0;  // training time of all sessions
  double epoch_loss_sum = 0, epoch_norm_sum = 0, epoch_seconds = 0, epoch_step_seconds = 0;
  std::int64_t epoch_steps = 0;
  ScheduleState schedule;
  std::vector<EpochRecord> records;  // complete epochs
  std::optional<EpochRecord> last_validation;
};

void write_checkpoint(const std::string& path, const Model& model, const OptimizerState& optimizer,
                      const RunState& run, const json& identity);

struct LoadedCheckpoint {
  Model model;
  OptimizerState optimizer;
  RunState run;
  json identity;
};
LoadedCheckpoint read_checkpoint(const std::string& path);

void write_logs(const TrainerSettings& s, const std::vector<EpochRecord>& records, const json& identity,
                const std::string& device);

bool exists(const std::string& path);

}  // namespace nfmimo::nn::run_files
