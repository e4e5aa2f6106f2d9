// The optimiser on the host: Adam with decoupled weight decay (AdamW), global-norm gradient clipping and
// learning-rate schedules. The CPU training backend uses it for every step; the trainer uses the schedules
// with any backend. Settings: OptimizerSettings (models/training/backend.hpp).
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "models/training/backend.hpp"

namespace nfmimo::nn {

using Gradients = std::map<std::string, std::vector<float>>;

// Global 2-norm over every gradient tensor, in double and in a fixed order (reproducible bits).
double global_norm(const Gradients& gradients);

// Names of the parameters that decoupled weight decay applies to: the weights of Conv, ConvTranspose and
// Dense ops (not biases, not batch-norm scales and shifts: the usual AdamW practice).
std::set<std::string> decayed_parameters(const Network& network);

// One Adam step (Kingma & Ba 2015, Algorithm 1, with bias correction; PyTorch's AdamW form):
//   t += 1; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
//   p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps);   p -= lr wd p (decayed parameters only,
//   from the value before the Adam update, as AdamW does).
// `gradient_scale` multiplies every gradient first (clipping). Updates `parameters` (trainable entries only)
// and `state` (moments created on first use). Element-wise, so reproducible under any thread count.
void adam_step(Parameters& parameters, const Gradients& gradients, double gradient_scale,
               const OptimizerSettings& settings, const std::set<std::string>& decayed,
               OptimizerState& state);

// Refuses (InputError, "training state: ...") a saved optimizer state whose Adam moments for a trainable
// parameter have another size than the parameter; a missing moment is allowed (created on first use).
void check_optimizer_moments(const Parameters& parameters, const OptimizerState& state);

// The scale that clipping applies: clip / norm when clip_norm > 0 and norm > clip, else 1.
double clip_scale(double norm, double clip_norm);

// Learning-rate schedules.
//   constant  the base rate throughout
//   cosine    min + (base - min) (1 + cos(pi p)) / 2 at progress p in [0, 1] of the run (per step)
//   plateau   PyTorch's ReduceLROnPlateau (mode min, relative threshold) on the validation loss: when more
//             than `patience` epochs in a row fail to improve on the best by the fraction `threshold`,
//             multiply by `factor` (not below `min_lr`) and start counting again
enum class ScheduleKind { Constant, Cosine, Plateau };
ScheduleKind parse_schedule(const std::string& name);  // "constant", "cosine", "plateau"
std::string to_string(ScheduleKind kind);

struct ScheduleSettings {
  ScheduleKind kind = ScheduleKind::Constant;
  double min_lr = 0;  // cosine: final rate; plateau: floor
  double factor = 0.5, threshold = 1e-4;
  int patience = 3;
};

// What a checkpoint keeps of a schedule.
struct ScheduleState {
  double plateau_lr = 0;  // current rate of the plateau schedule (0: not started, the base rate)
  double best = 0;        // best validation loss so far
  bool has_best = false;
  int bad_epochs = 0;
};

class LearningRateSchedule {
 public:
  LearningRateSchedule(double base_lr, ScheduleSettings settings, ScheduleState state = {});
  // The rate for the next step at progress p in [0, 1] (used by cosine only).
  double rate(double progress) const;
  // After each epoch's validation (used by plateau only). Returns true when the rate was reduced.
  bool end_epoch(double validation_loss);
  const ScheduleState& state() const { return state_; }
  const ScheduleSettings& settings() const { return settings_; }

 private:
  double base_;
  ScheduleSettings settings_;
  ScheduleState state_;
};

}  // namespace nfmimo::nn
