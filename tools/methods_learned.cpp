// The learned methods (Deep2S and its variants): a physics stage followed by a trained network from --model.
#include <algorithm>
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "kernels/device.hpp"
#include "models/nn/cuda/network.hpp"
#include "models/learned/pipeline.hpp"
#include "radar/error.hpp"
#include "radar/names.hpp"
#include "tools/methods.hpp"
#include "tools/model_lookup.hpp"

namespace nfmimo {

std::unique_ptr<nn::LearnedPipeline> make_learned_pipeline(const std::string& name, nn::Model model,
                                                           const std::string& model_source,
                                                           const MethodContext& c) {
  // The device first (an unavailable GPU is refused with its reason), then the precision: the GPU's default
  // rule (docs/networks.md, "Precision") or what was asked; the CPU runs fp32 only. --param precision=P
  // (evaluate: per instance) overrides --precision.
  const auto param = c.params.find("precision");
  const std::string asked = param != c.params.end() ? param->second : c.precision;
  const DeviceKind device = resolve_device(c.device);
  const nn::Precision precision = !asked.empty()               ? nn::parse_inference_precision(asked)
                                  : device == DeviceKind::Cuda ? nn::default_gpu_precision()
                                                               : nn::Precision::Fp32;
  require(device == DeviceKind::Cuda || precision == nn::Precision::Fp32,
          fmt::format("method '{}': precision '{}' needs the GPU (--device cuda); the CPU network "
                      "backend runs fp32",
                      name, asked));
  nn::require_matching(model, model_source, *c.system, *c.grid, "the measurements");
  // The CPU reaches its speed at 8 frames and its activation memory grows with the chunk; the GPU takes the
  // whole --batch per launch.
  const int batch = device == DeviceKind::Cuda ? std::max(1, c.batch) : std::max(1, std::min(c.batch, 8));
  return std::make_unique<nn::LearnedPipeline>(name, std::move(model), device, parse_mode(c.mode), batch,
                                               precision);
}

std::vector<MethodEntry> learned_methods() {
  std::vector<MethodEntry> entries;
  for (const auto& spec : nn::learned_method_specs()) {
    entries.push_back(
        {spec.name, spec.help, [name = spec.name](const MethodContext& c) {
           // Without --model: the shipped model for the measurements' system and grid (or an error saying
           // what is shipped and how to train one).
           const std::string path = !c.model.empty() ? c.model : default_model(name, *c.system, *c.grid);
           if (c.model.empty())
             std::fprintf(stderr, "%s: using the shipped model %s\n", name.c_str(), path.c_str());
           const auto pipeline = make_learned_pipeline(name, nn::read_model(path), path, c);
           MethodResult r;
           r.magnitude.resize(c.grid->voxels() * std::size_t(c.frames));
           pipeline->run(c.measurements, c.frames, r.magnitude.data());
           r.label = name;
           r.device = pipeline->device_description();
           return r;
         }});
  }
  return entries;
}

}  // namespace nfmimo
