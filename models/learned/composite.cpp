#include "models/learned/composite.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "kernels/normalise.hpp"
#include "models/nn/architectures.hpp"
#include "models/learned/complex_dense.hpp"
#include "models/nn/cpu/network.hpp"
#include "models/training/losses.hpp"
#include "models/training/optimizer.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

std::vector<ParameterSpec> dense_parameter_specs(const RadarSystem& system, const ImagingGrid& grid) {
  const int M = int(system.samples_per_frame()), V = int(grid.voxels());
  return {{kDenseWeight, {V, M, 2}, true}, {kDenseBias, {V, 2}, true}};
}

namespace {

ParameterTensor complex_tensor(const std::vector<cfloat>& values, std::vector<int> shape) {
  ParameterTensor t;
  t.shape = std::move(shape);
  t.values.resize(2 * values.size());
  std::memcpy(t.values.data(), values.data(), values.size() * sizeof(cfloat));
  t.trainable = true;
  return t;
}

const ParameterTensor& dense_tensor(const Parameters& p, const char* name) {
  const auto it = p.find(name);
  require(it != p.end(), fmt::format("the model has no dense layer ('{}' is missing)", name));
  return it->second;
}

}  // namespace

void add_initial_dense_parameters(const std::string& architecture, const RadarSystem& system,
                                  const ImagingGrid& grid, std::uint64_t seed, Parameters& parameters) {
  require(is_composite_architecture(architecture),
          fmt::format("'{}' has no dense first stage (deepdi, deep2s-plus have)", architecture));
  const int M = int(system.samples_per_frame()), V = int(grid.voxels());
  const ComplexDense layer =
      architecture == "deep2s-plus" ? ComplexDense::adjoint(system, grid) : ComplexDense::random(M, V, seed);
  parameters[kDenseWeight] = complex_tensor(layer.weights(), {V, M, 2});
  parameters[kDenseBias] = complex_tensor(layer.bias(), {V, 2});
}

Parameters without_dense_parameters(const Parameters& parameters) {
  Parameters out;
  for (const auto& [name, t] : parameters)
    if (name != kDenseWeight && name != kDenseBias) out.emplace(name, t);
  return out;
}

// cfloat is std::complex<float>, which the standard lays out as float[2]: the views are exact.
const cfloat* dense_weights(const Parameters& p) {
  return reinterpret_cast<const cfloat*>(dense_tensor(p, kDenseWeight).values.data());
}
const cfloat* dense_bias(const Parameters& p) {
  return reinterpret_cast<const cfloat*>(dense_tensor(p, kDenseBias).values.data());
}

void measurement_scales(const cfloat* adjoint, int frames, std::size_t V, float* scales) {
  frame_max_scales(adjoint, frames, V, scales);
}

void scale_measurements(const cfloat* y, int frames, std::size_t M, const float* scales, cfloat* out) {
  for (int f = 0; f < frames; ++f)
    for (std::size_t m = 0; m < M; ++m) out[std::size_t(f) * M + m] = y[std::size_t(f) * M + m] * scales[f];
}

namespace {

class CpuCompositeTrainingBackend final : public TrainingBackend {
 public:
  CpuCompositeTrainingBackend(const Network& network, int samples, Parameters initial)
      : network_(network),
        M_(samples),
        V_(int(network.input_shape(1).spatial())),
        master_(std::move(initial)),
        train_(network, without_dense_parameters(master_), Mode::Training),
        decayed_(decayed_parameters(network)) {
    std::vector<ParameterSpec> specs = network_.parameter_specs();
    specs.push_back({kDenseWeight, {V_, M_, 2}, true});
    specs.push_back({kDenseBias, {V_, 2}, true});
    check_parameters(specs, "composite", master_, "training backend");
    require(network_.input_shape(1).c == 2, "a composite's network takes the two channels [Re, Im]");
    const Shape out = network_.output_shape(1);
    volume_ = VolumeShape{out.x, out.y, out.z};
    decayed_.insert(kDenseWeight);
    // The dense gradient stays allocated between steps (573 MB for K=15).
    gradients_[kDenseWeight].assign(std::size_t(V_) * M_ * 2, 0.0f);
    gradients_[kDenseBias].assign(std::size_t(V_) * 2, 0.0f);
  }

  const Network& network() const override { return network_; }
  std::string description() const override {
    return fmt::format("{} + complex dense layer {} x {} (Eigen)", train_.description(), V_, M_);
  }
  std::size_t input_size() const override { return 2 * std::size_t(M_); }

  StepResult step(const float* input, const float* target, int n,
                  const OptimizerSettings& settings) override {
    require(n >= 1, "training step: the batch is empty");
    const cfloat* y = reinterpret_cast<const cfloat*>(input);
    const std::size_t out_size = volume_.voxels() * std::size_t(n);
    dense_out_.resize(std::size_t(n) * 2 * V_);
    grad_dense_out_.resize(dense_out_.size());
    output_.resize(out_size);
    grad_.resize(out_size);
    StepResult r;
    complex_dense_forward(dense_weights(master_), dense_bias(master_), M_, V_, y, n, dense_out_.data());
    train_.forward(dense_out_.data(), output_.data(), n);
    r.loss = loss_and_gradient({settings.loss, settings.ssim_weight}, output_.data(), target, n, volume_,
                               grad_.data());
    if (!std::isfinite(r.loss)) return skip(r);
    train_.backward(grad_.data(), grad_dense_out_.data());
    for (const auto& [name, g] : train_.gradients()) gradients_[name] = g;
    auto& gw = gradients_.at(kDenseWeight);
    auto& gb = gradients_.at(kDenseBias);
    std::fill(gw.begin(), gw.end(), 0.0f);
    std::fill(gb.begin(), gb.end(), 0.0f);
    complex_dense_backward(M_, V_, y, n, grad_dense_out_.data(), reinterpret_cast<cfloat*>(gw.data()),
                           reinterpret_cast<cfloat*>(gb.data()));
    r.gradient_norm = global_norm(gradients_);
    if (!std::isfinite(r.gradient_norm)) return skip(r);
    for (const auto& [name, t] : train_.parameters())
      if (!t.trainable) master_.at(name).values = t.values;
    adam_step(master_, gradients_, clip_scale(r.gradient_norm, settings.clip_norm), settings, decayed_,
              state_);
    refresh_network(train_);
    inference_.mark_stale();
    return r;
  }

  void predict(const float* input, float* output, int n) override {
    CpuNetwork& inference = inference_.get(network_, train_);
    dense_out_.resize(std::size_t(n) * 2 * V_);
    complex_dense_forward(dense_weights(master_), dense_bias(master_), M_, V_,
                          reinterpret_cast<const cfloat*>(input), n, dense_out_.data());
    inference.forward(dense_out_.data(), output, n);
  }

  // The master parameters with the running statistics of the training network.
  Parameters parameters() const override {
    Parameters p = master_;
    for (const auto& [name, t] : train_.parameters())
      if (!t.trainable) p.at(name).values = t.values;
    return p;
  }
  OptimizerState optimizer_state() const override { return state_; }

  void load_state(const Parameters& parameters, const OptimizerState& state) override {
    std::vector<ParameterSpec> specs = network_.parameter_specs();
    specs.push_back({kDenseWeight, {V_, M_, 2}, true});
    specs.push_back({kDenseBias, {V_, 2}, true});
    check_parameters(specs, "composite", parameters, "training state");
    check_optimizer_moments(parameters, state);
    master_ = parameters;
    refresh_network(train_);
    state_ = state;
    inference_.mark_stale();
  }

 private:
  // Copies the U-Net's part of the master parameters into a network (never the dense layer).
  void refresh_network(CpuNetwork& net) { net.set_parameters(without_dense_parameters(master_)); }

  StepResult skip(StepResult r) {
    r.finite = false;
    refresh_network(train_);  // undo the running statistics the forward pass moved
    return r;
  }

  Network network_;
  int M_, V_;
  Parameters master_;  // U-Net and dense layer, float32; running statistics as of the last completed step
  CpuNetwork train_;
  std::set<std::string> decayed_;
  OptimizerState state_;
  Gradients gradients_;
  VolumeShape volume_;
  std::vector<float> dense_out_, grad_dense_out_, output_, grad_;
  InferenceMirror inference_;
};

}  // namespace

std::unique_ptr<TrainingBackend> make_cpu_composite_training_backend(const Network& network, int samples,
                                                                     Parameters initial) {
  return std::make_unique<CpuCompositeTrainingBackend>(network, samples, std::move(initial));
}

}  // namespace nfmimo::nn
