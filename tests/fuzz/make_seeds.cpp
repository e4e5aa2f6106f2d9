// Writes the seed corpora of the fuzz harnesses into DIR/<harness>/: small valid files made by the project's
// own writers (a 2-frequency, 2 x 2 antenna system and a small grid, so that one execution stays fast),
// damaged copies of them (truncated, header only), and valid and hostile option texts. tools/scripts/fuzz.sh
// runs it; the probe's hostile files (tools/scripts/probe.py --keep-inputs) can be added to the same folders.
//   fuzz_make_seeds DIR
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "data/measurement_file.hpp"
#include "models/weights.hpp"
#include "radar/error.hpp"
#include "radar/simulation.hpp"
#include "synthesizer/dataset.hpp"
#include "synthesizer/scene.hpp"

namespace fs = std::filesystem;
using namespace nfmimo;

namespace {

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Valid file plus damaged copies: the first half, and the first 512 bytes (superblock and little else).
void add_damaged_copies(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_text(file.string() + ".half", bytes.substr(0, bytes.size() / 2));
  write_text(file.string() + ".head", bytes.substr(0, std::min<std::size_t>(512, bytes.size())));
}

RadarSystem small_system() {
  RadarSystem s;
  s.array = ArrayGeometry({{-0.05, -0.05, 0}, {0.05, 0.05, 0}}, {{-0.05, 0.05, 0}, {0.05, -0.05, 0}});
  s.sweep = FrequencySweep::linspace(4e9, 16e9, 2);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_make_seeds DIR\n");
    return 2;
  }
  const fs::path dir = argv[1];
  for (const char* h : {"measurements", "dataset", "weights", "points", "grid", "param", "synth_config"})
    fs::create_directories(dir / h);
  try {
    const RadarSystem system = small_system();
    const ImagingGrid grid(Axis::linspace(-0.1, 0.1, 4), Axis::linspace(-0.1, 0.1, 4),
                           Axis::linspace(0.4, 0.6, 4));

    MeasurementSet m;
    m.system = system;
    m.grid = grid;
    m.frames = 1;
    m.measurements = point_measurements(system, {{{0, 0, 0.5}, 1}});
    m.targets.assign(grid.voxels(), cfloat(0));
    m.targets[grid.voxels() / 2] = 1;
    m.snr_db = {30};
    write_measurements((dir / "measurements/valid.h5").string(), m, {.overwrite = true});
    add_damaged_copies(dir / "measurements/valid.h5");
    m.single_frame = true;
    m.targets.clear();
    m.snr_db.clear();
    write_measurements((dir / "measurements/single_frame.h5").string(), m, {.overwrite = true});

    VolumeSet v;
    v.grid = grid;
    v.frames = 1;
    v.magnitude.assign(grid.voxels(), 0.5f);
    v.method = "adjoint";
    v.source = "seed";
    v.device = "cpu";
    write_volumes((dir / "measurements/volume.h5").string(), v, true);

    DatasetSpec spec;
    spec.config.supersampling = 1;
    spec.config.max_objects = 2;
    spec.seed = 7;
    spec.count = 2;
    spec.system = system;
    spec.grid = grid;
    DatasetRunOptions run;
    run.output = (dir / "dataset/valid.h5").string();
    run.force = true;
    run.batch = 2;
    run.device = DeviceKind::Cpu;
    synthesize_dataset(spec, run);
    add_damaged_copies(dir / "dataset/valid.h5");
    run.output = (dir / "dataset/partial.h5").string();
    run.stop_after = 1;
    synthesize_dataset(spec, run);  // leaves partial.h5.partial: an incomplete dataset

    // Small networks on an 8^3 grid (the U-Nets need a few levels of pooling).
    const ImagingGrid net_grid(Axis::linspace(-0.1, 0.1, 8), Axis::linspace(-0.1, 0.1, 8),
                               Axis::linspace(0.4, 0.6, 8));
    for (const std::string arch : {"unet3d", "unet2d", "resnet", "cv-unet3d", "deepdi", "deep2s-plus"}) {
      try {
        const auto model = nn::make_model(arch, system, net_grid, {.width = 2, .blocks = 1});
        nn::write_model((dir / ("weights/" + arch + ".h5")).string(), model, true);
      } catch (const Error& e) {
        std::fprintf(stderr, "fuzz_make_seeds: no %s seed: %s\n", arch.c_str(), e.what());
      }
    }
    if (fs::exists(dir / "weights/resnet.h5")) add_damaged_copies(dir / "weights/resnet.h5");

    const std::vector<std::string> points = {"0,0,0.5,1",
                                             "0,0,0.5,1;0.05,-0.05,0.45,0.7",
                                             " 1e-3 , -2E-2,0.4,0.5 ;",
                                             "nan,0,0.5,1",
                                             "1e999,0,0.5,1",
                                             "0,0,0.5",
                                             "0,0,0.5,1,2",
                                             ";;;",
                                             "",
                                             "0x1p-3,0,0.5,1",
                                             "inf,0,0,1"};
    const std::vector<std::string> grids = {"paper",
                                            "-0.15:0.15:25,-0.15:0.15:25,0.35:0.65:49",
                                            "0:0:1,0:0:1,0.5:0.5:1",
                                            "0:1:0,0:1:1,0:1:1",
                                            "1:0:3,0:1:2,0:1:2",
                                            "0:1:2147483647,0:1:2,0:1:2",
                                            "0:1:2,0:1:2",
                                            "nan:1:2,0:1:2,0:1:2",
                                            "0:0:2,0:1:2,0:1:2"};
    const std::vector<std::string> params = {"l1\nlambda=0.01\niterations=10",
                                             "tv\nlambda=1e-3\ntv_iterations=5\nl1_weight=0.1\naccel=fista",
                                             "pnp\nrho=0.5\ncg_iterations=3\ncg_tol=1e-6\ntol=1e-4",
                                             "\nl1.lambda=nan\ntv.iterations=-1",
                                             "l1\niterations=99999999999999999999",
                                             "deep2s\nprecision=fp16",
                                             "l1\nlambda=1e308\ntol=0",
                                             "adjoint\nfoo=1"};
    const std::vector<std::string> configs = {
        "{}",
        scene_config_json(SceneConfig{}),
        R"({"objects": {"min": 2, "max": 1}})",
        R"({"objects": 3, "types": ["ellipsoid", "plate"], "size_m": [0.01, 0.05], "phase": "constant"})",
        R"({"types": {"ellipsoid": 2, "cuboid": 0, "cylinder": 1, "plate": 0, "point": 1}})",
        R"({"supersampling": 1000000})",
        R"({"snr_db": "none", "smooth_magnitude": 0.5, "plate_thickness_voxels": {"min": 1, "max": 3}})",
        R"({"snr_db": {"min": 40, "max": 20}})",
        R"({"magnitude": {"min": 0, "max": 2}})",
        R"({"unknown": 1})",
        "[",
        "// comment\n{\"objects\": 1e999}",
        R"({"size_m": {"min": -1e308, "max": 1e308}})"};
    auto write_all = [&](const char* harness, const std::vector<std::string>& texts) {
      for (std::size_t i = 0; i < texts.size(); ++i)
        write_text(dir / harness / ("seed" + std::to_string(i)), texts[i]);
    };
    write_all("points", points);
    write_all("grid", grids);
    write_all("param", params);
    write_all("synth_config", configs);
  } catch (const Error& e) {
    std::fprintf(stderr, "fuzz_make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
