// Speed of the synthesizer in scenes per second: targets alone, targets + forward model + noise, and
// end-to-end to disk, with the disk's own write rate measured beside it.
//
//   bench_synthesizer [--device auto|cpu|cuda] [--freqs K] [--batch N] [--seconds T] [--dir D] [--gzip L]
//                     [--threads N]
//
// Each stage runs whole batches for at least T seconds after one warm-up batch. On the GPU the first two
// stages generate into device memory (what the trainer uses); the host-memory rate (with downloads) is
// printed too.
#include <fcntl.h>
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>

#if NFMIMO_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#include "radar/error.hpp"
#include "synthesizer/dataset.hpp"
#include "synthesizer/synthesizer.hpp"

namespace nfmimo {
namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string device = "auto", dir = ".";
  int freqs = 15, batch = 0, gzip = 0, threads = 0;
  double seconds = 5;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw InputError(k + " needs a value");
      return argv[++i];
    };
    if (k == "--device")
      a.device = value();
    else if (k == "--freqs")
      a.freqs = std::stoi(value());
    else if (k == "--batch")
      a.batch = std::stoi(value());
    else if (k == "--seconds")
      a.seconds = std::stod(value());
    else if (k == "--dir")
      a.dir = value();
    else if (k == "--gzip")
      a.gzip = std::stoi(value());
    else if (k == "--threads")
      a.threads = std::stoi(value());
    else
      throw InputError("unknown option " + k + " (see the header of bench_synthesizer.cpp)");
  }
  return a;
}

// Runs `step` (one batch of `batch` scenes) for at least `seconds`; returns scenes per second.
double rate(int batch, double seconds, const std::function<void(std::uint64_t)>& step) {
  step(0);  // warm-up (plans, first-touch, caches)
  std::uint64_t first = batch, done = 0;
  const auto t0 = Clock::now();
  double elapsed = 0;
  do {
    step(first);
    first += batch;
    done += batch;
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (elapsed < seconds);
  return done / elapsed;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

// Sequential write of `bytes` in 8 MiB blocks, then fsync: the disk's own rate (MB/s).
double disk_write_rate(const std::string& path, std::size_t bytes) {
  std::vector<char> block(8 << 20, 1);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw InputError(path + ": cannot create the disk test file");
  const auto t0 = Clock::now();
  for (std::size_t done = 0; done < bytes;) {
    const std::size_t n = std::min(block.size(), bytes - done);
    if (::write(fd, block.data(), n) != static_cast<ssize_t>(n)) {
      ::close(fd);
      throw InputError(path + ": write failed (disk full?)");
    }
    done += n;
  }
  ::fsync(fd);
  ::close(fd);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::filesystem::remove(path);
  return bytes / s / 1e6;
}

void run(const Args& a) {
  if (a.threads > 0) omp_set_num_threads(a.threads);
  const RadarSystem system = paper_system(a.freqs);
  const ImagingGrid grid = ImagingGrid::paper();
  const SceneConfig config;  // the defaults: 1-5 objects of every type, 2-12 cm, random phase, SNR 30 dB
  const DeviceKind device = resolve_device(parse_device(a.device));
  const int batch = a.batch > 0 ? a.batch : (device == DeviceKind::Cuda ? 1024 : 64);
  const Synthesizer synth(system, grid, config, 1, device, batch);
  const std::size_t V = grid.voxels(), S = system.samples_per_frame();

  std::printf("# bench_synthesizer (nfmimo %s)\n", NFMIMO_VERSION);
  std::printf("device   : %s\n", synth.device_description().c_str());
  std::printf("cpu      : %s, %d OpenMP threads\n", cpu_model().c_str(), omp_get_max_threads());
  std::printf("system   : %s\n", describe(system).c_str());
  std::printf("grid     : %s\n", describe(grid).c_str());
  std::printf("scenes   : %s\n", scene_config_json(config).c_str());
  std::printf("batch    : %d, at least %.1f s per stage\n", batch, a.seconds);

  std::vector<cfloat> x(V * batch), y(S * batch);
  std::vector<float> snr(batch);
  {  // what the scenes look like: occupancy drives the cost of the sparse forward model
    synth.generate_targets(0, batch, x.data());
    std::size_t nonzero = 0;
    for (const cfloat& v : x) nonzero += v != cfloat(0);
    std::printf("occupancy: %.2f%% of voxels non-zero (mean over %d scenes)\n", 100.0 * nonzero / x.size(),
                batch);
  }

  const double host_targets =
      rate(batch, a.seconds, [&](std::uint64_t first) { synth.generate_targets(first, batch, x.data()); });
  const double host_full = rate(batch, a.seconds, [&](std::uint64_t first) {
    synth.generate(first, batch, x.data(), y.data(), snr.data());
  });
  if (device == DeviceKind::Cuda) {
#if NFMIMO_HAVE_CUDA
    cfloat *dx = nullptr, *dy = nullptr;
    float* ds = nullptr;
    cudaStream_t stream;
    if (cudaMalloc(&dx, V * batch * sizeof(cfloat)) != cudaSuccess ||
        cudaMalloc(&dy, S * batch * sizeof(cfloat)) != cudaSuccess ||
        cudaMalloc(&ds, batch * sizeof(float)) != cudaSuccess || cudaStreamCreate(&stream) != cudaSuccess)
      throw DeviceError("cudaMalloc failed for the benchmark buffers", "cudaMalloc", 0);
    const double dev_targets = rate(batch, a.seconds, [&](std::uint64_t first) {
      synth.generate_targets_device(first, batch, dx, stream);
      cudaStreamSynchronize(stream);
    });
    const double dev_full = rate(batch, a.seconds, [&](std::uint64_t first) {
      synth.generate_device(first, batch, dx, dy, ds, stream);
      cudaStreamSynchronize(stream);
    });
    std::printf(
        "targets alone               : %10.0f scenes/s (device memory)   %10.0f scenes/s (host memory)\n",
        dev_targets, host_targets);
    std::printf(
        "targets + forward + noise   : %10.0f scenes/s (device memory)   %10.0f scenes/s (host memory)\n",
        dev_full, host_full);
    cudaFree(dx);
    cudaFree(dy);
    cudaFree(ds);
    cudaStreamDestroy(stream);
#endif
  } else {
    std::printf("targets alone               : %10.1f scenes/s\n", host_targets);
    std::printf("targets + forward + noise   : %10.1f scenes/s\n", host_full);
  }

  // End-to-end: a dataset of about `seconds` worth of scenes at the rate just measured.
  const std::int64_t count = std::max<std::int64_t>(batch, static_cast<std::int64_t>(host_full * a.seconds));
  DatasetSpec spec;
  spec.config = config;
  spec.count = count;
  spec.system = system;
  spec.grid = grid;
  DatasetRunOptions ro;
  ro.output = (std::filesystem::path(a.dir) / "bench_synthesizer.h5").string();
  ro.force = true;
  ro.batch = batch;
  ro.device = device;
  ro.gzip_level = a.gzip;
  const DatasetRunResult r = synthesize_dataset(spec, ro);
  const std::size_t bytes = std::filesystem::file_size(ro.output);
  std::filesystem::remove(ro.output);
  const double e2e = r.written / r.seconds;
  std::printf("end-to-end to disk (gzip %d): %10.1f scenes/s (%lld scenes, %.1f MB/s of file)\n", a.gzip, e2e,
              static_cast<long long>(r.written), bytes / r.seconds / 1e6);
  const double disk = disk_write_rate(ro.output + ".disk", bytes);
  std::printf(
      "disk write rate (same bytes): %10.1f MB/s -> at most %.1f scenes/s at this file's bytes per scene\n",
      disk, disk * 1e6 / (bytes / static_cast<double>(r.written)));
}

}  // namespace
}  // namespace nfmimo

int main(int argc, char** argv) {
  try {
    nfmimo::run(nfmimo::parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_synthesizer: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
