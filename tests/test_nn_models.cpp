// The paper's architectures, whole networks against PyTorch (tests/fixtures/make_torch_fixtures.py), weights
// files, and the learned pipelines (Deep2S family) with the method table.
#include <filesystem>
#include <fstream>
#include <random>

#include <sys/wait.h>

#include <gtest/gtest.h>

#include "data/hdf5.hpp"
#include "data/measurement_file.hpp"
#include "models/nn/architectures.hpp"
#include "models/nn/cpu/network.hpp"
#include "models/learned/pipeline.hpp"
#include "models/nn/reference.hpp"
#include "models/weights.hpp"
#include "radar/cpu_operator.hpp"
#include "radar/error.hpp"
#include "tests/test_util.hpp"
#include "tools/methods.hpp"

namespace nfmimo::nn {
namespace {

namespace fs = std::filesystem;
using test::relative_error_below;

using test::view;

std::string fixture(const std::string& arch) {
  return std::string(NFMIMO_SOURCE_DIR) + "/tests/fixtures/torch_" + arch + ".h5";
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("nfmimo_nn_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// ---- architectures ------------------------------------------------------------------------------------

TEST(Architectures, UNet3dHasAbout2Point87MillionTrainableParameters) {
  const Network net = build_network("unet3d", 25, 25, 49);
  const std::size_t count = net.trainable_parameter_count();
  std::printf("unet3d trainable parameters: %zu (with running statistics: %zu)\n", count,
              net.parameter_count());
  EXPECT_GT(count, 2'865'000u);
  EXPECT_LT(count, 2'875'000u);
  // CV U-Net: only the first convolution sees the second channel (32 * 27 more weights).
  EXPECT_EQ(build_network("cv-unet3d", 25, 25, 49).trainable_parameter_count(), count + 32 * 27);
}

TEST(Architectures, OutputHasTheInputGridForEveryArchitectureAndGrid) {
  for (const auto& arch : architecture_names())
    for (const auto& [nx, ny, nz] : {std::tuple{25, 25, 49}, {8, 8, 8}, {17, 30, 9}, {33, 16, 23}}) {
      const Network net = build_network(arch, nx, ny, nz, {.width = 4, .blocks = 2});
      const Shape out = net.output_shape(3);
      EXPECT_EQ(out, (Shape{3, 1, nx, ny, nz})) << arch << " on " << nx << "x" << ny << "x" << nz;
      EXPECT_EQ(net.input_shape().c, architecture_input_channels(arch));
    }
}

TEST(Architectures, PaperGridCropsTheFirstVoxelOfEachAxis) {
  const Network net = build_network("unet3d", 25, 25, 49);
  const Op& crop = net.ops()[1];
  ASSERT_EQ(crop.kind, OpKind::Crop);
  EXPECT_EQ(crop.pad_lo, (Triple{1, 1, 1}));
  EXPECT_EQ(crop.pad_hi, (Triple{0, 0, 0}));
  EXPECT_EQ(net.shape(1, 1), (Shape{1, 1, 24, 24, 48}));
}

TEST(Architectures, RefusesUnknownNamesAndTooSmallGrids) {
  EXPECT_THROW(build_network("unet4d", 25, 25, 49), InputError);
  EXPECT_THROW(build_network("unet3d", 25, 7, 49), InputError);
  EXPECT_NO_THROW(build_network("resnet", 3, 3, 3));
}

// ---- whole networks against PyTorch -------------------------------------------------------------------

struct Fixture {
  Model model;
  h5::Array<float> input, grad_output;
  h5::Array<double> inference, training, grad_input;
};

Fixture load_fixture(const std::string& arch) {
  Fixture f;
  f.model = read_model(fixture(arch));
  const h5::File file(fixture(arch), h5::File::Mode::Read);
  f.input = file.read<float>("/fixture/input");
  f.grad_output = file.read<float>("/fixture/grad_output");
  f.inference = file.read<double>("/fixture/output_inference");
  f.training = file.read<double>("/fixture/output_training");
  f.grad_input = file.read<double>("/fixture/grad_input");
  return f;
}

class AgainstTorch : public ::testing::TestWithParam<std::string> {};

TEST_P(AgainstTorch, ReferenceAndFastForwardMatch) {
  const Fixture f = load_fixture(GetParam());
  const Network net = f.model.network();
  const int n = int(f.input.dims[0]);
  Tensor<float> x(net.input_shape(n));
  ASSERT_EQ(x.size(), f.input.data.size());
  std::copy(f.input.data.begin(), f.input.data.end(), x.data.begin());
  for (const Mode mode : {Mode::Inference, Mode::Training}) {
    SCOPED_TRACE(mode == Mode::Inference ? "inference" : "training");
    const auto& expected = mode == Mode::Inference ? f.inference.data : f.training.data;
    // Double vs PyTorch float64: identical arithmetic up to summation order.
    ReferenceNetwork ref(net, f.model.parameters);
    const Tensor<double> yd = ref.forward(to_double(x), mode);
    EXPECT_TRUE(relative_error_below(view(yd.data), view(expected), 1e-10));
    // The float path: the issue's bound, 1e-5 relative.
    CpuNetwork fast(net, f.model.parameters, mode);
    Tensor<float> y(net.output_shape(n));
    fast.forward(x.ptr(), y.ptr(), n);
    EXPECT_TRUE(relative_error_below(view(y.data), view(expected), 1e-5));
  }
}

TEST_P(AgainstTorch, ReferenceBackwardMatchesAutograd) {
  const Fixture f = load_fixture(GetParam());
  const Network net = f.model.network();
  const int n = int(f.input.dims[0]);
  ReferenceNetwork ref(net, f.model.parameters);
  Tensor<float> x(net.input_shape(n)), r(net.output_shape(n));
  std::copy(f.input.data.begin(), f.input.data.end(), x.data.begin());
  std::copy(f.grad_output.data.begin(), f.grad_output.data.end(), r.data.begin());
  ref.forward(to_double(x), Mode::Training);
  const Tensor<double> dx = ref.backward(to_double(r));
  EXPECT_TRUE(relative_error_below(view(dx.data), view(f.grad_input.data), 1e-9)) << "input gradient";
  const h5::File file(fixture(GetParam()), h5::File::Mode::Read);
  for (const auto& [name, g] : ref.gradients()) {
    const auto expected = file.read<float>("/fixture/gradients/" + name).data;
    double norm = 0;
    for (float v : expected) norm += double(v) * v;
    if (std::sqrt(norm) < 1e-9) continue;
    EXPECT_TRUE(relative_error_below(view(g), view(expected), 1e-6)) << name;
  }
}

TEST_P(AgainstTorch, FastBackwardMatchesAutograd) {
  const Fixture f = load_fixture(GetParam());
  const Network net = f.model.network();
  const int n = int(f.input.dims[0]);
  CpuNetwork fast(net, f.model.parameters, Mode::Training);
  Tensor<float> y(net.output_shape(n)), dx(net.input_shape(n));
  fast.forward(f.input.data.data(), y.ptr(), n);
  fast.backward(f.grad_output.data.data(), dx.ptr());
  // The tolerance is the problem's own conditioning: twice PyTorch's float32 error on the same pass (stored
  // by the fixture script; ~1e-6 for the U-Nets, ~3e-3 for the deep ResNet, whose training-mode batch norms
  // cancel most of each gradient), and never below 1e-4.
  const h5::File file(fixture(GetParam()), h5::File::Mode::Read);
  const auto tolerance = [&](const std::string& dataset) {
    return std::max(1e-4, 2 * file.double_attribute(dataset, "torch_float32_error").value());
  };
  EXPECT_TRUE(relative_error_below(view(dx.data), view(f.grad_input.data), tolerance("/fixture/grad_input")))
      << "input gradient";
  std::size_t compared = 0;
  for (const auto& [name, g] : fast.gradients()) {
    const auto expected = file.read<float>("/fixture/gradients/" + name).data;
    double norm = 0;
    for (float v : expected) norm += double(v) * v;
    if (std::sqrt(norm) < 1e-9) continue;  // a convolution bias before training-mode batch norm: exactly zero
    EXPECT_TRUE(relative_error_below(view(g), view(expected), tolerance("/fixture/gradients/" + name)))
        << name;
    ++compared;
  }
  EXPECT_GT(compared, fast.gradients().size() / 2);
}

INSTANTIATE_TEST_SUITE_P(Architectures, AgainstTorch,
                         ::testing::Values("unet3d", "unet2d", "resnet", "cv-unet3d"), [](const auto& info) {
                           std::string s = info.param;
                           std::erase(s, '-');
                           return s;
                         });

// ---- weights files ------------------------------------------------------------------------------------

ImagingGrid tiny_grid() {
  return ImagingGrid(Axis::linspace(-0.08, 0.08, 8), Axis::linspace(-0.06, 0.06, 9),
                     Axis::linspace(0.3, 0.45, 8));
}

Model tiny_model(const std::string& arch = "unet3d") {
  Model m = make_model(arch, test::small_system(), tiny_grid(), {.width = 2, .blocks = 1}, 5);
  // Non-trivial batch-norm statistics and biases, so that round trips and pipelines test something.
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.2f, 1.5f);
  for (auto& [name, t] : m.parameters)
    if (name.ends_with(".bias") || name.ends_with("running_var") || name.ends_with("running_mean"))
      for (auto& v : t.values) v = u(rng);
  m.training = R"({"note": "test"})";
  return m;
}

TEST(Weights, RoundTripKeepsEverything) {
  TempDir dir;
  const Model m = tiny_model();
  write_model(dir.file("m.h5"), m);
  const Model r = read_model(dir.file("m.h5"));
  EXPECT_EQ(r.architecture, m.architecture);
  EXPECT_EQ(r.options.width, 2);
  EXPECT_EQ(r.options.blocks, 1);
  EXPECT_EQ(r.training, m.training);
  EXPECT_EQ(r.batch_norm.epsilon, m.batch_norm.epsilon);
  EXPECT_EQ(r.batch_norm.momentum, m.batch_norm.momentum);
  EXPECT_FALSE(describe_difference(r.system, m.system, 1e-12));
  EXPECT_FALSE(describe_difference(r.grid, m.grid, 1e-12));
  ASSERT_EQ(r.parameters.size(), m.parameters.size());
  for (const auto& [name, t] : m.parameters) {
    EXPECT_EQ(r.parameters.at(name).shape, t.shape) << name;
    EXPECT_EQ(r.parameters.at(name).values, t.values) << name;
  }
  EXPECT_THROW(write_model(dir.file("m.h5"), m), InputError);  // no silent overwrite
  EXPECT_NO_THROW(write_model(dir.file("m.h5"), m, true));
}

void expect_refused(const std::string& path, const std::string& fragment) {
  try {
    read_model(path);
    ADD_FAILURE() << path << " was accepted; expected an error mentioning '" << fragment << "'";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Weights, CorruptOrWrongFilesAreRefusedClearly) {
  TempDir dir;
  const Model m = tiny_model();
  {
    std::ofstream(dir.file("garbage.h5")) << "this is not an HDF5 file";
    expect_refused(dir.file("garbage.h5"), "not an HDF5 file");
  }
  {
    write_model(dir.file("good.h5"), m);
    const auto size = fs::file_size(dir.file("good.h5"));
    fs::copy_file(dir.file("good.h5"), dir.file("truncated.h5"));
    fs::resize_file(dir.file("truncated.h5"), size / 2);
    EXPECT_THROW(read_model(dir.file("truncated.h5")), InputError);
  }
  const auto edit = [&](const std::string& name, const std::function<void(h5::File&)>& change) {
    write_model(dir.file(name), m);
    h5::File f(dir.file(name), h5::File::Mode::ReadWrite);
    change(f);
    return dir.file(name);
  };
  const std::string victim = "/parameters/out.conv.bias";
  expect_refused(edit("missing.h5", [&](h5::File& f) { H5Ldelete(f.id(), victim.c_str(), H5P_DEFAULT); }),
                 "'out.conv.bias' of the unet3d network is missing");
  expect_refused(edit("shape.h5",
                      [&](h5::File& f) {
                        H5Ldelete(f.id(), victim.c_str(), H5P_DEFAULT);
                        f.write<float>(victim, h5::Dims{2}, std::vector<float>{1, 2}.data());
                      }),
                 "has shape [2], the unet3d network needs [1]");
  expect_refused(edit("nan.h5",
                      [&](h5::File& f) {
                        H5Ldelete(f.id(), victim.c_str(), H5P_DEFAULT);
                        const float nan = std::numeric_limits<float>::quiet_NaN();
                        f.write<float>(victim, h5::Dims{1}, &nan);
                      }),
                 "non-finite");
  expect_refused(
      edit("extra.h5",
           [&](h5::File& f) { f.write<float>("/parameters/mystery.weight", std::vector<float>{1}); }),
      "'mystery.weight' is not a parameter");
  expect_refused(
      edit("format.h5", [&](h5::File& f) { f.set_attribute("/", "nfmimo_format", std::string("volumes")); }),
      "expected 'weights'");
  expect_refused(
      edit("arch.h5", [&](h5::File& f) { f.set_attribute("/", "architecture", std::string("unet9d")); }),
      "unknown architecture 'unet9d'");
  expect_refused(edit("version.h5", [&](h5::File& f) { f.set_attribute("/", "nfmimo_version", 99LL); }),
                 "version 99 is not supported");
}

// ---- pipelines ----------------------------------------------------------------------------------------

std::vector<cfloat> random_measurements(const RadarSystem& s, int frames, unsigned seed) {
  return test::random_complex<float>(s.samples_per_frame() * std::size_t(frames), seed);
}

// The pipeline against its definition, computed with the double reference network.
TEST(Pipeline, Deep2sAndCvDeep2sFollowTheirDefinition) {
  for (const auto& [method, arch] :
       {std::pair{"deep2s", "unet3d"}, {"cv-deep2s", "cv-unet3d"}, {"deep2s-resnet", "resnet"}}) {
    SCOPED_TRACE(method);
    const Model m = tiny_model(arch);
    const int frames = 3;
    const auto y = random_measurements(m.system, frames, 4);
    LearnedPipeline pipeline(method, m, DeviceKind::Cpu, ImagingMode::Exact, 2);  // 2 + 1 frames: chunking
    std::vector<float> out(m.grid.voxels() * frames);
    pipeline.run(y.data(), frames, out.data());

    const CpuOperator op(m.system, m.grid);
    std::vector<cfloat> adjoint(m.grid.voxels() * frames);
    op.image(Method::Adjoint, y.data(), adjoint.data(), frames);
    const Network net = m.network();
    const bool cv = std::string(method) == "cv-deep2s";
    Tensor<double> input(net.input_shape(frames));
    const std::size_t V = m.grid.voxels();
    for (int f = 0; f < frames; ++f) {
      double peak = 0;
      for (std::size_t v = 0; v < V; ++v) peak = std::max(peak, double(std::abs(adjoint[f * V + v])));
      for (std::size_t v = 0; v < V; ++v) {
        const cdouble a(adjoint[f * V + v].real() / peak, adjoint[f * V + v].imag() / peak);
        if (cv)
          input.data[(2 * f) * V + v] = a.real(), input.data[(2 * f + 1) * V + v] = a.imag();
        else
          input.data[f * V + v] = std::abs(a);
      }
    }
    ReferenceNetwork ref(net, m.parameters);
    const Tensor<double> expected = ref.forward(input, Mode::Inference);
    EXPECT_TRUE(relative_error_below(view(out), view(expected.data), 2e-5));
  }
}

TEST(Pipeline, NormalisationIsPerSample) {
  const Model m = tiny_model();
  auto y = random_measurements(m.system, 2, 9);
  LearnedPipeline pipeline("deep2s", m, DeviceKind::Cpu);
  const std::size_t V = m.grid.voxels();
  std::vector<float> a(2 * V), b(2 * V);
  pipeline.run(y.data(), 2, a.data());
  for (std::size_t i = 0; i < m.system.samples_per_frame(); ++i)
    y[i] *= 1000.0f;  // frame 0 only, much brighter
  pipeline.run(y.data(), 2, b.data());
  EXPECT_TRUE(relative_error_below(view(b), view(a), 1e-5));
}

TEST(Pipeline, RefusesCudaWrongArchitectureAndMismatchedSystem) {
  const Model m = tiny_model();
  if (cuda_device_count() == 0) {
    // No silent CPU fallback: asking for CUDA without a GPU is refused with the reason.
    try {
      LearnedPipeline("deep2s", m, DeviceKind::Cuda);
      ADD_FAILURE() << "CUDA was accepted without a GPU";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("--device cuda was asked for"), std::string::npos) << e.what();
    }
  }
  // The CPU backend runs fp32 only.
  EXPECT_THROW(LearnedPipeline("deep2s", m, DeviceKind::Cpu, ImagingMode::Exact, 8, Precision::Fp16),
               InputError);
  EXPECT_THROW(LearnedPipeline("deep2s-resnet", m, DeviceKind::Cpu), InputError);
  EXPECT_THROW(LearnedPipeline("deep3s", m, DeviceKind::Cpu), InputError);
  RadarSystem other = m.system;
  other.sweep = FrequencySweep({5e9, 7.5e9, 10e9, 12.6e9});
  try {
    require_matching(m, "model.h5", other, m.grid, "meas.h5");
    ADD_FAILURE() << "a different system was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("differs"), std::string::npos) << e.what();
  }
  EXPECT_THROW(require_matching(m, "model.h5", m.system, test::small_grid(), "meas.h5"), InputError);
  EXPECT_NO_THROW(require_matching(m, "model.h5", m.system, m.grid, "meas.h5"));
}

TEST(Pipeline, MethodTableRunsDeep2sFromAWeightsFile) {
  TempDir dir;
  const Model m = tiny_model();
  write_model(dir.file("m.h5"), m);
  const auto y = random_measurements(m.system, 2, 1);
  MethodContext c;
  c.system = &m.system;
  c.grid = &m.grid;
  c.measurements = y.data();
  c.frames = 2;
  c.device = DeviceKind::Cpu;
  EXPECT_THROW(run_method("deep2s", c), InputError);  // no --model
  c.model = dir.file("m.h5");
  const MethodResult r = run_method("deep2s", c);
  ASSERT_EQ(r.magnitude.size(), 2 * m.grid.voxels());
  LearnedPipeline pipeline("deep2s", m, DeviceKind::Cpu);
  std::vector<float> expected(2 * m.grid.voxels());
  pipeline.run(y.data(), 2, expected.data());
  EXPECT_TRUE(relative_error_below(view(r.magnitude), view(expected), 1e-6));
  c.precision = "fp16";
  EXPECT_THROW(run_method("deep2s", c), InputError);
  c.precision = "";
  const ImagingGrid other = test::small_grid();
  c.grid = &other;
  EXPECT_THROW(run_method("deep2s", c), InputError);
}

// The real binary: `nfmimo reconstruct --method deep2s --model`, and its refusal of a mismatched model.
TEST(Pipeline, ReconstructCommandRunsDeep2sAndRefusesAMismatchedModel) {
  TempDir dir;
  const Model m = tiny_model();
  write_model(dir.file("model.h5"), m);
  MeasurementSet set;
  set.system = m.system;
  set.grid = m.grid;
  set.frames = 2;
  set.measurements = random_measurements(m.system, 2, 12);
  write_measurements(dir.file("in.h5"), set);
  const auto run = [&](const std::string& model, const std::string& out) {
    const std::string cmd = std::string(NFMIMO_BINARY_PATH) + " reconstruct " + dir.file("in.h5") +
                            " --out " + out + " --method deep2s --device cpu --model " + model + " > " +
                            dir.file("log.txt") + " 2>&1";
    const int status = std::system(cmd.c_str());
    std::ifstream log(dir.file("log.txt"));
    return std::pair{WEXITSTATUS(status), std::string(std::istreambuf_iterator<char>(log), {})};
  };
  const auto [rc, log] = run(dir.file("model.h5"), dir.file("out.h5"));
  ASSERT_EQ(rc, 0) << log;
  const VolumeSet v = read_volumes(dir.file("out.h5"));
  LearnedPipeline pipeline("deep2s", m, DeviceKind::Cpu);
  std::vector<float> expected(2 * m.grid.voxels());
  pipeline.run(set.measurements.data(), 2, expected.data());
  EXPECT_TRUE(relative_error_below(view(v.magnitude), view(expected), 1e-6));

  Model other = tiny_model();
  other.grid = ImagingGrid(Axis::linspace(-0.08, 0.08, 8), Axis::linspace(-0.06, 0.06, 9),
                           Axis::linspace(0.3, 0.46, 8));
  write_model(dir.file("other.h5"), other);
  const auto [rc2, log2] = run(dir.file("other.h5"), dir.file("out2.h5"));
  EXPECT_EQ(rc2, 2) << log2;
  EXPECT_NE(log2.find("imaging grid differs"), std::string::npos) << log2;
  EXPECT_FALSE(fs::exists(dir.file("out2.h5")));
}

}  // namespace
}  // namespace nfmimo::nn
