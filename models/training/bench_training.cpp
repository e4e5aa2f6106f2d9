// Training throughput: samples per second of whole optimisation steps (forward, loss, backward, clipping,
// Adam) through the TrainingBackend interface, and of the on-the-fly data source (synthesizer scenes + exact
// adjoint + normalisation), on the paper's system and grid. A program, not a test.
//
//   nfmimo_bench_training [--arch unet3d] [--batch 8] [--steps 5] [--warmup 1] [--device cpu|cuda]
//                         [--precision fp32|tf32|bf16|fp16] [--loss mse|l1|mse+ssim] [--width W] [--freqs 15]
//                         [--data-batches 4] [--no-data]
// Prints one JSON object per line: {"what", "arch", "batch", "median_step_ms", "samples_per_s", "device",
// ...}. The GPU backend is timed with host clocks around step() (which returns the loss, so it synchronises).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "models/nn/architectures.hpp"
#include "models/learned/composite.hpp"
#include "models/training/backend.hpp"
#include "models/training/data.hpp"
#include "radar/error.hpp"

using namespace nfmimo;
using namespace nfmimo::nn;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) try {
  std::string arch = "unet3d", device = "cpu", precision = "fp32", loss = "mse";
  int batch = 8, steps = 5, warmup = 1, width = 0, freqs = 15, data_batches = 4;
  bool data = true;
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
      arch = next();
    else if (a == "--batch")
      batch = std::atoi(next().c_str());
    else if (a == "--steps")
      steps = std::max(1, std::atoi(next().c_str()));
    else if (a == "--warmup")
      warmup = std::max(0, std::atoi(next().c_str()));
    else if (a == "--device")
      device = next();
    else if (a == "--precision")
      precision = next();
    else if (a == "--loss")
      loss = next();
    else if (a == "--width")
      width = std::atoi(next().c_str());
    else if (a == "--freqs")
      freqs = std::atoi(next().c_str());
    else if (a == "--data-batches")
      data_batches = std::max(1, std::atoi(next().c_str()));
    else if (a == "--no-data")
      data = false;
    else {
      std::fprintf(
          stderr,
          "usage: %s [--arch A] [--batch N] [--steps N] [--warmup N] [--device cpu|cuda] [--precision P] "
          "[--loss L] [--width W] [--freqs K] [--data-batches N] [--no-data]\n",
          argv[0]);
      return 2;
    }
  }
  const ImagingGrid grid = ImagingGrid::paper();
  const RadarSystem system = paper_system(freqs);
  const bool composite = is_composite_architecture(arch);
  const Network net = build_network(arch, grid.x().size, grid.y().size, grid.z().size, {.width = width});
  Parameters initial = initial_parameters(net, 1);
  const DeviceKind kind = parse_device(device);
  std::unique_ptr<TrainingBackend> backend;
  if (composite) {
    // deepdi / deep2s-plus: the dense layer (K * 156 x 30625 complex) and the CV U-Net, CPU only.
    require(resolve_device(kind) == DeviceKind::Cpu, "the composites train on the CPU only");
    add_initial_dense_parameters(arch, system, grid, 1, initial);
    backend = make_cpu_composite_training_backend(net, int(system.samples_per_frame()), std::move(initial));
  } else {
    backend = resolve_device(kind) == DeviceKind::Cuda
                  ? make_gpu_training_backend(net, initial, parse_precision(precision))
                  : make_cpu_training_backend(net, initial);
  }

  // Inputs like the real ones: sparse non-negative volumes in [0, 1] (composites: unit-scale measurements).
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> input(backend->input_size() * std::size_t(batch)),
      target(net.output_shape(batch).elements());
  for (auto& v : input) v = composite ? 1e-3f * (u(rng) - 0.5f) : u(rng) < 0.1f ? u(rng) : 0.0f;
  for (auto& v : target) v = u(rng) < 0.03f ? u(rng) : 0.0f;
  OptimizerSettings settings;
  settings.loss = parse_loss(loss);
  std::vector<double> ms;
  for (int s = 0; s < warmup + steps; ++s) {
    const auto t0 = Clock::now();
    const StepResult r = backend->step(input.data(), target.data(), batch, settings);
    const double t = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!r.finite) throw Error("the benchmark step was not finite");
    if (s >= warmup) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  std::printf(
      "{\"what\": \"step\", \"arch\": \"%s\", \"batch\": %d, \"loss\": \"%s\", \"precision\": \"%s\", "
      "\"steps\": %d, \"median_step_ms\": %.1f, \"min_step_ms\": %.1f, \"samples_per_s\": %.2f, \"threads\": "
      "%d, "
      "\"device\": \"%s\"}\n",
      arch.c_str(), batch, loss.c_str(), precision.c_str(), steps, median, ms.front(), 1e3 * batch / median,
      omp_get_max_threads(), backend->description().c_str());
  std::fflush(stdout);

  if (data) {
    // The on-the-fly source alone, on the calling thread's OpenMP threads (in training it runs on one thread
    // in the prefetcher, overlapped with the steps).
    SynthesizedSourceSettings ss;
    ss.format = {system, grid, architecture_input_channels(arch) == 2};
    ss.format.measurement_input = composite;
    ss.batch = batch;
    ss.batches_per_epoch = data_batches;
    ss.device = kind;
    // On the GPU: the device source, timed through its host copy (an upper bound on the device path's time).
    auto source = resolve_device(kind) == DeviceKind::Cuda ? make_gpu_synthesized_source(ss)
                                                           : make_synthesized_source(ss);
    HostBatch b;
    source->produce(0, 0, b);  // warm-up (plans)
    const auto t0 = Clock::now();
    for (int i = 1; i < data_batches; ++i) source->produce(0, i, b);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    const int n = (data_batches - 1) * batch;
    std::printf(
        "{\"what\": \"synthesize+adjoint\", \"batch\": %d, \"samples\": %d, \"samples_per_s\": %.1f, "
        "\"threads\": %d, \"device\": \"%s\"}\n",
        batch, n, n > 0 ? n / s : 0.0, omp_get_max_threads(), source->description().c_str());
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "nfmimo_bench_training: %s\n", e.what());
  return 2;
}
