// The learned methods (Deep2S and its variants): a physics stage followed by a trained network from --model.
#include <fmt/format.h>

#include "models/pipeline.hpp"
#include "radar/error.hpp"
#include "radar/names.hpp"
#include "tools/methods.hpp"

namespace nfmimo {

std::vector<MethodEntry> learned_methods() {
  std::vector<MethodEntry> entries;
  for (const auto& spec : nn::learned_method_specs()) {
    entries.push_back(
        {spec.name, spec.help, [name = spec.name](const MethodContext& c) {
           require(!c.model.empty(), fmt::format("method '{}' needs a weights file: --model FILE", name));
           // --param precision=P (evaluate: per instance) overrides --precision; other keys are ignored, as
           // the analytic methods do.
           const auto param = c.params.find("precision");
           const std::string precision = param != c.params.end() ? param->second : c.precision;
           require(precision.empty() || precision == "fp32",
                   fmt::format("method '{}': precision '{}' needs the GPU network backend, which is not "
                               "built yet; the CPU runs fp32",
                               name, precision));
           nn::Model model = nn::read_model(c.model);
           nn::require_matching(model, c.model, *c.system, *c.grid, "the measurements");
           nn::LearnedPipeline pipeline(name, std::move(model), c.device, parse_mode(c.mode),
                                        std::max(1, std::min(c.batch, 8)));
           MethodResult r;
           r.magnitude.resize(c.grid->voxels() * std::size_t(c.frames));
           pipeline.run(c.measurements, c.frames, r.magnitude.data());
           r.label = name;
           r.device = pipeline.device_description();
           return r;
         }});
  }
  return entries;
}

}  // namespace nfmimo
