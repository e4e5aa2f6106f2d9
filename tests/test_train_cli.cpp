// `nfmimo train` and `nfmimo evaluate` with learned methods through the real binary: a tiny run writes the
// model, the checkpoint, the logs and the training record; an interrupted run resumes to the same weights;
// evaluate scores several learned instances, each with its own model; bad input is refused with exit code 2,
// a clear message and no output.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/measurement_file.hpp"
#include "radar/cpu_operator.hpp"
#include "models/weights.hpp"
#include "tests/cli_util.hpp"

namespace nfmimo {
namespace {

namespace fs = std::filesystem;
using test::run_command;

test::CliResult nfmimo(const std::string& args) {
  // Tiny problems: one thread avoids slow spinning barriers on shared cores.
  return run_command("OMP_NUM_THREADS=1 " + std::string(NFMIMO_BINARY_PATH) + " " + args);
}

const std::string kTinyGrid = "--grid=-0.08:0.08:8,-0.08:0.08:8,0.4:0.55:8";
// A narrow U-Net on an 8^3 grid, K = 4, 2 epochs of 2 batches of 2 scenes.
const std::string kTinyRun = "train --arch unet3d --width 2 --synthesize --system paper --freqs 4 " +
                             kTinyGrid + " --snr 30 --epoch-size 4 --batch 2 --val-count 2 --device cpu";

class TrainCli : public ::testing::Test {
 protected:
  test::ScratchDir dir;

  void expect_refused(const std::string& args, const std::string& message, const std::string& output) {
    const auto r = nfmimo(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << "expected '" << message << "' in:\n" << r.output;
    EXPECT_FALSE(fs::exists(output)) << output;
  }
  void synthesize(const std::string& name, const std::string& options) {
    const auto r = nfmimo("synthesize --out " + dir / name + " --device cpu " + options);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
};

TEST_F(TrainCli, TrainsWritesRecordAndLogsAndResumesToTheSameWeights) {
  const std::string model = dir / "m.h5";
  auto r = nfmimo(kTinyRun + " --epochs 2 --seed 3 --out " + model);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("epoch 2: loss"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("final validation"), std::string::npos) << r.output;
  for (const char* f : {"m.h5", "m.checkpoint.h5", "m.log.csv", "m.log.json"})
    EXPECT_TRUE(fs::exists(dir / f)) << f;
  const nn::Model m = nn::read_model(model);
  const auto record = nlohmann::json::parse(m.training);
  EXPECT_NE(record["command"].get<std::string>().find("train --arch unet3d"), std::string::npos);
  EXPECT_EQ(record["run"]["seed"], 3);
  EXPECT_EQ(record["complete_epochs"], 2);
  EXPECT_EQ(record["steps"], 4);
  EXPECT_TRUE(record["final_validation"]["psnr_db"].is_number());
  EXPECT_NE(record["device"].get<std::string>().find("cpu"), std::string::npos);
  std::ifstream csv(dir / "m.log.csv");
  std::string line;
  int lines = 0;
  while (std::getline(csv, line)) ++lines;
  EXPECT_EQ(lines, 3);  // header + 2 epochs

  // The same command again is refused (the checkpoint and the model exist); stopped + resumed =
  // uninterrupted.
  expect_refused(kTinyRun + " --epochs 2 --seed 3 --out " + model, "--resume", dir / "none");
  const std::string parts = dir / "p.h5";
  r = nfmimo(kTinyRun + " --epochs 2 --seed 3 --out " + parts + " --stop-after-steps 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("--resume to continue"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(parts));
  r = nfmimo(kTinyRun + " --epochs 2 --seed 3 --out " + parts + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming"), std::string::npos) << r.output;
  const nn::Model p = nn::read_model(parts);
  for (const auto& [name, t] : m.parameters) EXPECT_EQ(t.values, p.parameters.at(name).values) << name;
}

// --init starts from a model's weights: a run stopped before its first step checkpoints exactly those
// weights; a model of another architecture, width or grid is refused; one of another radar system is a
// transfer start.
TEST_F(TrainCli, InitStartsFromAModelsWeights) {
  const std::string base = dir / "base.h5";
  auto r = nfmimo(kTinyRun + " --epochs 1 --seed 5 --out " + base);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = nfmimo(kTinyRun + " --epochs 1 --seed 6 --init " + base + " --stop-after-steps 0 --out " +
             (dir / "fine.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("starting from the weights of"), std::string::npos) << r.output;
  const nn::Model start = nn::read_model(base), checkpoint = nn::read_model(dir / "fine.checkpoint.h5");
  for (const auto& [name, tensor] : start.parameters)
    EXPECT_EQ(checkpoint.parameters.at(name).values, tensor.values) << name;
  const std::string other = kTinyRun;
  expect_refused(std::string(other).replace(other.find("--width 2"), 9, "--width 4") + " --epochs 1 --init " +
                     base + " --out " + (dir / "wide.h5"),
                 "--init holds a unet3d network (width 2", dir / "wide.h5");
  // Another radar system (K = 5 instead of 4) is a transfer start; another grid is refused.
  std::string other_k = kTinyRun;
  other_k.replace(other_k.find("--freqs 4"), 9, "--freqs 5");
  r = nfmimo(other_k + " --epochs 1 --init " + base + " --stop-after-steps 0 --out " + (dir / "k5.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("transfer: that model was trained for another radar system"), std::string::npos)
      << r.output;
  const nn::Model transferred = nn::read_model(dir / "k5.checkpoint.h5");
  for (const auto& [name, tensor] : start.parameters)
    EXPECT_EQ(transferred.parameters.at(name).values, tensor.values) << name;
  std::string other_grid = kTinyRun;
  other_grid.replace(other_grid.find("0.4:0.55:8"), 10, "0.4:0.55:9");
  expect_refused(other_grid + " --epochs 1 --init " + base + " --out " + (dir / "g.h5"),
                 "--init holds a model for another imaging grid", dir / "g.h5");
}

TEST_F(TrainCli, EvaluateScoresSeveralLearnedInstancesEachWithItsModel) {
  const std::string a = dir / "a.h5", b = dir / "b.h5";
  ASSERT_EQ(nfmimo(kTinyRun + " --epochs 2 --seed 3 --out " + a).exit_code, 0);
  ASSERT_EQ(nfmimo(kTinyRun + " --epochs 1 --seed 4 --out " + b).exit_code, 0);
  synthesize("test.h5", "--count 3 --freqs 4 " + kTinyGrid + " --seed 99");
  const std::string json = dir / "r.json", csv = dir / "r.csv", png = dir / "r.png";
  const auto r =
      nfmimo("evaluate --data " + dir / "test.h5" + " --methods adjoint,deep2s,deep2s@b,deep2s@again " +
             "--model " + a + " --model deep2s@b=" + b + " --model deep2s@again=" + a +
             " --device cpu --json " + json + " --csv " + csv + " --png " + png);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream jf(json);
  const auto j = nlohmann::json::parse(jf);
  ASSERT_EQ(j["methods"].size(), 4u);
  EXPECT_EQ(j["methods"][1]["name"], "deep2s");
  EXPECT_EQ(j["methods"][1]["model"], a);
  EXPECT_EQ(j["methods"][2]["name"], "deep2s@b");
  EXPECT_EQ(j["methods"][2]["model"], b);
  EXPECT_FALSE(j["methods"][0].contains("model"));
  // Same model, same numbers; another model, other numbers.
  EXPECT_EQ(j["methods"][1]["per_frame"], j["methods"][3]["per_frame"]);
  EXPECT_NE(j["methods"][1]["per_frame"]["psnr_db"], j["methods"][2]["per_frame"]["psnr_db"]);
  EXPECT_GT(fs::file_size(png), 1000u);
  EXPECT_GT(fs::file_size(csv), 100u);

  const std::string out = dir / "bad.json";
  const std::string base = "evaluate --data " + dir / "test.h5" + " --device cpu --json " + out;
  expect_refused(base + " --methods deep2s@x --model deep2s@y=" + a, "'deep2s@y' is not one of --methods",
                 out);
  expect_refused(base + " --methods deep2s,deep2s", "listed twice", out);
  expect_refused(base + " --methods deep2s@b.x --model " + a, "the tag after '@'", out);
  expect_refused(base + " --methods adjoint,deep2s", "needs a weights file", out);
}

// evaluate end to end on a dataset with known answers: frame 0's ground truth is the adjoint's own output (a
// perfect reconstruction: PSNR +inf, SSIM 1, NMSE 0); frame 1's is the adjoint's normalised magnitude with
// one voxel raised by d, so that MSE = d^2 / V and PSNR = 10 log10(V / d^2) exactly.
TEST_F(TrainCli, EvaluateGivesKnownAnswers) {
  MeasurementSet m;
  m.system = paper_system(4);
  m.grid = ImagingGrid(Axis::linspace(-0.08, 0.08, 8), Axis::linspace(-0.08, 0.08, 8),
                       Axis::linspace(0.4, 0.55, 8));
  m.frames = 2;
  const std::size_t V = m.grid->voxels();
  std::vector<cfloat> scene(V * 2, cfloat(0));
  scene[m.grid->index(2, 3, 4)] = {1, 0};
  scene[V + m.grid->index(5, 5, 2)] = {0, 1};
  const CpuOperator op(m.system, *m.grid);
  m.measurements.resize(m.system.samples_per_frame() * 2);
  op.forward(scene.data(), m.measurements.data(), 2);
  std::vector<cfloat> adjoint(V * 2);
  op.image(Method::Adjoint, m.measurements.data(), adjoint.data(), 2);
  m.targets = adjoint;
  float peak = 0;
  for (std::size_t v = 0; v < V; ++v) peak = std::max(peak, std::abs(adjoint[V + v]));
  std::size_t raised = V;
  for (std::size_t v = 0; v < V; ++v) {
    m.targets[V + v] = std::abs(adjoint[V + v]) / peak;
    if (raised == V && m.targets[V + v].real() < 0.5f) raised = v;
  }
  const double d = 0.25;
  m.targets[V + raised] += float(d);
  write_measurements(dir / "known.h5", m);

  const std::string json = dir / "k.json";
  const auto r =
      nfmimo("evaluate --data " + dir / "known.h5" + " --methods adjoint --device cpu --json " + json);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream jf(json);
  const auto per = nlohmann::json::parse(jf)["methods"][0]["per_frame"];
  EXPECT_EQ(per["psnr_db"][0], "inf");
  EXPECT_DOUBLE_EQ(per["ssim_3d"][0].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(per["ssim_2d"][0].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(per["nmse"][0].get<double>(), 0.0);
  // Float storage of the normalised magnitudes leaves ~1e-7 relative differences: far below 1e-6 dB.
  EXPECT_NEAR(per["psnr_db"][1].get<double>(), 10 * std::log10(double(V) / (d * d)), 1e-6);
  EXPECT_LT(per["ssim_3d"][1].get<double>(), 1.0);
}

// DeepDI / Deep2S+ through the binary: a tiny run (CPU) writes a composite model with its dense layer, which
// evaluate, reconstruct and resume use; what they cannot do is refused with exit code 2 and the reason.
TEST_F(TrainCli, DenseFirstStageModelsTrainResumeAndReconstruct) {
  std::string run = kTinyRun;
  run.replace(run.find("--arch unet3d"), 13, "--arch deep2s-plus");
  const std::string model = dir / "plus.h5";
  auto r = nfmimo(run + " --epochs 2 --seed 3 --out " + model);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nn::Model m = nn::read_model(model);
  EXPECT_EQ(m.architecture, "deep2s-plus");
  EXPECT_EQ(m.parameters.at("dense.weight").shape, (std::vector<int>{512, 624, 2}));
  // Interrupted after 1 step and resumed: the same weights, dense layer included.
  const std::string again = dir / "again.h5";
  ASSERT_EQ(nfmimo(run + " --epochs 2 --seed 3 --stop-after-steps 1 --out " + again).exit_code, 0);
  r = nfmimo(run + " --epochs 2 --seed 3 --resume --out " + again);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nn::Model resumed = nn::read_model(again);
  for (const auto& [name, tensor] : m.parameters)
    EXPECT_EQ(resumed.parameters.at(name).values, tensor.values) << name;

  synthesize("test.h5", "--count 2 --freqs 4 " + kTinyGrid + " --seed 99");
  r = nfmimo("reconstruct " + dir / "test.h5" + " --out " + dir / "v.h5" + " --method deep2s-plus --model " +
             model + " --device cpu");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string json = dir / "r.json";
  r = nfmimo("evaluate --data " + dir / "test.h5" + " --methods deep2s-plus --model " + model +
             " --device cpu --json " + json);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // Refusals: the GPU (no dense-layer GPU path yet), another precision, a model of the other architecture,
  // measurements of another system.
  const std::string out = dir / "x.h5";
  std::string di = kTinyRun;
  di.replace(di.find("--arch unet3d"), 13, "--arch deepdi");
  expect_refused(
      std::string(di).replace(di.find("--device cpu"), 12, "--device cuda") + " --epochs 1 --out " + out,
      "trains on the CPU only", out);
  expect_refused(di + " --epochs 1 --precision bf16 --out " + out, "needs the GPU training backend", out);
  expect_refused("reconstruct " + dir / "test.h5" + " --out " + out + " --method deepdi --model " + model +
                     " --device cpu",
                 "needs a 'deepdi' model", out);
  synthesize("k5.h5", "--count 1 --freqs 5 " + kTinyGrid);
  expect_refused("reconstruct " + dir / "k5.h5" + " --out " + out + " --method deep2s-plus --model " + model +
                     " --device cpu",
                 "the radar system differs", out);
}

// Deep2S+ started from a cv-deep2s model (--init of a cv-unet3d file): the U-Net's weights are that model's
// and the dense layer is A^H, so before any step Deep2S+ reconstructs what cv-deep2s does (the paper's reason
// for initialising the first stage from the physics). DeepDI from the same file gets a random dense layer.
TEST_F(TrainCli, Deep2SPlusStartsAsTheCvDeep2SModelItIsGiven) {
  std::string cv = kTinyRun;
  cv.replace(cv.find("--arch unet3d"), 13, "--arch cv-unet3d");
  const std::string cv_model = dir / "cv.h5";
  auto r = nfmimo(cv + " --epochs 1 --seed 3 --out " + cv_model);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string plus = kTinyRun;
  plus.replace(plus.find("--arch unet3d"), 13, "--arch deep2s-plus");
  r = nfmimo(plus + " --epochs 1 --seed 4 --init " + cv_model + " --stop-after-steps 0 --out " +
             (dir / "p.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("its U-Net; the dense layer starts as for a new run"), std::string::npos)
      << r.output;
  const nn::Model start = nn::read_model(cv_model), composite = nn::read_model(dir / "p.checkpoint.h5");
  for (const auto& [name, tensor] : start.parameters)
    EXPECT_EQ(composite.parameters.at(name).values, tensor.values) << name;
  ASSERT_TRUE(composite.parameters.count("dense.weight"));

  // Same reconstructions (to float rounding of the two adjoint paths: dense GEMM against the matrix-free
  // operator, both normalised to the frame's peak).
  synthesize("test.h5", "--count 2 --freqs 4 " + kTinyGrid + " --seed 99");
  const std::string json = dir / "same.json";
  r = nfmimo("evaluate --data " + dir / "test.h5" + " --methods cv-deep2s,deep2s-plus --model cv-deep2s=" +
             cv_model + " --model deep2s-plus=" + (dir / "p.checkpoint.h5") + " --device cpu --json " + json);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream jf(json);
  const auto j = nlohmann::json::parse(jf);
  for (int f = 0; f < 2; ++f)
    EXPECT_NEAR(j["methods"][0]["per_frame"]["psnr_db"][f].get<double>(),
                j["methods"][1]["per_frame"]["psnr_db"][f].get<double>(), 1e-3)
        << "frame " << f;

  // A composite's dense layer belongs to its radar system: no transfer to another one.
  std::string plus_k5 = plus;
  plus_k5.replace(plus_k5.find("--freqs 4"), 9, "--freqs 5");
  expect_refused(plus_k5 + " --epochs 1 --init " + (dir / "p.checkpoint.h5") + " --out " + (dir / "k5.h5"),
                 "dense layer belongs to another radar system", dir / "k5.h5");

  // Another width is still refused.
  std::string wide = plus;
  wide.replace(wide.find("--width 2"), 9, "--width 4");
  expect_refused(wide + " --epochs 1 --init " + cv_model + " --out " + (dir / "w.h5"),
                 "--init holds a cv-unet3d", dir / "w.h5");
}

TEST_F(TrainCli, BadInputIsRefusedClearly) {
  synthesize("k4.h5", "--count 4 --freqs 4 " + kTinyGrid);
  synthesize("k5.h5", "--count 4 --freqs 5 " + kTinyGrid);
  const std::string out = dir / "m.h5";
  const std::string data = "train --width 2 --epochs 1 --batch 2 --device cpu --out " + out;
  // A dataset whose system differs from --system.
  expect_refused(data + " --data " + dir / "k4.h5" + " --val " + dir / "k4v.h5" + " --system paper --freqs 5",
                 "differs from --system paper (K = 5)", out);
  // Validation data of another system than the training data.
  expect_refused(data + " --data " + dir / "k4.h5" + " --val " + dir / "k5.h5",
                 "k5.h5: the radar system differs", out);
  // A measurement file without /targets.
  MeasurementSet no_targets = read_measurements(dir / "k4.h5");
  no_targets.targets.clear();
  write_measurements(dir / "no_targets.h5", no_targets);
  expect_refused(data + " --data " + dir / "no_targets.h5" + " --val " + dir / "k4.h5", "no /targets dataset",
                 out);
  // Unknown architecture, loss, precision on the CPU, missing data source or stop rule.
  expect_refused("train --arch unet4d --synthesize --epochs 1 --out " + out, "unknown architecture 'unet4d'",
                 out);
  expect_refused("train --synthesize --epochs 1 --loss ssim --out " + out, "unknown loss 'ssim'", out);
  expect_refused(kTinyRun + " --epochs 1 --precision bf16 --out " + out, "needs the GPU training backend",
                 out);
  expect_refused("train --epochs 1 --out " + out, "exactly one data source", out);
  expect_refused("train --synthesize --out " + out, "--epochs N, --time-budget T", out);
  expect_refused("train --synthesize --time-budget 8x --out " + out, "not a positive duration", out);
  expect_refused(data + " --data " + dir / "k4.h5", "--data needs --val", out);
  expect_refused(kTinyRun + " --epochs 1 --seed 3 --val-seed 3 --out " + out,
                 "must differ from the training scenes' seed", out);
  EXPECT_EQ(dir.file_count(), 3u);  // the three inputs: no checkpoint, log or temporary file was left behind
}

}  // namespace
}  // namespace nfmimo
