// pnp: plug-and-play ADMM with a trained magnitude denoiser (radar/pnp.hpp, models/learned/denoiser.hpp,
// docs/pnp.md) on the exact physics operators of the CPU or GPU.
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kernels/imager.hpp"
#include "kernels/iterative_solver.hpp"
#include "models/learned/denoiser.hpp"
#include "models/nn/cuda/network.hpp"
#include "radar/error.hpp"
#include "radar/pnp.hpp"
#include "tools/methods.hpp"

namespace nfmimo {
namespace {

constexpr const char* kKnownParams = "rho, iterations, cg_iterations, cg_tol, tol";

// Options from --param key=value; unknown keys refused, values validated with the method's name.
PnpOptions pnp_options_from_params(const std::map<std::string, std::string>& params) {
  PnpOptions o = default_pnp_options();
  for (const auto& [key, value] : params) {
    if (key == "rho")
      o.rho = parse_param_number("pnp", key, value);
    else if (key == "iterations")
      o.max_iterations = parse_param_count("pnp", key, value);
    else if (key == "cg_iterations")
      o.cg_iterations = parse_param_count("pnp", key, value);
    else if (key == "cg_tol")
      o.cg_tolerance = parse_param_number("pnp", key, value);
    else if (key == "tol")
      o.tolerance = parse_param_number("pnp", key, value);
    else
      throw InputError(fmt::format("pnp: unknown parameter '{}' (known: {})", key, kKnownParams));
  }
  try {
    validate(o);
  } catch (const InputError& e) {
    throw InputError(fmt::format("pnp: {}", e.what()));
  }
  return o;
}

MethodResult run_pnp(const MethodContext& c) {
  // Cheap checks first: options, mode, the model's role and grid.
  const PnpOptions o = pnp_options_from_params(c.params);
  require(c.mode == "exact",
          fmt::format(
              "pnp uses the exact operators (the fast mode approximates only the adjoint); drop --mode {}",
              c.mode));
  require(!c.model.empty(),
          "method 'pnp' needs a denoiser: --model FILE (trained with nfmimo train --arch denoiser)");
  const nn::Model model = nn::read_model(c.model);
  nn::require_denoiser(model, c.model);
  // The denoiser depends on the grid only (it never sees measurements), so only the grid must match.
  if (const auto d = describe_difference(model.grid, *c.grid))
    throw InputError(
        fmt::format("{}: the denoiser's imaging grid differs from the measurements': {}", c.model, *d));
  // The denoiser runs fp32 unless --precision asks otherwise (GPU only): its errors feed back through every
  // iteration.
  const DeviceKind device = resolve_device(c.device);
  const nn::Precision precision =
      c.precision.empty() ? nn::Precision::Fp32 : nn::parse_inference_precision(c.precision);
  require(device == DeviceKind::Cuda || precision == nn::Precision::Fp32,
          fmt::format("pnp: precision '{}' needs the GPU (--device cuda); the CPU network backend runs fp32",
                      c.precision));
  nn::NetworkDenoiser denoiser(model, device, precision);
  const Imager imager(*c.system, *c.grid, device, 1);
  const double lipschitz = make_iterative_solver(imager)->lipschitz();
  const PnpSolver solver(pnp_operator(imager), lipschitz);

  MethodResult r;
  r.complex.resize(c.grid->voxels() * std::size_t(c.frames));
  const auto reports = solver.solve(c.measurements, r.complex.data(), c.frames, o, denoiser);

  double iterations = 0;
  int converged = 0;
  nlohmann::json frames = nlohmann::json::array();
  for (const auto& rep : reports) {
    iterations += rep.iterations;
    converged += rep.converged;
    frames.push_back({{"iterations", rep.iterations},
                      {"converged", rep.converged},
                      {"cg_steps", rep.cg_steps},
                      {"primal_residual", rep.primal_residual.empty() ? 0.0 : rep.primal_residual.back()},
                      {"change", rep.change.empty() ? 0.0 : rep.change.back()}});
  }
  const double mean_iterations = reports.empty() ? 0 : iterations / reports.size();
  r.label = fmt::format("pnp (rho_rel {:g}, {:.0f} iterations)", o.rho, mean_iterations);
  r.device = fmt::format("physics: {}; denoiser: {}", imager.device_description(), denoiser.description());
  r.extra_json = nlohmann::json{
      {"method", "pnp"},
      {"rho_rel", o.rho},
      {"rho", o.rho * lipschitz},
      {"rho_rule", "rho = rho_rel * ||A^H A|| (power iteration)"},
      {"max_iterations", o.max_iterations},
      {"cg_iterations", o.cg_iterations},
      {"cg_tolerance", o.cg_tolerance},
      {"tolerance", o.tolerance},
      {"denoiser", c.model},
      {"denoiser_architecture", model.architecture},
      {"denoiser_width", model.options.width},
      {"converged_frames", converged},
      {"mean_iterations", mean_iterations},
      {"frames",
       frames}}.dump();
  return r;
}

}  // namespace

std::vector<MethodEntry> pnp_methods() {
  const PnpOptions d = default_pnp_options();
  return {{"pnp",
           fmt::format("plug-and-play ADMM with a trained magnitude denoiser (--model FILE from train --arch "
                       "denoiser; --param rho={:g} iterations={} cg_iterations={} cg_tol={:g} tol={:g})",
                       d.rho, d.max_iterations, d.cg_iterations, d.cg_tolerance, d.tolerance),
           run_pnp}};
}

}  // namespace nfmimo
