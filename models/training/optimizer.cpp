#include "models/training/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "radar/error.hpp"

namespace nfmimo::nn {

double global_norm(const Gradients& gradients) {
  double sum = 0;
  for (const auto& [name, g] : gradients)
    for (float v : g) sum += double(v) * double(v);
  return std::sqrt(sum);
}

std::set<std::string> decayed_parameters(const Network& network) {
  std::set<std::string> names;
  for (const Op& op : network.ops())
    if (op.kind == OpKind::Conv || op.kind == OpKind::ConvTranspose || op.kind == OpKind::Dense)
      names.insert(op.name + ".weight");
  return names;
}

void check_optimizer_moments(const Parameters& parameters, const OptimizerState& state) {
  for (const auto& [name, t] : parameters) {
    if (!t.trainable) continue;
    for (const auto* moments : {&state.m, &state.v}) {
      const auto it = moments->find(name);
      require(it == moments->end() || it->second.size() == t.values.size(),
              fmt::format("training state: the optimizer moments of '{}' have {} values, the parameter {}",
                          name, it == moments->end() ? 0 : it->second.size(), t.values.size()));
    }
  }
}

double clip_scale(double norm, double clip_norm) {
  return clip_norm > 0 && norm > clip_norm ? clip_norm / norm : 1.0;
}

void adam_step(Parameters& parameters, const Gradients& gradients, double gradient_scale,
               const OptimizerSettings& s, const std::set<std::string>& decayed, OptimizerState& state) {
  state.step += 1;
  const double t = double(state.step);
  const double c1 = 1 - std::pow(s.beta1, t), c2 = 1 - std::pow(s.beta2, t);
  const double lr = s.learning_rate;
  for (auto& [name, p] : parameters) {
    if (!p.trainable) continue;
    const auto g_it = gradients.find(name);
    require(g_it != gradients.end() && g_it->second.size() == p.values.size(),
            fmt::format("optimizer: no gradient of the right size for parameter '{}'", name));
    const std::vector<float>& g = g_it->second;
    auto& m = state.m[name];
    auto& v = state.v[name];
    if (m.size() != g.size()) m.assign(g.size(), 0.0f);
    if (v.size() != g.size()) v.assign(g.size(), 0.0f);
    const double wd = decayed.count(name) ? s.weight_decay : 0.0;
    float* pv = p.values.data();
    const std::int64_t n = std::int64_t(g.size());
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      const double gi = double(g[std::size_t(i)]) * gradient_scale;
      const double mi = s.beta1 * m[std::size_t(i)] + (1 - s.beta1) * gi;
      const double vi = s.beta2 * v[std::size_t(i)] + (1 - s.beta2) * gi * gi;
      m[std::size_t(i)] = float(mi);
      v[std::size_t(i)] = float(vi);
      const double p0 = pv[i];
      pv[i] = float(p0 - lr * wd * p0 - lr * (mi / c1) / (std::sqrt(vi / c2) + s.epsilon));
    }
  }
}

ScheduleKind parse_schedule(const std::string& name) {
  if (name == "constant") return ScheduleKind::Constant;
  if (name == "cosine") return ScheduleKind::Cosine;
  if (name == "plateau") return ScheduleKind::Plateau;
  throw InputError(fmt::format("unknown learning-rate schedule '{}' (constant, cosine, plateau)", name));
}

std::string to_string(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::Constant:
      return "constant";
    case ScheduleKind::Cosine:
      return "cosine";
    case ScheduleKind::Plateau:
      return "plateau";
  }
  return "unknown";
}

LearningRateSchedule::LearningRateSchedule(double base_lr, ScheduleSettings settings, ScheduleState state)
    : base_(base_lr), settings_(settings), state_(state) {
  require(base_lr > 0 && std::isfinite(base_lr),
          fmt::format("the learning rate must be positive (got {})", base_lr));
  require(settings.min_lr >= 0 && settings.min_lr <= base_lr,
          fmt::format("the minimum learning rate must be in [0, {}] (got {})", base_lr, settings.min_lr));
  require(settings.factor > 0 && settings.factor < 1,
          fmt::format("the plateau factor must be in (0, 1) (got {})", settings.factor));
  require(settings.patience >= 0, "the plateau patience must not be negative");
  if (state_.plateau_lr <= 0) state_.plateau_lr = base_lr;
}

double LearningRateSchedule::rate(double progress) const {
  switch (settings_.kind) {
    case ScheduleKind::Constant:
      return base_;
    case ScheduleKind::Cosine: {
      const double p = std::clamp(progress, 0.0, 1.0);
      return settings_.min_lr + (base_ - settings_.min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * p));
    }
    case ScheduleKind::Plateau:
      return state_.plateau_lr;
  }
  return base_;
}

bool LearningRateSchedule::end_epoch(double validation_loss) {
  if (settings_.kind != ScheduleKind::Plateau || !std::isfinite(validation_loss)) return false;
  // PyTorch's mode 'min', threshold_mode 'rel': an improvement must beat best (1 - threshold).
  if (!state_.has_best || validation_loss < state_.best * (1 - settings_.threshold)) {
    state_.best = validation_loss;
    state_.has_best = true;
    state_.bad_epochs = 0;
    return false;
  }
  if (++state_.bad_epochs <= settings_.patience) return false;
  state_.bad_epochs = 0;
  const double next = std::max(settings_.min_lr, state_.plateau_lr * settings_.factor);
  const bool reduced = next < state_.plateau_lr;
  state_.plateau_lr = next;
  return reduced;
}

}  // namespace nfmimo::nn
