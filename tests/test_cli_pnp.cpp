// `nfmimo train --arch denoiser` and `--method pnp` through the real binary: a tiny denoiser run writes a
// model marked as a denoiser; pnp reconstructs with it and records its weights; deep2s refuses a denoiser and
// pnp a reconstruction network; bad options are refused with exit code 2, a clear message and no output.
#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/measurement_file.hpp"
#include "models/weights.hpp"
#include "radar/cpu_operator.hpp"
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

class PnpCli : public ::testing::Test {
 protected:
  test::ScratchDir dir;

  void SetUp() override {
    // Measurements of two sparse scenes on the tiny grid (K = 4 of the paper system).
    MeasurementSet m;
    m.system = paper_system(4);
    m.grid = ImagingGrid(Axis::linspace(-0.08, 0.08, 8), Axis::linspace(-0.08, 0.08, 8),
                         Axis::linspace(0.4, 0.55, 8));
    m.frames = 2;
    const std::size_t V = m.grid->voxels(), S = m.system.samples_per_frame();
    m.targets.assign(V * m.frames, cfloat(0));
    for (int n = 0; n < m.frames; ++n) {
      m.targets[n * V + m.grid->index(2 + n, 3, 1)] = {1.0f, 0.0f};
      m.targets[n * V + m.grid->index(5, 5 - n, 4)] = {0.0f, -0.8f};
    }
    m.measurements.resize(S * m.frames);
    CpuOperator(m.system, *m.grid).forward(m.targets.data(), m.measurements.data(), m.frames);
    write_measurements(dir / "data.h5", m);
  }

  void expect_refused(const std::string& args, const std::string& message, const std::string& output) {
    const auto r = nfmimo(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << "expected '" << message << "' in:\n" << r.output;
    EXPECT_FALSE(fs::exists(output)) << output;
  }
};

TEST_F(PnpCli, TrainsADenoiserAndReconstructsWithIt) {
  const std::string model = dir / "d.h5";
  auto r = nfmimo("train --arch denoiser --width 2 --synthesize --system paper --freqs 4 " + kTinyGrid +
                  " --epoch-size 4 --batch 2 --val-count 2 --device cpu --epochs 1 --sigma-max 0.2 --out " +
                  model);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nn::Model m = nn::read_model(model);
  EXPECT_EQ(m.role, nn::kDenoiserRole);
  EXPECT_EQ(m.architecture, "unet3d");
  EXPECT_EQ(m.options.width, 2);
  const auto record = nlohmann::json::parse(m.training);
  EXPECT_EQ(record["run"]["data"]["kind"], "denoiser");
  EXPECT_DOUBLE_EQ(record["run"]["data"]["sigma_max"].get<double>(), 0.2);

  const std::string out = dir / "pnp.h5";
  r = nfmimo("reconstruct " + dir / "data.h5" + " -o " + out + " -m pnp --model " + model +
             " --device cpu --param rho=0.1 --param iterations=3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const VolumeSet v = read_volumes(out);
  EXPECT_EQ(v.frames, 2);
  const auto details = nlohmann::json::parse(v.extra_json);
  EXPECT_EQ(details["method"], "pnp");
  EXPECT_DOUBLE_EQ(details["rho_rel"].get<double>(), 0.1);
  EXPECT_GT(details["rho"].get<double>(), 0);
  ASSERT_EQ(details["frames"].size(), 2u);
  EXPECT_LE(details["frames"][0]["iterations"].get<int>(), 3);
  EXPECT_GE(details["frames"][0]["iterations"].get<int>(), 1);

  // The residual denoiser (--denoiser-net resnet) trains and serves pnp the same way.
  const std::string residual = dir / "res.h5";
  r = nfmimo(
      "train --arch denoiser --denoiser-net resnet --width 2 --blocks 2 --synthesize --system paper --freqs "
      "4 " +
      kTinyGrid + " --epoch-size 4 --batch 2 --val-count 2 --device cpu --epochs 1 --out " + residual);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nn::Model rm = nn::read_model(residual);
  EXPECT_EQ(rm.role, nn::kDenoiserRole);
  EXPECT_EQ(rm.architecture, "resnet");
  r = nfmimo("reconstruct " + dir / "data.h5" + " -o " + dir / "pnp_res.h5" + " -m pnp --model " + residual +
             " --device cpu --param iterations=2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_refused("train --arch denoiser --denoiser-net unet2d --width 2 --synthesize " + kTinyGrid +
                     " --epochs 1 --device cpu --out " + (dir / "bad.h5"),
                 "--denoiser-net must be unet3d or resnet", dir / "bad.h5");

  // The roles are enforced both ways.
  expect_refused("reconstruct " + dir / "data.h5" + " -o " + dir / "x.h5" + " -m deep2s --model " + model +
                     " --device cpu",
                 "needs a reconstruction network", dir / "x.h5");
  const std::string recon = dir / "r.h5";
  nn::write_model(recon, nn::make_model("unet3d", paper_system(4), *read_measurements(dir / "data.h5").grid,
                                        nn::ArchitectureOptions{2, 8}));
  expect_refused(
      "reconstruct " + dir / "data.h5" + " -o " + dir / "x.h5" + " -m pnp --model " + recon + " --device cpu",
      "pnp needs a denoiser", dir / "x.h5");
}

TEST_F(PnpCli, RefusesBadOptions) {
  const std::string model = dir / "d.h5";
  nn::Model m = nn::make_model("unet3d", paper_system(4), *read_measurements(dir / "data.h5").grid,
                               nn::ArchitectureOptions{2, 8});
  m.role = nn::kDenoiserRole;
  nn::write_model(model, m);
  const std::string out = dir / "out.h5";
  const std::string base = "reconstruct " + dir / "data.h5" + " -o " + out + " --device cpu -m pnp ";
  expect_refused(base + "--model " + model + " --param rho=-1", "rho must be a finite number > 0", out);
  expect_refused(base + "--model " + model + " --param iterations=0", "iteration limit must be at least 1",
                 out);
  expect_refused(base + "--model " + model + " --param cg_iterations=0", "cg_iterations", out);
  expect_refused(base + "--model " + model + " --param lambda=0.1", "unknown parameter 'lambda'", out);
  expect_refused(base + "--model " + model + " --param rho=x", "is not a number", out);
  expect_refused(base + "--model " + model + " --mode fast", "exact operators", out);
  expect_refused(base, "needs a denoiser: --model FILE", out);
  const std::string train_out = dir / "t.h5";
  const std::string train =
      "train --arch denoiser --width 2 --epochs 1 --device cpu --out " + train_out + " ";
  expect_refused(train + "--data " + dir / "data.h5" + " --val " + dir / "data.h5", "give --synthesize",
                 train_out);
  expect_refused(train + "--synthesize " + kTinyGrid + " --snr 20", "--snr has no meaning", train_out);
  expect_refused(train + "--synthesize " + kTinyGrid + " --sigma-max -1", "--sigma-max must be", train_out);
  expect_refused(
      "train --arch unet3d --width 2 --epochs 1 --device cpu --synthesize --sigma-max 0.1 --out " + train_out,
      "--sigma-max belongs to --arch denoiser", train_out);
}

}  // namespace
}  // namespace nfmimo
