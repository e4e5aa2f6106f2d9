// nfmimo evaluate --data TEST.h5 --methods adjoint,l1,deep2s,deep2s@old,... [--model FILE | --model
// METHOD=FILE ...]
//                 [--json R.json] [--csv R.csv] [--png F.png]
//
// Per method: mean and spread over the frames of PSNR, both SSIMs and NMSE against the file's /targets
// (docs/metrics.md), and the run time. Every method goes through run_method(), so any family plugs in.
//
// A method may be listed several times as NAME@TAG (deep2s@cpu, deep2s@gpu): each instance is reported under
// its own name and takes its own model (--model deep2s@cpu=a.h5) and parameters (--param
// deep2s@gpu.precision=fp16).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/atomic_file.hpp"
#include "data/measurement_file.hpp"
#include "data/viewer.hpp"
#include "radar/error.hpp"
#include "tools/commands.hpp"
#include "tools/model_lookup.hpp"
#include "tools/evaluation.hpp"

namespace nfmimo {
namespace {

struct EvaluateOptions {
  std::string data, methods = "adjoint,backprojection,kirchhoff", system, json, csv, png, mode = "exact",
                    device = "auto", precision;
  std::vector<std::string> params, models;
  int freqs = 0, frames = 0, batch = 64, png_frames = 2;
  bool force = false;
};

// One entry of --methods: NAME or NAME@TAG.
struct MethodInstance {
  std::string spec;  // as written: the name in reports and the key of --model / --param
  std::string name;  // the method table's name
};

std::vector<MethodInstance> split_methods(const std::string& text) {
  std::vector<MethodInstance> out;
  std::stringstream s(text);
  std::string item;
  while (std::getline(s, item, ',')) {
    if (item.empty()) continue;
    MethodInstance m{item, item.substr(0, item.find('@'))};
    if (m.name.size() != item.size()) {
      const std::string tag = item.substr(m.name.size() + 1);
      require(!tag.empty() &&
                  tag.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
                      std::string::npos,
              fmt::format("--methods: '{}': the tag after '@' must be letters, digits, '_' or '-'", item));
    }
    bool known = false;
    for (const auto& e : all_methods()) known = known || e.name == m.name;
    require(known, fmt::format("--methods: unknown method '{}' (known: {})", m.name, method_names()));
    for (const auto& other : out)
      require(other.spec != m.spec,
              fmt::format("--methods: '{}' is listed twice (use NAME@TAG to run a method twice)", m.spec));
    out.push_back(m);
  }
  require(!out.empty(), "--methods: no method named");
  return out;
}

// --model FILE (every learned method without its own) or --model METHOD=FILE (that instance only).
std::map<std::string, std::string> parse_models(const std::vector<std::string>& models,
                                                const std::vector<MethodInstance>& methods) {
  std::map<std::string, std::string> out;
  for (const auto& text : models) {
    std::string key, path = text;
    if (const auto eq = text.find('='); eq != std::string::npos)
      for (const auto& m : methods)
        if (text.substr(0, eq) == m.spec) key = m.spec, path = text.substr(eq + 1);
    if (key.empty() && text.find('=') != std::string::npos && text.find('=') < text.find('/'))
      throw InputError(
          fmt::format("--model '{}': '{}' is not one of --methods", text, text.substr(0, text.find('='))));
    require(!path.empty(), fmt::format("--model '{}': no file named", text));
    require(!out.count(key),
            key.empty() ? std::string("--model FILE is given twice; name the method: --model METHOD=FILE")
                        : fmt::format("--model: two files for '{}'", key));
    out[key] = path;
  }
  return out;
}

std::map<std::string, std::string> parse_params(const std::vector<std::string>& params) {
  std::map<std::string, std::string> out;
  for (const auto& p : params) {
    const auto eq = p.find('=');
    require(eq != std::string::npos && eq > 0,
            fmt::format("--param '{}' is not key=value or method.key=value", p));
    require(!out.count(p.substr(0, eq)),
            fmt::format("--param '{}': '{}' is given twice; give each parameter once", p, p.substr(0, eq)));
    out[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return out;
}

// JSON has no infinity or NaN: those are written as the strings "inf", "-inf", "nan".
nlohmann::json number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

nlohmann::json summary_json(const Summary& s) {
  return {{"mean", number(s.mean)}, {"std", number(s.std)}, {"min", number(s.min)}, {"max", number(s.max)}};
}

std::string csv_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{:.6g}", v);
}

std::string csv_field(const std::string& s) {
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

void write_text(const std::string& path, const std::string& text, bool force) {
  AtomicOutput out(path, force);
  write_file_checked(out.temporary_path(), text, path);
  out.commit();
}

void run(const EvaluateOptions& o) {
  // The outputs are one set: checked before any work (folders, overwrite rule, collisions, locks) and renamed
  // into place together at the end, so a failure leaves none of them behind.
  OutputSet outputs(o.force);
  outputs.add(o.json, "--json", {o.data});
  outputs.add(o.csv, "--csv", {o.data});
  outputs.add(o.png, "--png", {o.data});
  require(o.batch >= 1 && o.batch <= 65536, fmt::format("--batch must be in 1..65536 (got {})", o.batch));
  require(o.frames >= 0, fmt::format("--frames must not be negative (got {})", o.frames));
  require(o.png_frames >= 1, fmt::format("--png-frames must be positive (got {})", o.png_frames));
  const std::vector<MethodInstance> methods = split_methods(o.methods);
  const auto params = parse_params(o.params);
  // A parameter no listed method reads would be ignored in silence: refuse it, naming what would read it.
  for (const auto& [key, value] : params) {
    const auto dot = key.find('.');
    bool read = false;
    for (const auto& m : methods) {
      const bool takes = is_tunable_method(m.name) || is_learned_method(m.name);
      read = read || (takes && (dot == std::string::npos || key.substr(0, dot) == m.name ||
                                key.substr(0, dot) == m.spec));
    }
    require(read, fmt::format("--param {}={}: no method of --methods {} takes it (parameters are for l1, tv, "
                              "pnp and the learned methods; scope one with METHOD.key=value)",
                              key, value, o.methods));
  }
  require(
      o.freqs == 0 || !o.system.empty(),
      "--freqs goes with --system (the file's own system is used otherwise); drop --freqs or add --system");
  const auto models = parse_models(o.models, methods);
  for (const auto& [key, path] : models) {
    require_distinct_paths(o.data, path);
    for (const std::string* out : {&o.json, &o.csv, &o.png})
      if (!out->empty()) require_distinct_paths(path, *out);
  }

  MeasurementSet m = read_measurements(o.data, {.load_targets = true, .max_frames = o.frames});
  require(!m.targets.empty(),
          fmt::format("{}: no /targets dataset; evaluate needs the ground truth of every frame "
                      "(see docs/formats.md)",
                      o.data));
  if (!o.system.empty()) {
    const RadarSystem expected = named_system(o.system, o.freqs > 0 ? o.freqs : m.system.frequencies());
    if (auto diff = describe_difference(m.system, expected))
      throw InputError(fmt::format("{}: the file's radar system differs from --system {} (K = {}): {}",
                                   o.data, o.system, expected.frequencies(), *diff));
  }
  const ImagingGrid grid = *m.grid;  // read_measurements requires /grid with /targets
  validate_grid(grid, m.system, o.data + ": /grid");
  const int frames = o.frames > 0 ? std::min(o.frames, m.frames) : m.frames;
  const std::size_t V = grid.voxels();
  m.targets.resize(V * frames);

  MethodContext context;
  context.system = &m.system;
  context.grid = &grid;
  context.measurements = m.measurements.data();
  context.frames = frames;
  context.device = parse_device(o.device);
  context.mode = o.mode;
  context.batch = o.batch;
  context.precision = o.precision;

  // A learned method without --model takes the shipped model for the file's system and grid (recorded as if
  // given); found before any method runs, so that a missing one costs nothing.
  std::map<std::string, std::string> shipped;
  for (const auto& method : methods)
    if (is_learned_method(method.name) && !models.count(method.spec) && !models.count(""))
      shipped[method.spec] = default_model(method.name, m.system, grid);

  const int keep = o.png.empty() ? 0 : std::min(o.png_frames, frames);
  std::vector<MethodEvaluation> results;
  std::printf("evaluating %zu method%s on %d frame%s of %s (%s)\n", methods.size(),
              methods.size() == 1 ? "" : "s", frames, frames == 1 ? "" : "s", o.data.c_str(),
              describe(m.system).c_str());
  // The table header comes with the first result, so an error in the first method is not followed by it.
  bool header = false;
  std::vector<std::string> result_models;
  for (const auto& method : methods) {
    // Parameters scoped to the method's name apply to every instance; those scoped to NAME@TAG win.
    context.params = params_for_method(method.name, params);
    if (method.spec != method.name)
      for (const auto& [key, value] : params)
        if (key.rfind(method.spec + ".", 0) == 0) context.params[key.substr(method.spec.size() + 1)] = value;
    const auto model = models.count(method.spec) ? models.find(method.spec) : models.find("");
    context.model = model != models.end() ? model->second : "";
    if (context.model.empty() && is_learned_method(method.name)) {
      context.model = shipped[method.spec];
      std::printf("%s: using the shipped model %s\n", method.spec.c_str(), context.model.c_str());
    }
    results.push_back(evaluate_method(method.name, context, m.targets, keep));
    MethodEvaluation& e = results.back();
    e.name = method.spec;
    result_models.push_back(is_learned_method(method.name) ? context.model : "");
    const std::string name = method.spec;
    if (!header)
      std::printf("%-16s %16s %16s %16s %18s %12s  %s\n", "method", "PSNR dB", "SSIM 3D", "SSIM 2D", "NMSE",
                  "ms/frame", "device");
    header = true;
    auto pm = [](const Summary& s, int digits) {
      return fmt::format("{:.{}f} +- {:.{}f}", s.mean, digits, s.std, digits);
    };
    std::printf("%-16s %16s %16s %16s %18s %12.2f  %s\n", name.c_str(), pm(e.psnr(), 2).c_str(),
                pm(e.ssim_3d(), 4).c_str(), pm(e.ssim_2d(), 4).c_str(), pm(e.nmse(), 4).c_str(),
                1e3 * e.seconds / frames, e.device.c_str());
    std::fflush(stdout);
  }

  if (!o.json.empty()) {
    nlohmann::json j;
    j["dataset"] = o.data;
    j["frames"] = frames;
    j["system"] = describe(m.system);
    j["grid"] = describe(grid);
    j["metrics"] =
        "magnitudes normalised to max 1; PSNR peak 1; SSIM Gaussian 11 taps sigma 1.5, K1 0.01, K2 0.03, "
        "data range 1; ssim_2d = mean over z of x-y SSIM (docs/metrics.md)";
    for (const auto& e : results) {
      nlohmann::json mj;
      mj["name"] = e.name;
      mj["label"] = e.label;
      mj["device"] = e.device;
      if (const std::string& model = result_models[std::size_t(&e - results.data())]; !model.empty())
        mj["model"] = model;
      mj["time_s"] = e.seconds;
      mj["ms_per_frame"] = 1e3 * e.seconds / frames;
      mj["psnr_db"] = summary_json(e.psnr());
      mj["ssim_3d"] = summary_json(e.ssim_3d());
      mj["ssim_2d"] = summary_json(e.ssim_2d());
      mj["nmse"] = summary_json(e.nmse());
      nlohmann::json per = {{"psnr_db", nlohmann::json::array()},
                            {"ssim_3d", nlohmann::json::array()},
                            {"ssim_2d", nlohmann::json::array()},
                            {"nmse", nlohmann::json::array()}};
      for (const auto& q : e.frames) {
        per["psnr_db"].push_back(number(q.psnr_db));
        per["ssim_3d"].push_back(number(q.ssim_3d));
        per["ssim_2d"].push_back(number(q.ssim_2d));
        per["nmse"].push_back(number(q.nmse));
      }
      mj["per_frame"] = per;
      if (!e.extra_json.empty()) mj["details"] = nlohmann::json::parse(e.extra_json);
      j["methods"].push_back(mj);
    }
    write_text(o.json, j.dump(2) + "\n", o.force);
  }
  if (!o.csv.empty()) {
    std::string csv =
        "method,label,device,frames,time_s,ms_per_frame,psnr_db_mean,psnr_db_std,ssim_3d_mean,ssim_3d_std,"
        "ssim_2d_mean,ssim_2d_std,nmse_mean,nmse_std,model\n";
    for (const auto& e : results)
      csv += fmt::format("{},{},{},{},{:.6g},{:.6g},{},{},{},{},{},{},{},{},{}\n", e.name, csv_field(e.label),
                         csv_field(e.device), frames, e.seconds, 1e3 * e.seconds / frames,
                         csv_number(e.psnr().mean), csv_number(e.psnr().std), csv_number(e.ssim_3d().mean),
                         csv_number(e.ssim_3d().std), csv_number(e.ssim_2d().mean),
                         csv_number(e.ssim_2d().std), csv_number(e.nmse().mean), csv_number(e.nmse().std),
                         csv_field(result_models[std::size_t(&e - results.data())]));
    write_text(o.csv, csv, o.force);
  }
  if (!o.png.empty()) {
    // One row per frame: the ground truth, then every method, each normalised to its own maximum (dB scale).
    std::vector<std::vector<float>> truth(keep, std::vector<float>(V));
    std::vector<std::vector<FigureCell>> rows;
    for (int n = 0; n < keep; ++n) {
      for (std::size_t i = 0; i < V; ++i) truth[n][i] = std::abs(m.targets[n * V + i]);
      std::vector<FigureCell> row{FigureCell{fmt::format("frame {}: ground truth", n), truth[n].data()}};
      for (const auto& e : results)
        row.push_back(FigureCell{fmt::format("{} ({:.1f} dB)", e.name, e.frames[n].psnr_db),
                                 e.kept_magnitude.data() + n * V});
      rows.push_back(std::move(row));
    }
    FigureOptions fo;
    fo.title = fmt::format("{}: maximum-intensity projections", o.data);
    write_projection_png(o.png, grid, rows, fo, o.force);
  }
  outputs.commit();
}

}  // namespace

void add_evaluate_command(CLI::App& app) {
  auto o = std::make_shared<EvaluateOptions>();
  CLI::App* c = app.add_subcommand("evaluate", "Score methods against the ground truth of a dataset");
  c->add_option("--data", o->data, "Measurement file with /targets (HDF5, docs/formats.md)")->required();
  c->add_option("--methods,-m", o->methods, "Comma-separated methods: " + method_names())
      ->capture_default_str();
  c->add_option("--system", o->system, "Refuse a dataset whose radar system differs from this named system");
  c->add_option("--freqs,-K", o->freqs, "Frequencies of --system (default: the file's)")
      ->check(CLI::PositiveNumber);
  c->add_option("--frames", o->frames, "Evaluate only the first N frames (0: all)")->capture_default_str();
  c->add_option("--json", o->json, "Write the results as JSON (summaries and per-frame metrics)");
  c->add_option("--csv", o->csv, "Write the per-method summary as CSV");
  c->add_option("--png", o->png, "Write maximum-intensity projections: ground truth beside every method");
  c->add_option("--png-frames", o->png_frames, "Frames shown in the PNG")->capture_default_str();
  c->add_option("--mode", o->mode, "exact | fast (analytic methods)")->capture_default_str();
  c->add_option("--device,-d", o->device, "auto | cpu | cuda")->capture_default_str();
  c->add_option("--batch", o->batch, "Frames per GPU launch")->capture_default_str();
  c->add_option(
      "--model", o->models,
      "Weights file of the learned methods (FILE), or of one of them (METHOD=FILE, METHOD as in --methods, "
      "e.g. deep2s@old=old.h5); repeatable");
  c->add_option("--precision", o->precision,
                "fp32 | tf32 | fp16 | bf16: learned methods on the GPU (default fp16; the CPU runs fp32; per "
                "instance: --param NAME@TAG.precision=P)");
  c->add_option("--param", o->params, "key=value for every method, or method.key=value (repeatable)");
  c->add_flag("--force,-f", o->force, "Replace existing output files");
  c->callback([o] { run(*o); });
}

}  // namespace nfmimo
