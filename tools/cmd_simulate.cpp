// nfmimo simulate --points "x,y,z,a;..." --out FILE [--system paper --freqs K] [--snr DB]
#include <cmath>
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "data/atomic_file.hpp"
#include "data/measurement_file.hpp"
#include "radar/error.hpp"
#include "radar/simulation.hpp"
#include "tools/commands.hpp"

namespace nfmimo {
namespace {

struct SimulateOptions {
  std::string points, output, system = "paper", grid = "paper";
  int freqs = 15;
  double snr_db = NAN;
  std::uint64_t seed = 1;
  bool force = false, snr_given = false;
};

void run(const SimulateOptions& o) {
  if (o.snr_given) check_snr_db(o.snr_db, "--snr");
  OutputSet outputs(o.force);
  outputs.add(o.output, "--out");
  const RadarSystem system = named_system(o.system, o.freqs);
  const ImagingGrid grid = parse_grid(o.grid);
  validate_grid(grid, system, "--grid");
  const auto points = parse_points(o.points);
  MeasurementSet m;
  m.system = system;
  m.grid = grid;
  m.frames = 1;
  m.measurements = point_measurements(system, points);
  if (o.snr_given) {
    add_noise(m.measurements, o.snr_db, o.seed, 0);
    m.snr_db = {static_cast<float>(o.snr_db)};
  }
  // Ground truth on the grid: each point's amplitude at its nearest voxel (exact for points on grid nodes).
  m.targets.assign(grid.voxels(), cfloat(0));
  for (const auto& p : points) {
    auto nearest = [](const Axis& a, double v) {
      const long i = a.size > 1 ? std::lround((v - a.start) / a.step) : 0;
      return i >= 0 && i < a.size ? static_cast<int>(i) : -1;
    };
    const int ix = nearest(grid.x(), p.position.x), iy = nearest(grid.y(), p.position.y),
              iz = nearest(grid.z(), p.position.z);
    if (ix < 0 || iy < 0 || iz < 0) {
      std::fprintf(stderr, "nfmimo: note: point (%g, %g, %g) lies outside the grid; /targets omits it\n",
                   p.position.x, p.position.y, p.position.z);
      continue;
    }
    m.targets[grid.index(ix, iy, iz)] += cfloat(static_cast<float>(p.amplitude));
  }
  write_measurements(o.output, m, {.overwrite = o.force});
  outputs.commit();
  std::printf("simulated %zu point%s with %s%s -> %s\n", points.size(), points.size() == 1 ? "" : "s",
              describe(system).c_str(), !o.snr_given ? "" : fmt::format(", SNR {} dB", o.snr_db).c_str(),
              o.output.c_str());
}

}  // namespace

void add_simulate_command(CLI::App& app) {
  auto o = std::make_shared<SimulateOptions>();
  CLI::App* c =
      app.add_subcommand("simulate", "Simulate measurements of point scatterers (exact Born model)");
  c->add_option("--points", o->points, "\"x,y,z,amplitude;...\" in metres")->required();
  c->add_option("--out,-o", o->output, "Measurement file to write")->required();
  c->add_option("--system", o->system, "Radar system by name")->capture_default_str();
  c->add_option("--freqs,-K", o->freqs, "Number of frequencies (4-16 GHz)")->capture_default_str();
  c->add_option("--snr", o->snr_db, "Add complex white noise at this SNR (dB)");
  c->add_option("--seed", o->seed, "Noise seed")->capture_default_str();
  c->add_option("--grid", o->grid, "Grid stored with the file: 'paper' or 'x0:x1:nx,y0:y1:ny,z0:z1:nz'")
      ->capture_default_str();
  c->add_flag("--force,-f", o->force, "Replace an existing output file");
  c->callback([o, c] {
    o->snr_given = c->count("--snr") > 0;
    run(*o);
  });
}

}  // namespace nfmimo
