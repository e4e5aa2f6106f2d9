// The nfmimo binary end to end: a full run, and every bad-input case of the foundation issue (exit code 2,
// one clear message naming the file and dataset, no output left behind).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/hdf5.hpp"
#include "data/measurement_file.hpp"
#include "radar/simulation.hpp"
#include "tests/cli_util.hpp"
#include "tests/test_util.hpp"

namespace nfmimo {
namespace {

using test::run_cli;
using test::ScratchDir;

TEST(Cli, HelpAndVersion) {
  for (const char* args : {"--help", "reconstruct --help", "simulate --help", "info --help", "--version"}) {
    const auto r = run_cli(args);
    EXPECT_EQ(r.exit_code, 0) << args << ": " << r.output;
  }
  EXPECT_NE(run_cli("--help").output.find("reconstruct"), std::string::npos);
  EXPECT_EQ(run_cli("").exit_code, 2);  // a subcommand is required
}

TEST(Cli, SimulateReconstructEndToEnd) {
  ScratchDir dir;
  // Three point targets exactly on grid nodes of the paper grid.
  auto r = run_cli("simulate --points \"0,0,0.5,1;0.05,-0.05,0.45,0.7;-0.1,0.05,0.6,0.5\" --freqs 15 --out " +
                   (dir / "p.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* method : {"adjoint", "backprojection", "kirchhoff"}) {
    const std::string out = dir / (std::string(method) + ".h5");
    r = run_cli("reconstruct " + (dir / "p.h5") + " --method " + method + " --device auto --out " + out +
                " --png " + (dir / (std::string(method) + ".png")) + " --vti " +
                (dir / (std::string(method) + ".vti")));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const VolumeSet v = read_volumes(out);
    const ImagingGrid g = ImagingGrid::paper();
    const auto peak = std::max_element(v.magnitude.begin(), v.magnitude.end()) - v.magnitude.begin();
    EXPECT_EQ(static_cast<std::size_t>(peak), g.index(12, 12, 24))
        << method;  // the strongest point (0, 0, 0.5)
  }
  r = run_cli("info " + (dir / "kirchhoff.h5"));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("kirchhoff"), std::string::npos);
  // The fast mode of the adjoint gives the same image within its accuracy.
  r = run_cli("reconstruct " + (dir / "p.h5") + " --mode fast --out " + (dir / "fast.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const VolumeSet exact = read_volumes(dir / "adjoint.h5"), fast = read_volumes(dir / "fast.h5");
  EXPECT_TRUE(test::relative_error_below(fast.magnitude, exact.magnitude, 1e-3));
}

TEST(Cli, ComplexOutputAndOverwriteRules) {
  ScratchDir dir;
  ASSERT_EQ(run_cli("simulate --points \"0,0,0.5,1\" --freqs 5 --out " + (dir / "p.h5")).exit_code, 0);
  auto r = run_cli("reconstruct " + (dir / "p.h5") + " --complex --out " + (dir / "c.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(read_volumes(dir / "c.h5").complex.empty());
  r = run_cli("reconstruct " + (dir / "p.h5") + " --out " + (dir / "c.h5"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("already exists"), std::string::npos);
  EXPECT_EQ(run_cli("reconstruct " + (dir / "p.h5") + " --force --out " + (dir / "c.h5")).exit_code, 0);
  r = run_cli("reconstruct " + (dir / "p.h5") + " --force --out " + (dir / "p.h5"));
  EXPECT_EQ(r.exit_code, 2) << "the input must never be overwritten";
  EXPECT_NO_THROW(read_measurements(dir / "p.h5"));
}

// Writes a valid one-frame file, then lets `corrupt` break it.
void make_file(const std::string& path, const std::function<void(h5::File&)>& corrupt) {
  MeasurementSet m;
  m.system = paper_system(5);
  m.grid = ImagingGrid::paper();
  m.frames = 1;
  m.measurements = point_measurements(m.system, {{{0, 0, 0.5}, 1.0}});
  write_measurements(path, m);
  h5::File f(path, h5::File::Mode::ReadWrite);
  corrupt(f);
}

struct BadCase {
  std::string name;
  std::function<void(h5::File&)> corrupt;
  std::string expected;  // part of the message
  std::string args = "";
};

TEST(Cli, BadInputsGiveOneClearMessageAndNoOutput) {
  const std::vector<BadCase> cases = {
      {"missing_format", [](h5::File& f) { H5Adelete(f.id(), "nfmimo_format"); }, "nfmimo_format"},
      {"missing_measurements", [](h5::File& f) { H5Ldelete(f.id(), "/measurements", H5P_DEFAULT); },
       "dataset '/measurements': missing"},
      {"misnamed_measurements",
       [](h5::File& f) {
         H5Lmove(f.id(), "/measurements", f.id(), "/measurement", H5P_DEFAULT, H5P_DEFAULT);
       },
       "dataset '/measurements': missing"},
      {"missing_frequencies", [](h5::File& f) { H5Ldelete(f.id(), "/system/frequencies", H5P_DEFAULT); },
       "dataset '/system/frequencies'"},
      {"wrong_rank",
       [](h5::File& f) {
         std::vector<cfloat> v(5 * 156);
         f.write<cfloat>("/measurements", {5, 156}, v.data());
       },
       "has rank 2"},
      {"k_disagrees",
       [](h5::File& f) {
         std::vector<cfloat> v(4 * 156, cfloat(1));
         f.write<cfloat>("/measurements", {1, 4, 12, 13}, v.data());
       },
       "K=5"},
      {"real_measurements",
       [](h5::File& f) {
         std::vector<float> v(5 * 156, 1.f);
         f.write<float>("/measurements", {1, 5, 12, 13}, v.data());
       },
       "compound {r, i}"},
      {"non_finite",
       [](h5::File& f) {
         std::vector<cfloat> v(5 * 156, cfloat(1));
         v[17] = cfloat(NAN, 0);
         f.write<cfloat>("/measurements", {1, 5, 12, 13}, v.data());
       },
       "element 17 is not finite"},
      {"negative_frequency",
       [](h5::File& f) {
         std::vector<double> fr = {-4e9, 7e9, 10e9, 13e9, 16e9};
         f.write("/system/frequencies", fr);
       },
       "frequency 0 is -4000000000 Hz"},
      {"positions_shape",
       [](h5::File& f) {
         std::vector<double> p(12 * 2, 0.1);
         f.write<double>("/system/tx_positions", {12, 2}, p.data());
       },
       "expected [count, 3]"},
      {"grid_on_antenna",
       [](h5::File& f) {
         // TX 0 of the paper array sits at (-0.15, 0.15, 0), a node of this grid.
         f.write("/grid/z", std::vector<double>{0.0, 0.1, 0.2});
       },
       "a grid point lies on transmitter 0"},
      {"non_uniform_grid",
       [](h5::File& f) {
         f.write("/grid/z", std::vector<double>{0.3, 0.4, 0.45});
       },
       "not uniformly spaced"},
      {"unknown_method", [](h5::File&) {}, "unknown method 'magic'", "--method magic"},
      {"fast_mode_kirchhoff", [](h5::File&) {}, "fast mode supports", "--method kirchhoff --mode fast"},
      {"bad_device", [](h5::File&) {}, "unknown device", "--device tpu"},
  };
  for (const BadCase& c : cases) {
    ScratchDir dir;
    const std::string in = dir / (c.name + ".h5");
    make_file(in, c.corrupt);
    const std::size_t before = dir.file_count();
    const auto r = run_cli("reconstruct " + in + " --out " + (dir / "out.h5") + " --png " +
                           (dir / "out.png") + " " + c.args);
    EXPECT_EQ(r.exit_code, 2) << c.name << ": " << r.output;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << c.name << ": got '" << r.output << "'";
    if (c.args.empty()) {
      EXPECT_NE(r.output.find(in), std::string::npos) << c.name << ": the message must name the file";
    }
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1)
        << c.name << ": one message: " << r.output;
    EXPECT_EQ(dir.file_count(), before) << c.name << ": an output file was left behind";
  }
}

TEST(Cli, MissingAndNonHdf5Files) {
  ScratchDir dir;
  auto r = run_cli("reconstruct " + (dir / "nope.h5") + " --out " + (dir / "o.h5"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("nope.h5: no such file"), std::string::npos) << r.output;
  std::ofstream(dir / "text.h5") << "not hdf5";
  r = run_cli("reconstruct " + (dir / "text.h5") + " --out " + (dir / "o.h5"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("text.h5: not an HDF5 file"), std::string::npos) << r.output;
  r = run_cli("info " + (dir / "text.h5"));
  EXPECT_EQ(r.exit_code, 2);
  r = run_cli("simulate --points \"0,0,zero,1\" --out " + (dir / "s.h5"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("'zero'"), std::string::npos) << r.output;
  EXPECT_EQ(dir.file_count(), 1u);  // only text.h5
}

// The benchmark harness in quick mode: a complete JSON report whose every row was checked against the
// reference, so a fast but wrong kernel cannot pass unnoticed.
TEST(Cli, BenchQuickModeReportIsCompleteAndChecked) {
  ScratchDir dir;
  const auto r = run_cli(
      "bench --quick --device cpu --batch 1,2 --freqs 5 --methods adjoint,kirchhoff,forward --modes "
      "exact,fast --json " +
      (dir / "b.json") + " --csv " + (dir / "b.csv"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream f(dir / "b.json");
  const auto j = nlohmann::json::parse(f);
  for (const char* key : {"cpu", "threads", "compiler", "git_commit", "date"})
    EXPECT_TRUE(j["environment"].contains(key)) << key;
  EXPECT_GT(j["ceilings"]["cpu"]["flops_per_s"].get<double>(), 1e9);
  EXPECT_GT(j["ceilings"]["cpu"]["bytes_per_s"].get<double>(), 1e8);
  // adjoint exact+fast, kirchhoff exact, forward: 4 operations x 2 batches.
  ASSERT_EQ(j["rows"].size(), 8u);
  for (const auto& row : j["rows"]) {
    for (const char* key : {"op", "mode", "device", "batch", "latency_ms", "us_per_volume", "volumes_per_s",
                            "floor_us_per_volume", "times_floor", "check"})
      EXPECT_TRUE(row.contains(key)) << key;
    EXPECT_GT(row["us_per_volume"].get<double>(), 0);
    EXPECT_GT(row["floor_us_per_volume"].get<double>(), 0);
    EXPECT_TRUE(row["check"]["passed"].get<bool>()) << row.dump();
    EXPECT_GT(row["check"]["relative_error"].get<double>(), 0)
        << "a zero error means the check compared nothing";
  }
}

// The learned rows in quick mode: networks, pipelines and a training step (narrow networks, so that every CPU
// row is checked against the double reference), complete and correct.
TEST(Cli, BenchQuickModeLearnedRowsAreCompleteAndChecked) {
  ScratchDir dir;
  const auto r =
      test::run_command("OMP_NUM_THREADS=1 " + std::string(NFMIMO_BINARY_PATH) +
                        " bench --quick --device cpu --batch 1,2 --freqs 5 --methods unet3d,deep2s,cv-deep2s,"
                        "train-resnet --modes exact --width 2 --train-batch 2 --precision fp32 --json " +
                        (dir / "b.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream f(dir / "b.json");
  const auto j = nlohmann::json::parse(f);
  // unet3d, deep2s, cv-deep2s at 2 batches, one training step.
  ASSERT_EQ(j["rows"].size(), 7u);
  for (const auto& row : j["rows"]) {
    EXPECT_GT(row["us_per_volume"].get<double>(), 0);
    EXPECT_GT(row["flops_per_volume"].get<double>(), 0);
    EXPECT_GT(row["floor_us_per_volume"].get<double>(), 0);
    EXPECT_TRUE(row["check"]["passed"].get<bool>()) << row.dump();
    EXPECT_GT(row["check"]["relative_error"].get<double>(), 0) << row.dump();
  }
  EXPECT_EQ(j["rows"][6]["op"], "train-resnet");
  // An unknown row name is refused with the list of known ones.
  const auto q =
      run_cli("bench --quick --device cpu --batch 1 --freqs 5 --methods unet9d --json " + (dir / "c.json"));
  EXPECT_EQ(q.exit_code, 2) << q.output;
  EXPECT_NE(q.output.find("unknown 'unet9d'"), std::string::npos) << q.output;
}

}  // namespace
}  // namespace nfmimo
