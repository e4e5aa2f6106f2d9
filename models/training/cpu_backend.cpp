// The CPU training backend: CpuNetwork in training mode, the loss, global-norm clipping and AdamW on the
// host.
//
// One step: forward (batch statistics; the batch-norm running statistics move), loss and d(loss)/d(output) in
// double (models/training/losses.hpp), backward, global gradient norm, clipping, Adam. Every stage is either
// element-wise or reduces in a fixed order, so the same seed and data give the same weights bit for bit (with
// the same thread count). A step whose loss or gradients are not finite changes nothing: the running
// statistics that its forward pass moved are restored and the update is skipped.
//
// Validation (predict) runs a second CpuNetwork in inference mode (running statistics, folded batch norms),
// refreshed from the training network's parameters whenever they changed.
#include <cmath>

#include <fmt/format.h>

#include "models/nn/cpu/network.hpp"
#include "models/training/losses.hpp"
#include "models/training/optimizer.hpp"
#include "models/training/backend.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {
namespace {

class CpuTrainingBackend final : public TrainingBackend {
 public:
  CpuTrainingBackend(const Network& network, const Parameters& initial)
      : network_(network),
        train_(network, initial, Mode::Training),
        master_(train_.parameters()),
        decayed_(decayed_parameters(network)) {
    const Shape out = network_.output_shape(1);
    require(out.c == 1, fmt::format("training: the {} network has {} output channels; the losses take one",
                                    network_.architecture(), out.c));
    volume_ = VolumeShape{out.x, out.y, out.z};
  }

  const Network& network() const override { return network_; }
  std::string description() const override { return train_.description(); }

  StepResult step(const float* input, const float* target, int n,
                  const OptimizerSettings& settings) override {
    require(n >= 1, "training step: the batch is empty");
    const std::size_t out_size = volume_.voxels() * std::size_t(n);
    output_.resize(out_size);
    grad_.resize(out_size);
    StepResult r;
    train_.forward(input, output_.data(), n);
    r.loss = loss_and_gradient({settings.loss, settings.ssim_weight}, output_.data(), target, n, volume_,
                               grad_.data());
    if (!std::isfinite(r.loss)) return skip(r);
    train_.backward(grad_.data(), nullptr);
    const Gradients& g = train_.gradients();
    r.gradient_norm = global_norm(g);
    if (!std::isfinite(r.gradient_norm)) return skip(r);
    // The forward pass moved the running statistics; the trainable values are the master copy's.
    for (const auto& [name, t] : train_.parameters())
      if (!t.trainable) master_.at(name).values = t.values;
    adam_step(master_, g, clip_scale(r.gradient_norm, settings.clip_norm), settings, decayed_, state_);
    train_.set_parameters(master_);
    inference_.mark_stale();
    return r;
  }

  void predict(const float* input, float* output, int n) override {
    CpuNetwork& inference = inference_.get(network_, train_);
    inference.forward(input, output, n);
  }

  Parameters parameters() const override { return train_.parameters(); }
  OptimizerState optimizer_state() const override { return state_; }

  void load_state(const Parameters& parameters, const OptimizerState& state) override {
    check_parameters(network_, parameters, "training state");
    check_optimizer_moments(parameters, state);
    master_ = parameters;
    train_.set_parameters(master_);
    state_ = state;
    inference_.mark_stale();
  }

 private:
  // A non-finite step leaves everything as it was before it.
  StepResult skip(StepResult r) {
    r.finite = false;
    train_.set_parameters(master_);
    return r;
  }

  Network network_;
  CpuNetwork train_;
  Parameters master_;  // float32 master parameters; running statistics as of the last completed step
  std::set<std::string> decayed_;
  OptimizerState state_;
  VolumeShape volume_;
  std::vector<float> output_, grad_;
  InferenceMirror inference_;
};

}  // namespace

std::unique_ptr<TrainingBackend> make_cpu_training_backend(const Network& network,
                                                           const Parameters& initial) {
  return std::make_unique<CpuTrainingBackend>(network, initial);
}

}  // namespace nfmimo::nn
