// Speed of the networks on the CPU fast path: microseconds per volume for inference (and optionally a
// training step: forward with batch statistics plus backward), on the paper's grid. A program, not a test.
//
//   nfmimo_bench_networks [--arch unet3d,resnet,...] [--batch 1,8] [--repeat 3] [--train] [--pipeline]
// --pipeline also times the whole learned method (adjoint on the CPU, paper system K = 15, normalisation,
// network) named after the architecture (deep2s, deep2s-unet2d, deep2s-resnet, cv-deep2s).
// Prints one JSON object per line: {"arch", "batch", "phase", "median_ms", "us_per_volume", "device"}.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "models/nn/architectures.hpp"
#include "models/nn/cpu/network.hpp"
#include "models/learned/pipeline.hpp"
#include "radar/error.hpp"
#include "radar/system.hpp"

using namespace nfmimo;
using namespace nfmimo::nn;

static std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

int main(int argc, char** argv) {
  std::vector<std::string> archs = {"unet3d"};
  std::vector<int> batches = {1, 8};
  int repeat = 3;
  bool train = false, pipeline = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--arch")
      archs = split(next());
    else if (a == "--batch") {
      batches.clear();
      for (const auto& b : split(next())) batches.push_back(std::atoi(b.c_str()));
    } else if (a == "--repeat")
      repeat = std::max(1, std::atoi(next().c_str()));
    else if (a == "--train")
      train = true;
    else if (a == "--pipeline")
      pipeline = true;
    else {
      std::fprintf(stderr,
                   "usage: %s [--arch unet3d,unet2d,resnet,cv-unet3d] [--batch 1,8] [--repeat N] [--train] "
                   "[--pipeline]\n",
                   argv[0]);
      return 2;
    }
  }
  const auto report = [](const std::string& arch, int batch, const char* phase, std::vector<double> ms,
                         const std::string& device) {
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    std::printf(
        "{\"arch\": \"%s\", \"batch\": %d, \"phase\": \"%s\", \"median_ms\": %.2f, \"us_per_volume\": %.0f, "
        "\"device\": \"%s\"}\n",
        arch.c_str(), batch, phase, median, median * 1e3 / batch, device.c_str());
    std::fflush(stdout);
  };
  const auto time_ms = [](auto&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  try {
    const ImagingGrid grid = ImagingGrid::paper();
    for (const auto& arch : archs) {
      const Network net = build_network(arch, grid.x().size, grid.y().size, grid.z().size);
      const Parameters params = initial_parameters(net, 7);
      for (int batch : batches) {
        const Shape is = net.input_shape(batch), os = net.output_shape(batch);
        std::vector<float> input(is.elements()), output(os.elements()), grad(os.elements());
        std::mt19937 rng(1);
        std::uniform_real_distribution<float> u(0, 1);
        for (auto& v : input) v = u(rng);
        for (auto& v : grad) v = 1e-3f * (u(rng) - 0.5f);  // an MSE-like output gradient
        for (const bool training : {false, true}) {
          if (training && !train) continue;
          CpuNetwork network(net, params, training ? Mode::Training : Mode::Inference);
          const auto step = [&] {
            network.forward(input.data(), output.data(), batch);
            if (training) network.backward(grad.data(), nullptr);
          };
          step();  // warm-up: plans, primitives, first touch of the buffers
          std::vector<double> ms;
          for (int r = 0; r < repeat; ++r) ms.push_back(time_ms(step));
          report(arch, batch, training ? "train_step" : "inference", ms, network.description());
        }
        if (pipeline) {
          const std::string method = arch == "unet3d"      ? "deep2s"
                                     : arch == "cv-unet3d" ? "cv-deep2s"
                                                           : "deep2s-" + arch;
          const RadarSystem system = paper_system(15);
          Model model = make_model(arch, system, grid);
          LearnedPipeline p(method, std::move(model), DeviceKind::Cpu, ImagingMode::Exact, batch);
          std::vector<cfloat> y(system.samples_per_frame() * std::size_t(batch));
          for (auto& v : y) v = {u(rng) - 0.5f, u(rng) - 0.5f};
          std::vector<float> volumes(grid.voxels() * std::size_t(batch));
          const auto run = [&] { p.run(y.data(), batch, volumes.data()); };
          run();
          std::vector<double> ms;
          for (int r = 0; r < repeat; ++r) ms.push_back(time_ms(run));
          report(method, batch, "pipeline", ms, p.device_description());
        }
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
