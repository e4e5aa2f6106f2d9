// The iterative baselines: l1 (sparsity of the magnitude) and tv (3D total variation of the magnitude),
// solved by FISTA on the exact physics operators of the CPU or GPU (radar/iterative.hpp, docs/iterative.md).
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kernels/imager.hpp"
#include "kernels/iterative_solver.hpp"
#include "radar/error.hpp"
#include "radar/iterative.hpp"
#include "tools/methods.hpp"

namespace nfmimo {
namespace {

constexpr const char* kKnownParams = "lambda, iterations, tol, accel, tv_iterations, l1_weight (tv)";

// Options from --param key=value; unknown keys are refused (a misspelt weight must not pass silently), and
// every value is validated with a message that names the method and the parameter.
IterativeOptions options_from_params(Regularizer reg, const std::map<std::string, std::string>& params) {
  const std::string method = to_string(reg);
  IterativeOptions o = default_iterative_options(reg);
  for (const auto& [key, value] : params) {
    if (key == "lambda")
      o.lambda = parse_param_number(method, key, value);
    else if (key == "iterations")
      o.max_iterations = parse_param_count(method, key, value);
    else if (key == "tol")
      o.tolerance = parse_param_number(method, key, value);
    else if (key == "accel")
      o.acceleration = parse_acceleration(value);
    else if (key == "tv_iterations")
      o.tv_iterations = parse_param_count(method, key, value);
    else if (key == "l1_weight")
      o.l1_weight = parse_param_number(method, key, value);
    else
      throw InputError(fmt::format("{}: unknown parameter '{}' (known: {})", method, key, kKnownParams));
  }
  try {
    validate(o);
  } catch (const InputError& e) {
    throw InputError(fmt::format("{}: {}", method, e.what()));
  }
  return o;
}

MethodResult run_iterative(Regularizer reg, const MethodContext& c) {
  const std::string name = to_string(reg);
  const IterativeOptions o = options_from_params(reg, c.params);
  require(c.mode == "exact",
          fmt::format(
              "{}: iterative methods use the exact operators (the fast mode approximates only the adjoint); "
              "drop --mode {}",
              name, c.mode));
  const Imager imager(*c.system, *c.grid, c.device, c.batch);
  const auto solver = make_iterative_solver(imager);
  MethodResult r;
  r.complex.resize(c.grid->voxels() * c.frames);
  const auto reports = solver->solve(c.measurements, r.complex.data(), c.frames, o);

  double iterations = 0;
  int converged = 0;
  nlohmann::json frames = nlohmann::json::array();
  for (const auto& rep : reports) {
    iterations += rep.iterations;
    converged += rep.converged;
    frames.push_back({{"iterations", rep.iterations},
                      {"converged", rep.converged},
                      {"lambda", rep.lambda},
                      {"lambda_l1", rep.lambda_l1},
                      {"objective", rep.objective.empty() ? 0.0 : rep.objective.back()}});
  }
  const double mean_iterations = reports.empty() ? 0 : iterations / reports.size();
  r.label = fmt::format("{} (lambda_rel {:g}{}, {}, {:.0f} iterations)", name, o.lambda,
                        o.l1_weight > 0 ? fmt::format(", l1_weight {:g}", o.l1_weight) : "",
                        to_string(o.acceleration), mean_iterations);
  r.device = solver->device_description();
  // Stored with the output: the weights and the solver's record, so results can be reproduced.
  r.extra_json = nlohmann::json{
      {"method", name},
      {"lambda_rel", o.lambda},
      {"lambda_rule", "lambda = lambda_rel * max|A^H y| per frame"},
      {"acceleration", to_string(o.acceleration)},
      {"max_iterations", o.max_iterations},
      {"tolerance", o.tolerance},
      {"tv_iterations", o.tv_iterations},
      {"l1_weight_rel", o.l1_weight},
      {"step", 1.0 / solver->lipschitz()},
      {"converged_frames", converged},
      {"frames",
       frames}}.dump();
  return r;
}

}  // namespace

std::vector<MethodEntry> iterative_methods() {
  const IterativeOptions l1 = default_iterative_options(Regularizer::L1);
  const IterativeOptions tv = default_iterative_options(Regularizer::TotalVariation);
  return {
      {"l1",
       fmt::format("sparsity of the magnitude: FISTA on 0.5||Ax-y||^2 + lambda sum|x| (--param lambda={:g} "
                   "iterations={} tol={:g} accel=fista|mfista|ista)",
                   l1.lambda, l1.max_iterations, l1.tolerance),
       [](const MethodContext& c) { return run_iterative(Regularizer::L1, c); }},
      {"tv",
       fmt::format("3D total variation of the magnitude: FISTA with an inner TV prox (--param lambda={:g} "
                   "l1_weight={:g} iterations={} tol={:g} tv_iterations={} accel=...)",
                   tv.lambda, tv.l1_weight, tv.max_iterations, tv.tolerance, tv.tv_iterations),
       [](const MethodContext& c) { return run_iterative(Regularizer::TotalVariation, c); }},
  };
}

}  // namespace nfmimo
