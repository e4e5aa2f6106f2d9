// The default model of a learned method (tools/model_lookup.hpp): the shipped model matching the
// measurements' system and grid by architecture, and when none matches an error that lists the shipped models
// and the train command for this system; through the real binary, `reconstruct` and `evaluate` without
// --model.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/measurement_file.hpp"
#include "models/weights.hpp"
#include "radar/error.hpp"
#include "tests/cli_util.hpp"
#include "tests/test_util.hpp"
#include "tools/model_lookup.hpp"

namespace nfmimo {
namespace {

ImagingGrid tiny_grid() {
  return ImagingGrid(Axis::linspace(-0.08, 0.08, 8), Axis::linspace(-0.08, 0.08, 8),
                     Axis::linspace(0.4, 0.55, 8));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ModelLookup, FindsTheModelOfTheMethodsArchitectureForThisSystemAndGrid) {
  test::ScratchDir dir;
  const RadarSystem k4 = paper_system(4), k5 = paper_system(5);
  nn::write_model(dir / "a_unet3d_k5.h5", nn::make_model("unet3d", k5, tiny_grid(), {2, 1}, 1));
  nn::write_model(dir / "b_unet3d_k4.h5", nn::make_model("unet3d", k4, tiny_grid(), {2, 1}, 1));
  nn::write_model(dir / "c_cv_k4.h5", nn::make_model("cv-unet3d", k4, tiny_grid(), {2, 1}, 1));
  nn::Model denoiser = nn::make_model("unet3d", k4, tiny_grid(), {2, 1}, 1);
  denoiser.role = nn::kDenoiserRole;
  nn::write_model(dir / "0_denoiser.h5", denoiser);  // first by name, but a denoiser is no Deep2S model
  std::ofstream(dir / "junk.h5") << "not hdf5";      // skipped, not fatal
  nn::write_model(dir / "b_unet3d_k4.checkpoint.h5", nn::make_model("unet3d", k4, tiny_grid(), {2, 1}, 1));

  EXPECT_EQ(default_model("deep2s", k4, tiny_grid(), dir / ""), dir / "b_unet3d_k4.h5");
  EXPECT_EQ(default_model("deep2s", k5, tiny_grid(), dir / ""), dir / "a_unet3d_k5.h5");
  EXPECT_EQ(default_model("cv-deep2s", k4, tiny_grid(), dir / ""), dir / "c_cv_k4.h5");
  EXPECT_EQ(list_shipped_models(dir / "").size(), 4u);  // junk and the checkpoint left out

  // No unet2d shipped: the message names the method, lists every shipped model and the command to train one.
  const std::string m = error_of([&] { default_model("deep2s-unet2d", k4, tiny_grid(), dir / ""); });
  for (const char* part :
       {"deep2s-unet2d", "a_unet3d_k5.h5", "b_unet3d_k4.h5", "c_cv_k4.h5", "pnp denoiser",
        "nfmimo train --arch unet2d --synthesize --system paper --freqs 4 --grid ", "--model"})
    EXPECT_NE(m.find(part), std::string::npos) << part << " missing in: " << m;
  // Another grid: no match even though the architecture is shipped.
  const ImagingGrid other(Axis::linspace(-0.08, 0.08, 8), Axis::linspace(-0.08, 0.08, 8),
                          Axis::linspace(0.4, 0.6, 8));
  EXPECT_NE(error_of([&] { default_model("deep2s", k4, other, dir / ""); }).find("no shipped model"),
            std::string::npos);
  // A system without a name: train from the user's own files.
  const std::string custom =
      error_of([&] { default_model("deep2s", test::small_system(), tiny_grid(), dir / ""); });
  EXPECT_NE(custom.find("--data TRAIN.h5 --val VAL.h5"), std::string::npos) << custom;
  // A folder that does not exist holds no models.
  EXPECT_NE(error_of([&] { default_model("deep2s", k4, tiny_grid(), dir / "none"); }).find("none"),
            std::string::npos);
}

// The real binary on the demo samples (paper system, K = 15, paper grid): without --model, reconstruct uses
// the shipped Deep2S and gives what --model with that file gives; evaluate records it; without a matching
// shipped model both refuse with exit code 2 and write nothing.
TEST(ModelLookup, ReconstructAndEvaluateUseTheShippedModelByDefault) {
  const std::string samples = std::string(NFMIMO_SOURCE_DIR) + "/data/samples/paper_k15_snr30.h5";
  const std::string shipped = std::string(NFMIMO_SOURCE_DIR) + "/models/trained/deep2s_paper_k15_snr30.h5";
  ASSERT_TRUE(std::filesystem::exists(samples) && std::filesystem::exists(shipped));
  test::ScratchDir dir;
  const auto a = test::run_cli("--threads 1 reconstruct " + samples + " --out " + (dir / "a.h5") +
                               " --method deep2s --device cpu");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_NE(a.output.find("using the shipped model"), std::string::npos) << a.output;
  const auto b = test::run_cli("--threads 1 reconstruct " + samples + " --out " + (dir / "b.h5") +
                               " --method deep2s --device cpu --model " + shipped);
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_EQ(read_volumes(dir / "a.h5").magnitude, read_volumes(dir / "b.h5").magnitude);

  const auto e =
      test::run_cli("--threads 1 evaluate --data " + samples +
                    " --methods kirchhoff,deep2s --frames 1 --device cpu " + "--json " + (dir / "e.json"));
  ASSERT_EQ(e.exit_code, 0) << e.output;
  std::ifstream f(dir / "e.json");
  const auto j = nlohmann::json::parse(f);
  bool found = false;
  for (const auto& m : j["methods"])
    if (m["name"] == "deep2s") {
      found = true;
      EXPECT_EQ(m["model"], shipped);
    }
  EXPECT_TRUE(found) << j.dump();

  // An empty models folder: refused before any work, naming what to do.
  std::filesystem::create_directories(dir / "empty");
  const std::string env = "NFMIMO_MODELS_DIR=" + (dir / "empty") + " ";
  const auto r = test::run_command(env + NFMIMO_BINARY_PATH + " reconstruct " + samples + " --out " +
                                   (dir / "c.h5") + " --method cv-deep2s --device cpu");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("nfmimo train --arch cv-unet3d --synthesize --system paper --freqs 15"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "c.h5"));
  const auto r2 = test::run_command(env + NFMIMO_BINARY_PATH + " evaluate --data " + samples +
                                    " --methods deep2s --device cpu --json " + (dir / "r2.json"));
  EXPECT_EQ(r2.exit_code, 2) << r2.output;
  EXPECT_NE(r2.output.find("no shipped model"), std::string::npos) << r2.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "r2.json"));
}

}  // namespace
}  // namespace nfmimo
