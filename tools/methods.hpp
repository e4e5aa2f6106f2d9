// Reconstruction methods by name: one table that `reconstruct`, `evaluate` and `bench` share.
//
// Each family of methods (analytic, learned, iterative) contributes its entries from its own file through one
// function listed in methods.cpp.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/device.hpp"
#include "radar/complex.hpp"
#include "radar/system.hpp"

namespace nfmimo {

namespace nn {
struct Model;
class LearnedPipeline;
}  // namespace nn

struct MethodContext {
  const RadarSystem* system = nullptr;
  const ImagingGrid* grid = nullptr;
  const cfloat* measurements = nullptr;  // host [frames, K, T, R]
  int frames = 0;
  DeviceKind device = DeviceKind::Auto;       // as requested; methods resolve it
  std::string mode = "exact";                 // physics operator mode: exact | fast
  int batch = 64;                             // frames per device launch
  std::string model;                          // weights file for learned methods
  std::string precision;                      // fp32 | tf32 | fp16 | "" (method default)
  std::map<std::string, std::string> params;  // method-specific options from --param key=value
};

struct MethodResult {
  std::vector<cfloat> complex;   // [frames, V] when the method produces complex volumes
  std::vector<float> magnitude;  // [frames, V] otherwise (filled from `complex` by run_method when empty)
  std::string label;             // for files and figures, e.g. "adjoint (exact)"
  std::string device;            // what ran it, e.g. "cpu (2 threads)"
  std::string extra_json;        // method-specific record stored with the output (weights, iterations), or ""
};

struct MethodEntry {
  std::string name;
  std::string help;
  std::function<MethodResult(const MethodContext&)> run;
};

// All methods, in the order `--help` lists them.
const std::vector<MethodEntry>& all_methods();
// Runs a method by name (InputError naming the known methods when unknown); fills `magnitude`.
MethodResult run_method(const std::string& name, const MethodContext& context);
std::string method_names();  // "adjoint, backprojection, ..."
// What a method reads besides the measurements: a network (--model, --param precision) for the learned ones,
// --param keys for the iterative ones (l1, tv, pnp). reconstruct and evaluate refuse what no method would
// read.
bool is_learned_method(const std::string& name);
bool is_tunable_method(const std::string& name);

// --param values: a number / a whole number, or an InputError "METHOD: --param KEY=TEXT is not a number".
double parse_param_number(const std::string& method, const std::string& key, const std::string& text);
int parse_param_count(const std::string& method, const std::string& key, const std::string& text);

// The families (one file each).
std::vector<MethodEntry> analytic_methods();
std::vector<MethodEntry> iterative_methods();
std::vector<MethodEntry> pnp_methods();  // plug-and-play ADMM with a trained denoiser (tools/methods_pnp.cpp)
std::vector<MethodEntry> learned_methods();  // models/: Deep2S and its variants

// The pipeline a learned method (deep2s, ...) runs, from an already loaded model, with the device, precision
// and batch chosen from `context` exactly as `reconstruct` chooses them; InputError when the model does not
// match context.system / context.grid (`model_source` names it). The Python package keeps one per loaded
// model.
std::unique_ptr<nn::LearnedPipeline> make_learned_pipeline(const std::string& method, nn::Model model,
                                                           const std::string& model_source,
                                                           const MethodContext& context);

}  // namespace nfmimo
