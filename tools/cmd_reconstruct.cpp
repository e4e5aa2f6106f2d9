// nfmimo reconstruct IN --out OUT [--method ...] [--device ...] [--png P] [--vti V]
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "data/atomic_file.hpp"
#include "data/measurement_file.hpp"
#include "data/viewer.hpp"
#include "radar/error.hpp"
#include "tools/methods.hpp"
#include "tools/commands.hpp"

namespace nfmimo {
namespace {

struct ReconstructOptions {
  std::string input, output, method = "adjoint", mode = "exact", device = "auto", png, vti, grid, model,
                             precision;
  std::vector<std::string> params;
  bool complex = false, force = false;
  int batch = 64;
};

std::map<std::string, std::string> parse_params(const std::vector<std::string>& params) {
  std::map<std::string, std::string> out;
  for (const auto& p : params) {
    const auto eq = p.find('=');
    require(eq != std::string::npos && eq > 0, fmt::format("--param '{}' is not key=value", p));
    require(!out.count(p.substr(0, eq)),
            fmt::format("--param '{}': '{}' is given twice; give each parameter once", p, p.substr(0, eq)));
    out[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return out;
}

void run(const ReconstructOptions& o) {
  // The outputs are one set: checked (folders, overwrite rule, collisions, locks) before any work, and
  // renamed into place together once all of them are written, so a failure leaves none of them behind.
  OutputSet outputs(o.force);
  outputs.add(o.output, "--out", {o.input, o.model});
  outputs.add(o.png, "--png", {o.input, o.model});
  outputs.add(o.vti, "--vti", {o.input, o.model});
  require(o.batch >= 1 && o.batch <= 65536, fmt::format("--batch must be in 1..65536 (got {})", o.batch));
  // Options that the chosen method would silently ignore are refused: they are a mistake the user should see.
  const bool learned = is_learned_method(o.method);
  if (!is_tunable_method(o.method))
    for (const auto& [key, value] : parse_params(o.params))
      require(learned && key == "precision",
              fmt::format("--param {}={}: method '{}' has no parameter '{}'{}", key, value, o.method, key,
                          learned ? " (learned methods take precision)" : " (it takes no --param)"));
  require(
      o.precision.empty() || learned,
      fmt::format("--precision: method '{}' runs no network; drop --precision, or choose a learned method",
                  o.method));
  if (!learned && o.method != "pnp")  // pnp's --model is its denoiser
    require(o.model.empty(),
            fmt::format("--model: method '{}' uses no weights; drop --model, or choose a learned method",
                        o.method));
  MeasurementSet m = read_measurements(o.input, {.load_targets = false});
  ImagingGrid grid;
  if (!o.grid.empty())
    grid = parse_grid(o.grid);
  else if (m.grid)
    grid = *m.grid;
  else
    grid = ImagingGrid::paper();
  validate_grid(grid, m.system, o.grid.empty() ? o.input + ": /grid" : "--grid");

  MethodContext context;
  context.system = &m.system;
  context.grid = &grid;
  context.measurements = m.measurements.data();
  context.frames = m.frames;
  context.device = parse_device(o.device);
  context.mode = o.mode;
  context.batch = o.batch;
  context.model = o.model;
  context.precision = o.precision;
  context.params = parse_params(o.params);

  const auto t0 = std::chrono::steady_clock::now();
  MethodResult result = run_method(o.method, context);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const std::size_t V = grid.voxels();

  VolumeSet v;
  v.grid = grid;
  v.frames = m.frames;
  v.method = result.label;
  v.source = std::filesystem::absolute(o.input).string();
  v.device = result.device;
  v.extra_json = result.extra_json;
  if (o.complex) {
    require(!result.complex.empty(),
            fmt::format("--complex: method '{}' produces magnitudes only", o.method));
    v.complex = result.complex;
  } else {
    v.magnitude = result.magnitude;
  }
  write_volumes(o.output, v, o.force);
  const std::vector<float>& mag = result.magnitude;
  if (!o.png.empty()) {
    std::vector<std::vector<FigureCell>> rows;
    const int shown = std::min(m.frames, 8);
    for (int n = 0; n < shown; ++n)
      rows.push_back({FigureCell{fmt::format("frame {}: {}", n, v.method), mag.data() + n * V}});
    FigureOptions fo;
    fo.title = fmt::format("{} - {}", std::filesystem::path(o.input).filename().string(), v.method);
    write_projection_png(o.png, grid, rows, fo, o.force);
  }
  if (!o.vti.empty()) {
    std::vector<const float*> frames;
    for (int n = 0; n < m.frames; ++n) frames.push_back(mag.data() + n * V);
    write_vti(o.vti, grid, frames, "magnitude", o.force);
  }
  outputs.commit();
  std::printf("reconstructed %d frame%s with %s on %s in %.1f ms (%.3f ms/frame) -> %s\n", m.frames,
              m.frames == 1 ? "" : "s", v.method.c_str(), v.device.c_str(), ms, ms / m.frames,
              o.output.c_str());
}

}  // namespace

void add_reconstruct_command(CLI::App& app) {
  auto o = std::make_shared<ReconstructOptions>();
  CLI::App* c = app.add_subcommand("reconstruct", "Reconstruct volumes from a measurement file");
  c->add_option("input", o->input, "Measurement file (HDF5, docs/formats.md)")->required();
  c->add_option("--out,-o", o->output, "Volume file to write (HDF5)")->required();
  c->add_option("--method,-m", o->method, "Method: " + method_names())->capture_default_str();
  c->add_option("--mode", o->mode, "exact | fast (FFT range compression; uniform sweeps)")
      ->capture_default_str();
  c->add_option("--device,-d", o->device, "auto | cpu | cuda")->capture_default_str();
  c->add_option("--png", o->png, "Also write maximum-intensity projections in dB (PNG)");
  c->add_option("--vti", o->vti, "Also write a VTK image file for ParaView");
  c->add_option(
      "--grid", o->grid,
      "Imaging grid 'x0:x1:nx,y0:y1:ny,z0:z1:nz' (m) or 'paper'; default: the file's /grid, else paper");
  c->add_option("--batch", o->batch, "Frames per GPU launch")->capture_default_str();
  c->add_option("--model", o->model, "Weights file of a learned method");
  c->add_option("--precision", o->precision,
                "fp32 | tf32 | fp16 | bf16: learned methods on the GPU (default fp16; the CPU runs fp32)")
      ->check(CLI::IsMember({"fp32", "tf32", "fp16", "bf16"}));
  c->add_option("--param", o->params, "Method-specific option key=value (repeatable)");
  c->add_flag("--complex", o->complex, "Store complex volumes instead of magnitudes");
  c->add_flag("--force,-f", o->force, "Replace existing output files");
  c->callback([o] { run(*o); });
}

}  // namespace nfmimo
