// The iterative methods and `nfmimo evaluate` through the real binary: results, stored weights, and bad
// options or bad datasets refused with exit code 2, a clear message and no output file.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/measurement_file.hpp"
#include "radar/cpu_operator.hpp"
#include "tools/evaluation.hpp"

namespace nfmimo {
namespace {

namespace fs = std::filesystem;

struct CommandResult {
  int code = -1;
  std::string output;  // stdout and stderr
};

CommandResult run_nfmimo(const std::string& args) {
  // Tiny problems: one thread avoids slow spinning barriers on shared cores.
  const std::string cmd = "OMP_NUM_THREADS=1 " + std::string(NFMIMO_BINARY_PATH) + " " + args + " 2>&1";
  CommandResult r;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    while (std::fgets(buf, sizeof buf, p)) r.output += buf;
    const int status = ::pclose(p);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  return r;
}

// A small dataset: 6 TX x 7 RX cross array, 8 frequencies, 9 x 9 x 7 grid, three noiseless sparse scenes.
class CliIterative : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("nfmimo_cli_iter_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    MeasurementSet m;
    m.system = RadarSystem{ArrayGeometry::paper_cross(6, 7, 0.15), FrequencySweep::linspace(4e9, 16e9, 8)};
    m.grid = ImagingGrid(Axis::linspace(-0.08, 0.08, 9), Axis::linspace(-0.08, 0.08, 9),
                         Axis::linspace(0.4, 0.49, 7));
    m.frames = 3;
    const std::size_t V = m.grid->voxels(), S = m.system.samples_per_frame();
    m.targets.assign(V * m.frames, cfloat(0));
    for (int n = 0; n < m.frames; ++n) {
      m.targets[n * V + m.grid->index(2 + n, 3, 1)] = {1.0f, 0.0f};
      m.targets[n * V + m.grid->index(6, 6 - n, 4)] = {0.0f, -0.8f};
      m.targets[n * V + m.grid->index(4, 1, 5 - n)] = {0.6f, 0.6f};
    }
    m.measurements.resize(S * m.frames);
    CpuOperator(m.system, *m.grid).forward(m.targets.data(), m.measurements.data(), m.frames);
    write_measurements(path("data.h5"), m);
    m.targets.clear();
    write_measurements(path("no_targets.h5"), m);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A refused run: exit code 2, the message names what is wrong, and `output` was not created.
  void expect_refused(const std::string& args, const std::string& message, const std::string& output) {
    const CommandResult r = run_nfmimo(args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << "expected '" << message << "' in:\n" << r.output;
    EXPECT_FALSE(fs::exists(output)) << output;
  }

  fs::path dir_;
};

TEST_F(CliIterative, ReconstructsAndStoresTheWeights) {
  for (const std::string method : {"l1", "tv"}) {
    const std::string out = path(method + ".h5");
    const CommandResult r = run_nfmimo("reconstruct " + path("data.h5") + " -o " + out + " -m " + method +
                                       " --device cpu --param lambda=0.02 --param iterations=50");
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("lambda_rel 0.02"), std::string::npos) << r.output;
    const VolumeSet v = read_volumes(out);
    EXPECT_EQ(v.frames, 3);
    const auto details = nlohmann::json::parse(v.extra_json);
    EXPECT_EQ(details["method"], method);
    EXPECT_DOUBLE_EQ(details["lambda_rel"].get<double>(), 0.02);
    ASSERT_EQ(details["frames"].size(), 3u);
    EXPECT_GT(details["frames"][0]["lambda"].get<double>(), 0);
    EXPECT_LE(details["frames"][0]["iterations"].get<int>(), 50);
  }
}

TEST_F(CliIterative, RefusesBadOptions) {
  const std::string in = path("data.h5"), out = path("out.h5");
  const std::string base = "reconstruct " + in + " -o " + out + " --device cpu ";
  expect_refused(base + "-m l1 --param lambda=-1", "lambda must be a finite number >= 0", out);
  expect_refused(base + "-m tv --param iterations=0", "iteration limit must be at least 1", out);
  expect_refused(base + "-m tv --param lamda=0.1", "unknown parameter 'lamda'", out);
  expect_refused(base + "-m l1 --param lambda=abc", "is not a number", out);
  expect_refused(base + "-m l1 --param accel=adam", "unknown acceleration 'adam'", out);
  expect_refused(base + "-m tv --param tv_iterations=0", "inner TV iteration count", out);
  expect_refused(base + "-m l1 --param l1_weight=0.1", "option of tv", out);
  expect_refused(base + "-m tv --mode fast", "exact operators", out);
}

TEST_F(CliIterative, EvaluateWritesSummariesAndFigure) {
  const std::string json = path("r.json"), csv = path("r.csv"), png = path("r.png");
  const CommandResult r = run_nfmimo(
      "evaluate --data " + path("data.h5") + " --methods adjoint,l1 --device cpu --param " +
      "l1.lambda=0.01 --param l1.iterations=300 --json " + json + " --csv " + csv + " --png " + png);
  ASSERT_EQ(r.code, 0) << r.output;
  std::ifstream jf(json);
  const auto j = nlohmann::json::parse(jf);
  EXPECT_EQ(j["frames"], 3);
  ASSERT_EQ(j["methods"].size(), 2u);
  const auto& adjoint = j["methods"][0];
  const auto& l1 = j["methods"][1];
  EXPECT_EQ(adjoint["name"], "adjoint");
  EXPECT_EQ(l1["details"]["lambda_rel"], 0.01);
  EXPECT_EQ(l1["per_frame"]["psnr_db"].size(), 3u);
  // Noiseless sparse scenes: l1 recovers them far better than the adjoint's blur.
  EXPECT_GT(l1["psnr_db"]["mean"].get<double>(), adjoint["psnr_db"]["mean"].get<double>() + 10);
  EXPECT_GT(l1["ssim_3d"]["mean"].get<double>(), adjoint["ssim_3d"]["mean"].get<double>());
  EXPECT_GE(l1["psnr_db"]["std"].get<double>(), 0);
  std::ifstream cf(csv);
  std::string line;
  int lines = 0;
  while (std::getline(cf, line)) ++lines;
  EXPECT_EQ(lines, 3);  // header + two methods
  EXPECT_GT(fs::file_size(png), 1000u);
}

TEST_F(CliIterative, EvaluateRefusesBadDatasets) {
  const std::string json = path("r.json");
  expect_refused("evaluate --data " + path("no_targets.h5") + " --methods adjoint --json " + json,
                 "no /targets", json);
  expect_refused(
      "evaluate --data " + path("data.h5") + " --methods adjoint --system paper --freqs 15 --json " + json,
      "differs from --system paper", json);
  expect_refused("evaluate --data " + path("data.h5") + " --methods adjoint,nope --json " + json,
                 "unknown method 'nope'", json);
  expect_refused("evaluate --data " + path("missing.h5") + " --methods adjoint --json " + json, "missing.h5",
                 json);
}

// The summaries evaluate reports: sample standard deviation, a perfect frame (+inf PSNR) makes the mean +inf
// and the spread undefined rather than a misleading number.
TEST(EvaluateSummary, KnownAnswers) {
  const Summary a = summarize({1.0, 2.0, 3.0, 6.0});
  EXPECT_DOUBLE_EQ(a.mean, 3.0);
  EXPECT_DOUBLE_EQ(a.std, std::sqrt(14.0 / 3.0));
  EXPECT_DOUBLE_EQ(a.min, 1.0);
  EXPECT_DOUBLE_EQ(a.max, 6.0);
  EXPECT_DOUBLE_EQ(summarize({4.5}).std, 0.0);
  const Summary b = summarize({30.0, INFINITY});
  EXPECT_TRUE(std::isinf(b.mean) && b.mean > 0);
  EXPECT_TRUE(std::isnan(b.std));
  EXPECT_DOUBLE_EQ(b.min, 30.0);
}

TEST(EvaluateSummary, ParamsAreScopedByMethod) {
  const std::map<std::string, std::string> all = {
      {"lambda", "0.1"}, {"tv.lambda", "0.2"}, {"l1.iterations", "5"}};
  const auto tv = params_for_method("tv", all), l1 = params_for_method("l1", all);
  EXPECT_EQ(tv.at("lambda"), "0.2");  // the scoped value wins over the global one
  EXPECT_EQ(tv.count("iterations"), 0u);
  EXPECT_EQ(l1.at("lambda"), "0.1");
  EXPECT_EQ(l1.at("iterations"), "5");
}

}  // namespace
}  // namespace nfmimo
