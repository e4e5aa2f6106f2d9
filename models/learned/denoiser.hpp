// The plug-and-play denoiser (radar/pnp.hpp, docs/pnp.md; training: docs/training.md,
// "Denoiser"): a 3D U-Net (unet3d) trained on pairs (noisy |x|, |x|) of synthesizer ground-truth magnitudes,
// and the data source that makes those pairs without any physics operator.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/device.hpp"
#include "models/training/backend.hpp"
#include "models/training/data.hpp"
#include "models/weights.hpp"
#include "radar/pnp.hpp"

namespace nfmimo::nn {

class Executor;

// The default first-level width of `nfmimo train --arch denoiser`: pnp calls the network once per ADMM
// iteration, and a width-16 U-Net costs about a quarter of the paper's width 32 (docs/training.md).
inline constexpr int kDenoiserDefaultWidth = 16;

// A trained denoiser model (role "denoiser") as a MagnitudeDenoiser: out = p * net(m / p) with p = max m (the
// network sees magnitudes in [0, 1], as in training; an all-zero volume stays zero). The network runs on the
// CPU (fp32) or the GPU (the given inference precision); InputError for a model that is not a denoiser.
class NetworkDenoiser final : public MagnitudeDenoiser {
 public:
  NetworkDenoiser(const Model& model, DeviceKind device, Precision precision = Precision::Fp32);
  ~NetworkDenoiser() override;
  void denoise(const float* magnitude, float* out) override;
  std::string description() const override;

 private:
  std::size_t voxels_;
  std::unique_ptr<Executor> network_;
  std::vector<float> input_;
};

// InputError unless `model` (read from `source`) is a denoiser, with a message saying what it is instead.
void require_denoiser(const Model& model, const std::string& source);

// The noise model of the training pairs: per sample sigma ~ U[0, sigma_max], input = max(|x| + sigma n, 0)
// with n i.i.d. standard normal per voxel (clipped at 0: a magnitude is never negative, and pnp feeds the
// denoiser |x + u| >= 0), target = |x| (max 1, synthesizer scenes).
struct DenoiserSourceSettings {
  ImagingGrid grid;
  SceneConfig config;
  std::uint64_t seed = 1;
  int batch = 8;
  int batches_per_epoch = 64;
  double sigma_max = 0.1;
};

// Pairs for samples first .. first + count - 1 of `seed`: input [count, V], target [count, V]. Deterministic
// (Philox streams of the scene's sample index), OpenMP over samples.
void make_denoiser_pairs(const DenoiserSourceSettings& settings, std::uint64_t seed, std::uint64_t first,
                         int count, float* input, float* target);

// Fresh scenes on the fly (no forward operator: only rasterisation): batch b of epoch e holds samples
// (e * batches_per_epoch + b) * batch + [0, batch). `system` is recorded in the model only (the denoiser does
// not depend on it, but weights files carry the system and grid they were made for).
std::unique_ptr<BatchSource> make_denoiser_source(const DenoiserSourceSettings& settings,
                                                  const RadarSystem& system);
// `count` pairs of `seed` (use a seed that training never uses).
ValidationSet make_denoiser_validation(const DenoiserSourceSettings& settings, std::uint64_t seed, int count);

}  // namespace nfmimo::nn
