#include "models/learned/denoiser.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "models/nn/executor.hpp"
#include "radar/error.hpp"
#include "radar/random.hpp"
#include "synthesizer/scene.hpp"

namespace nfmimo::nn {

void require_denoiser(const Model& model, const std::string& source) {
  require(
      model.role == kDenoiserRole,
      fmt::format("{}: pnp needs a denoiser (trained with nfmimo train --arch denoiser), but this model is a "
                  "{} network ({}): use it with its own --method",
                  source, model.role, model.architecture));
}

NetworkDenoiser::NetworkDenoiser(const Model& model, DeviceKind device, Precision precision)
    : voxels_(model.grid.voxels()), input_(model.grid.voxels()) {
  require_denoiser(model, "the model");
  network_ =
      make_executor(model.network(), model.parameters, Mode::Inference, resolve_device(device), precision);
}

NetworkDenoiser::~NetworkDenoiser() = default;

void NetworkDenoiser::denoise(const float* m, float* out) {
  const float peak = *std::max_element(m, m + voxels_);
  if (!(peak > 0)) {  // all zero: stays zero (the network's biases would invent a background)
    std::fill(out, out + voxels_, 0.0f);
    return;
  }
  const float inv = 1.0f / peak;
  for (std::size_t i = 0; i < voxels_; ++i) input_[i] = m[i] * inv;
  network_->predict(input_.data(), out, 1);
  for (std::size_t i = 0; i < voxels_; ++i) out[i] *= peak;
}

std::string NetworkDenoiser::description() const { return network_->description(); }

namespace {

// Index of the per-sample sigma draw in the sample's noise stream, far above the voxel normals' indices.
constexpr std::uint64_t kSigmaIndex = std::uint64_t(1) << 40;

void validate_settings(const DenoiserSourceSettings& s) {
  require(s.batch >= 1, fmt::format("the batch size must be positive (got {})", s.batch));
  require(s.batches_per_epoch >= 1,
          fmt::format("an epoch needs at least one batch (got {})", s.batches_per_epoch));
  require(
      std::isfinite(s.sigma_max) && s.sigma_max >= 0,
      fmt::format("the denoiser's noise level sigma_max must be a finite number >= 0 (got {})", s.sigma_max));
}

nlohmann::json settings_record(const DenoiserSourceSettings& s, std::uint64_t seed) {
  nlohmann::json j;
  j["kind"] = "denoiser";
  j["seed"] = seed;
  j["noise"] = "input = max(|x| + sigma n, 0), n ~ N(0, 1) per voxel, sigma ~ U[0, sigma_max] per sample";
  j["sigma_max"] = s.sigma_max;
  j["scene_config"] = nlohmann::json::parse(scene_config_json(s.config));
  return j;
}

class DenoiserSource final : public BatchSource {
 public:
  DenoiserSource(const DenoiserSourceSettings& s, const RadarSystem& system) : s_(s) {
    validate_settings(s);
    validate_scene_grid(s.grid, "the denoiser's grid");
    format_.system = system;
    format_.grid = s.grid;
    format_.complex_input = false;
  }
  std::string description() const override {
    return fmt::format("denoiser pairs on the fly (seed {}, {} samples per epoch, sigma in [0, {:g}])",
                       s_.seed, std::int64_t(s_.batch) * s_.batches_per_epoch, s_.sigma_max);
  }
  std::string record_json() const override {
    nlohmann::json j = settings_record(s_, s_.seed);
    j["samples_per_epoch"] = std::int64_t(s_.batch) * s_.batches_per_epoch;
    return j.dump();
  }
  const SampleFormat& format() const override { return format_; }
  int batch_size() const override { return s_.batch; }
  int batches_per_epoch() const override { return s_.batches_per_epoch; }
  void produce(std::int64_t epoch, int index, HostBatch& out) override {
    const std::uint64_t first =
        (std::uint64_t(epoch) * std::uint64_t(s_.batches_per_epoch) + std::uint64_t(index)) *
        std::uint64_t(s_.batch);
    out.epoch = epoch;
    out.index = index;
    out.count = s_.batch;
    const std::size_t V = s_.grid.voxels();
    out.input.resize(std::size_t(s_.batch) * V);
    out.target.resize(std::size_t(s_.batch) * V);
    make_denoiser_pairs(s_, s_.seed, first, s_.batch, out.input.data(), out.target.data());
  }

 private:
  DenoiserSourceSettings s_;
  SampleFormat format_;
};

}  // namespace

void make_denoiser_pairs(const DenoiserSourceSettings& s, std::uint64_t seed, std::uint64_t first, int count,
                         float* input, float* target) {
  validate_settings(s);
  const std::size_t V = s.grid.voxels();
  std::vector<cfloat> targets(std::size_t(count) * V);
  render_targets(s.config, s.grid, seed, first, count, targets.data());
#pragma omp parallel for schedule(static)
  for (int n = 0; n < count; ++n) {
    const std::uint64_t sample = first + std::uint64_t(n);
    // The sample's noise stream: synthesizer measurement noise uses the same domain, but these samples have
    // no measurements, so nothing is correlated.
    const RandomStream rng(seed, stream_id(sample, RandomDomain::Noise));
    const double sigma = s.sigma_max * rng.uniform(kSigmaIndex);
    const cfloat* t = targets.data() + std::size_t(n) * V;
    float* in = input + std::size_t(n) * V;
    float* out = target + std::size_t(n) * V;
    for (std::size_t v = 0; v < V; v += 2) {
      double a, b;
      rng.normal2(v / 2, &a, &b);
      out[v] = std::abs(t[v]);
      in[v] = std::max(0.0f, float(out[v] + sigma * a));
      if (v + 1 < V) {
        out[v + 1] = std::abs(t[v + 1]);
        in[v + 1] = std::max(0.0f, float(out[v + 1] + sigma * b));
      }
    }
  }
}

std::unique_ptr<BatchSource> make_denoiser_source(const DenoiserSourceSettings& settings,
                                                  const RadarSystem& system) {
  return std::make_unique<DenoiserSource>(settings, system);
}

ValidationSet make_denoiser_validation(const DenoiserSourceSettings& s, std::uint64_t seed, int count) {
  require(count >= 1, fmt::format("the validation set needs at least one sample (got {})", count));
  ValidationSet v;
  v.count = count;
  const std::size_t V = s.grid.voxels();
  v.input.resize(std::size_t(count) * V);
  v.target.resize(std::size_t(count) * V);
  make_denoiser_pairs(s, seed, 0, count, v.input.data(), v.target.data());
  v.description = fmt::format("{} denoiser pairs of seed {}", count, seed);
  nlohmann::json j = settings_record(s, seed);
  j["count"] = count;
  v.record_json = j.dump();
  return v;
}

}  // namespace nfmimo::nn
