// Evaluating methods against ground truth: each method runs through run_method() (so every family, learned
// ones included, is evaluated the same way), then the metrics of docs/metrics.md are computed per frame.
// Shared by `nfmimo evaluate` and the weight sweep (tools/sweep_lambda.cpp).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "models/metrics.hpp"
#include "tools/methods.hpp"

namespace nfmimo {

struct Summary {
  double mean = 0, std = 0, min = 0, max = 0;  // std: sample standard deviation (n - 1), 0 for one value
};
// +inf values (perfect reconstructions) make the mean and max +inf and the spread NaN.
Summary summarize(const std::vector<double>& values);

struct MethodEvaluation {
  std::string name, label, device, extra_json;
  double seconds = 0;                 // wall time of run_method (includes its set-up: plans, step size)
  std::vector<ImageQuality> frames;   // per frame
  std::vector<float> kept_magnitude;  // [kept frames, V] for figures
  Summary psnr() const;
  Summary ssim_3d() const;
  Summary ssim_2d() const;
  Summary nmse() const;
};

// Runs `name` on the context's frames and scores each frame's magnitude against |targets| (same layout
// [frames, V]). Keeps the magnitudes of the first `keep_frames` frames.
MethodEvaluation evaluate_method(const std::string& name, const MethodContext& context,
                                 const std::vector<cfloat>& targets, int keep_frames = 0);

// The --param list of one method: "key=value" applies to every method, "method.key=value" to that method
// only.
std::map<std::string, std::string> params_for_method(const std::string& method,
                                                     const std::map<std::string, std::string>& all);

}  // namespace nfmimo
