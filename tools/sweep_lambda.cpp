// nfmimo_sweep_lambda: picks the regularisation weights of the iterative methods by a sweep on a validation
// set (the rule recorded in docs/iterative.md). A developer tool, not part of the `nfmimo` binary.
//
//   nfmimo_sweep_lambda [--data VAL.h5 | --scenes 8 --seed 7001 --freqs 15 --snr 30] --methods l1,tv
//                       --lambdas 0.003,0.01,0.03,0.1,0.3 [--csv S.csv] [--save-scenes VAL.h5]
//   nfmimo_sweep_lambda ... --methods pnp --model DENOISER.h5 --lambdas 0.01,0.03,0.1,0.3
//
// The swept weight is each method's relative weight: lambda for l1 and tv, rho for pnp (the CSV column
// lambda_rel holds it).
//
// Without --data it makes its own validation scenes (below) with a seed that no test set uses. Each (method,
// weight) runs through the method table, exactly as `nfmimo reconstruct/evaluate` would run it.
#include <cstdio>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/atomic_file.hpp"
#include "data/measurement_file.hpp"
#include "kernels/imager.hpp"
#include "radar/error.hpp"
#include "radar/random.hpp"
#include "radar/simulation.hpp"
#include "tools/evaluation.hpp"

namespace nfmimo {
namespace {

// Validation scenes: 1-3 cuboids per scene, each 1-5 voxels along every axis, centred at random inside the
// grid, with a magnitude drawn from U(0.5, 1) per object and an independent uniform phase per voxel (rough
// surfaces: the reason the methods regularise the magnitude). Measured with the float forward operator, then
// complex white noise at the SNR (the same model as the reconstruction: fine for choosing a weight,
// optimistic for absolute quality).
MeasurementSet make_scenes(const RadarSystem& system, const ImagingGrid& grid, int count, std::uint64_t seed,
                           double snr_db) {
  const std::size_t V = grid.voxels(), S = system.samples_per_frame();
  MeasurementSet m;
  m.system = system;
  m.grid = grid;
  m.frames = count;
  m.targets.assign(V * count, cfloat(0));
  m.measurements.resize(S * count);
  m.snr_db.assign(count, static_cast<float>(snr_db));
  const int n[3] = {grid.x().size, grid.y().size, grid.z().size};
  for (int s = 0; s < count; ++s) {
    const RandomStream rng(seed, s);
    std::uint64_t draw = 0;
    cfloat* x = m.targets.data() + s * V;
    const int objects = 1 + static_cast<int>(3 * rng.uniform(draw++));
    for (int o = 0; o < objects; ++o) {
      int lo[3], hi[3];
      for (int a = 0; a < 3; ++a) {
        const int half = static_cast<int>(3 * rng.uniform(draw++));  // 0..2: extent 1..5 voxels
        const int c = half + static_cast<int>((n[a] - 2 * half) * rng.uniform(draw++));
        lo[a] = std::max(0, c - half);
        hi[a] = std::min(n[a] - 1, c + half);
      }
      const double magnitude = 0.5 + 0.5 * rng.uniform(draw++);
      for (int ix = lo[0]; ix <= hi[0]; ++ix)
        for (int iy = lo[1]; iy <= hi[1]; ++iy)
          for (int iz = lo[2]; iz <= hi[2]; ++iz) {
            const std::size_t v = grid.index(ix, iy, iz);
            const double phase = kTwoPi * RandomStream(seed ^ 0x9e3779b97f4a7c15ull, s).uniform(v);
            x[v] = std::polar(static_cast<float>(magnitude), static_cast<float>(phase));
          }
    }
  }
  const Imager imager(system, grid, DeviceKind::Auto, 16);
  imager.forward(m.targets.data(), m.measurements.data(), count);
  for (int s = 0; s < count; ++s)
    add_noise(std::span<cfloat>(m.measurements.data() + s * S, S), snr_db, seed + 1,
              static_cast<std::uint64_t>(s));
  return m;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream s(text);
  std::string item;
  while (std::getline(s, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

struct SweepOptions {
  std::string data, methods = "l1,tv", lambdas = "0.003,0.01,0.03,0.1,0.3", csv, save, device = "auto", model;
  std::vector<std::string> params;
  int scenes = 8, freqs = 15, iterations = 0;
  double snr = 30;
  std::uint64_t seed = 7001;
  bool force = false;
};

void run(const SweepOptions& o) {
  MeasurementSet m;
  if (!o.data.empty()) {
    m = read_measurements(o.data, {.load_targets = true});
    require(!m.targets.empty(), fmt::format("{}: no /targets dataset", o.data));
  } else {
    m = make_scenes(paper_system(o.freqs), ImagingGrid::paper(), o.scenes, o.seed, o.snr);
    if (!o.save.empty()) write_measurements(o.save, m, {.overwrite = o.force});
  }
  const ImagingGrid grid = *m.grid;
  MethodContext c;
  c.system = &m.system;
  c.grid = &grid;
  c.measurements = m.measurements.data();
  c.frames = m.frames;
  c.device = parse_device(o.device);
  c.model = o.model;

  std::string csv =
      "method,lambda_rel,frames,psnr_db_mean,psnr_db_std,ssim_3d_mean,ssim_2d_mean,nmse_mean,"
      "mean_iterations,seconds\n";
  std::printf("%d scenes, %s\n%-8s %10s %16s %9s %9s %9s %8s %8s\n", m.frames, describe(m.system).c_str(),
              "method", "lambda", "PSNR dB", "SSIM3D", "SSIM2D", "NMSE", "iters", "s");
  auto report = [&](const std::string& name, const std::string& lambda, const MethodEvaluation& e) {
    double iterations = 0;
    if (!e.extra_json.empty()) {
      const auto j = nlohmann::json::parse(e.extra_json);
      for (const auto& f : j["frames"]) iterations += f["iterations"].get<double>();
      iterations /= m.frames;
    }
    std::printf("%-8s %10s %7.2f +- %5.2f %9.4f %9.4f %9.4f %8.1f %8.1f\n", name.c_str(), lambda.c_str(),
                e.psnr().mean, e.psnr().std, e.ssim_3d().mean, e.ssim_2d().mean, e.nmse().mean, iterations,
                e.seconds);
    std::fflush(stdout);
    csv += fmt::format("{},{},{},{:.4f},{:.4f},{:.5f},{:.5f},{:.5f},{:.1f},{:.2f}\n", name, lambda, m.frames,
                       e.psnr().mean, e.psnr().std, e.ssim_3d().mean, e.ssim_2d().mean, e.nmse().mean,
                       iterations, e.seconds);
  };
  report("adjoint", "-", evaluate_method("adjoint", c, m.targets));
  for (const auto& name : split(o.methods))
    for (const auto& lambda : split(o.lambdas)) {
      std::map<std::string, std::string> all;
      for (const auto& p : o.params) {
        const auto eq = p.find('=');
        require(eq != std::string::npos, fmt::format("--param '{}' is not key=value", p));
        all[p.substr(0, eq)] = p.substr(eq + 1);
      }
      c.params = params_for_method(name, all);
      c.params[name == "pnp" ? "rho" : "lambda"] = lambda;
      if (o.iterations > 0) c.params["iterations"] = std::to_string(o.iterations);
      report(name, lambda, evaluate_method(name, c, m.targets));
    }
  if (!o.csv.empty()) {
    AtomicOutput out(o.csv, o.force);
    write_file_checked(out.temporary_path(), csv, o.csv);
    out.commit();
  }
}

}  // namespace
}  // namespace nfmimo

int main(int argc, char** argv) {
  CLI::App app{"Sweep of the iterative methods' regularisation weights on a validation set"};
  nfmimo::SweepOptions o;
  app.add_option("--data", o.data, "Validation measurement file with /targets (default: generated scenes)");
  app.add_option("--scenes", o.scenes, "Generated scenes")->capture_default_str();
  app.add_option("--seed", o.seed, "Seed of the generated scenes")->capture_default_str();
  app.add_option("--freqs,-K", o.freqs, "Frequencies of the paper system for generated scenes")
      ->capture_default_str();
  app.add_option("--snr", o.snr, "SNR of generated scenes (dB)")->capture_default_str();
  app.add_option("--methods", o.methods, "Methods to sweep")->capture_default_str();
  app.add_option("--lambdas", o.lambdas, "Relative weights (lambda; rho for pnp)")->capture_default_str();
  app.add_option("--model", o.model, "The denoiser of pnp (nfmimo train --arch denoiser)");
  app.add_option("--iterations", o.iterations, "Iteration limit (0: the method's default)");
  app.add_option("--param", o.params, "Further key=value or method.key=value (repeatable)");
  app.add_option("--device,-d", o.device, "auto | cpu | cuda")->capture_default_str();
  app.add_option("--csv", o.csv, "Write the table as CSV");
  app.add_option("--save-scenes", o.save, "Also write the generated validation set (for nfmimo evaluate)");
  app.add_flag("--force,-f", o.force, "Replace existing files");
  try {
    app.parse(argc, argv);
    nfmimo::run(o);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const nfmimo::Error& e) {
    std::fprintf(stderr, "nfmimo_sweep_lambda: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
