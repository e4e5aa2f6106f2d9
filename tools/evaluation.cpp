#include "tools/evaluation.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <limits>

#include <fmt/format.h>

#include "radar/error.hpp"

namespace nfmimo {

Summary summarize(const std::vector<double>& values) {
  Summary s;
  if (values.empty()) return s;
  const double n = static_cast<double>(values.size());
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / n;
  if (std::isinf(s.mean)) {
    s.std = std::numeric_limits<double>::quiet_NaN();
    return s;
  }
  double ss = 0;
  for (double v : values) ss += (v - s.mean) * (v - s.mean);
  s.std = values.size() > 1 ? std::sqrt(ss / (n - 1)) : 0.0;
  return s;
}

namespace {
template <class F>
Summary summarize_field(const std::vector<ImageQuality>& frames, F field) {
  std::vector<double> v;
  v.reserve(frames.size());
  for (const auto& q : frames) v.push_back(field(q));
  return summarize(v);
}
}  // namespace

Summary MethodEvaluation::psnr() const {
  return summarize_field(frames, [](const ImageQuality& q) { return q.psnr_db; });
}
Summary MethodEvaluation::ssim_3d() const {
  return summarize_field(frames, [](const ImageQuality& q) { return q.ssim_3d; });
}
Summary MethodEvaluation::ssim_2d() const {
  return summarize_field(frames, [](const ImageQuality& q) { return q.ssim_2d; });
}
Summary MethodEvaluation::nmse() const {
  return summarize_field(frames, [](const ImageQuality& q) { return q.nmse; });
}

MethodEvaluation evaluate_method(const std::string& name, const MethodContext& c,
                                 const std::vector<cfloat>& targets, int keep_frames) {
  const std::size_t V = c.grid->voxels();
  require(targets.size() == V * c.frames,
          fmt::format("evaluate: {} target voxels for {} frames of {} voxels", targets.size(), c.frames, V));
  MethodEvaluation e;
  e.name = name;
  const auto t0 = std::chrono::steady_clock::now();
  MethodResult r = run_method(name, c);
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  require(r.magnitude.size() == V * c.frames,
          fmt::format("method '{}' returned {} voxels for {} frames of {}", name, r.magnitude.size(),
                      c.frames, V));
  e.label = r.label;
  e.device = r.device;
  e.extra_json = r.extra_json;
  const VolumeShape shape = VolumeShape::of(*c.grid);
  e.frames.resize(c.frames);
  // An exception must not leave an OpenMP region: the first one is kept and rethrown after it.
  std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic)
  for (int n = 0; n < c.frames; ++n) {
    try {
      std::vector<float> truth(V);
      for (std::size_t i = 0; i < V; ++i) truth[i] = std::abs(targets[n * V + i]);
      e.frames[n] = image_quality(std::span<const float>(r.magnitude.data() + n * V, V),
                                  std::span<const float>(truth), shape);
    } catch (const InputError& err) {
#pragma omp critical(nfmimo_evaluate_failure)
      if (!failure)
        failure = std::make_exception_ptr(
            InputError(fmt::format("method '{}', frame {}: {}", name, n, err.what())));
    }
  }
  if (failure) std::rethrow_exception(failure);
  const int kept = std::clamp(keep_frames, 0, c.frames);
  e.kept_magnitude.assign(r.magnitude.begin(), r.magnitude.begin() + kept * V);
  return e;
}

std::map<std::string, std::string> params_for_method(const std::string& method,
                                                     const std::map<std::string, std::string>& all) {
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : all) {
    const auto dot = key.find('.');
    if (dot == std::string::npos)
      out[key] = value;
    else if (key.substr(0, dot) == method)
      out[key.substr(dot + 1)] = value;
  }
  return out;
}

}  // namespace nfmimo
