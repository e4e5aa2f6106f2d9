#include "tools/bench/harness.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>
#include <numeric>

#include <fmt/format.h>

#include "data/atomic_file.hpp"
#include "kernels/device.hpp"
#include "kernels/gpu_timing.hpp"

#ifndef NFMIMO_GIT_COMMIT
#define NFMIMO_GIT_COMMIT "unknown"
#endif

namespace nfmimo::bench {
namespace {

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = q * (sorted.size() - 1);
  const std::size_t i = static_cast<std::size_t>(pos);
  const double f = pos - i;
  return i + 1 < sorted.size() ? sorted[i] * (1 - f) + sorted[i + 1] * f : sorted[i];
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

double floor_us(const Row& r, const Ceilings& c) {
  const double t_flops = c.flops_per_s > 0 ? r.flops_per_volume / c.flops_per_s : 0;
  const double t_bytes = c.bytes_per_s > 0 ? r.bytes_per_volume / c.bytes_per_s : 0;
  return std::max(t_flops, t_bytes) * 1e6;
}

}  // namespace

Stats summarise(std::vector<double> s) {
  Stats st;
  if (s.empty()) return st;
  std::sort(s.begin(), s.end());
  st.iterations = static_cast<int>(s.size());
  st.median_ms = percentile(s, 0.5);
  st.p10_ms = percentile(s, 0.1);
  st.p90_ms = percentile(s, 0.9);
  st.p99_ms = percentile(s, 0.99);
  st.mean_ms = std::accumulate(s.begin(), s.end(), 0.0) / s.size();
  return st;
}

std::vector<double> time_calls(const TimingRules& rules, const std::function<void()>& call,
                               cudaStream_t stream) {
  std::vector<double> samples;
  std::unique_ptr<GpuEventTimer> timer;
  if (stream) timer = std::make_unique<GpuEventTimer>();
  for (int i = 0; i < rules.warmup; ++i) call();
  if (stream) gpu_synchronize(stream);
  const auto begin = std::chrono::steady_clock::now();
  while (true) {
    if (stream) {
      timer->start(stream);
      call();
      timer->stop(stream);
      samples.push_back(timer->elapsed_ms());
    } else {
      const auto t0 = std::chrono::steady_clock::now();
      call();
      samples.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    const int n = static_cast<int>(samples.size());
    if (n >= rules.min_iterations && (n >= rules.target_iterations || elapsed >= rules.target_seconds)) break;
  }
  return samples;
}

Ceilings measure_cpu_ceilings() {
  Ceilings c;
  // Arithmetic: 8 independent 8-lane FMA chains per thread (AVX2: 2 FMA pipes x 4-cycle latency in flight).
  using v8f = float __attribute__((vector_size(32)));
  constexpr long iterations = 20'000'000;
  double best = 0;
  for (int rep = 0; rep < 2; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    float sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
      v8f v[8];
      for (int i = 0; i < 8; ++i) v[i] = v8f{} + (1.0f + i * 1e-3f + omp_get_thread_num());
      const v8f a = v8f{} + 0.9999f, b = v8f{} + 1e-4f;
      for (long it = 0; it < iterations; ++it)
        for (int i = 0; i < 8; ++i) v[i] = v[i] * a + b;
      for (int i = 0; i < 8; ++i)
        for (int l = 0; l < 8; ++l) sink += v[i][l];
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (sink == 12345.f) std::printf(" ");
    best = std::max(best, 2.0 * 8 * 8 * iterations * omp_get_max_threads() / s);
  }
  c.flops_per_s = best;
  // Bandwidth: a parallel copy of 256 MiB (read + write bytes).
  const std::size_t n = std::size_t(64) << 20;
  std::vector<float> a(n, 1.0f), b(n, 0.0f);
  double best_bw = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < n; ++i) b[i] = a[i];
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best_bw = std::max(best_bw, 2.0 * n * sizeof(float) / s);
  }
  c.bytes_per_s = best_bw;
  c.how = fmt::format("AVX2 FMA loop on {} threads; parallel copy of 256 MiB", omp_get_max_threads());
  return c;
}

nlohmann::json environment() {
  nlohmann::json e;
  e["cpu"] = cpu_model();
  e["threads"] = omp_get_max_threads();
  e["compiler"] = __VERSION__;
  e["git_commit"] = NFMIMO_GIT_COMMIT;
  e["nfmimo_version"] = NFMIMO_VERSION;
  const std::time_t now = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  e["date"] = date;
  e["cuda_built"] = cuda_built();
  if (auto g = gpu_info(0)) {
    e["gpu"] = g->name;
    e["gpu_compute_capability"] = fmt::format("{}.{}", g->compute_major, g->compute_minor);
    e["gpu_memory_gib"] = g->memory_bytes / double(1 << 30);
    e["driver_version"] = g->driver_version;
    e["cuda_runtime_version"] = g->runtime_version;
    e["cudnn_version"] = g->cudnn_version;
  } else {
    e["gpu"] = nullptr;
    e["gpu_unavailable_reason"] = cuda_unavailable_reason();
  }
  return e;
}

nlohmann::json to_json(const Row& r, const Ceilings& c) {
  nlohmann::json j;
  j["op"] = r.op;
  j["mode"] = r.mode;
  j["device"] = r.device;
  j["precision"] = r.precision;
  j["batch"] = r.batch;
  j["iterations"] = r.compute.iterations;
  j["latency_ms"] = {{"p50", r.compute.median_ms},
                     {"p10", r.compute.p10_ms},
                     {"p90", r.compute.p90_ms},
                     {"p99", r.compute.p99_ms},
                     {"mean", r.compute.mean_ms}};
  const double us = r.compute.median_ms * 1e3 / r.batch;
  j["us_per_volume"] = us;
  j["volumes_per_s"] = r.compute.median_ms > 0 ? r.batch / (r.compute.median_ms * 1e-3) : 0;
  j["upload_ms"] = r.upload_ms;
  j["download_ms"] = r.download_ms;
  j["host_to_host_us_per_volume"] = (r.compute.median_ms + r.upload_ms + r.download_ms) * 1e3 / r.batch;
  j["flops_per_volume"] = r.flops_per_volume;
  j["bytes_per_volume"] = r.bytes_per_volume;
  const double f = floor_us(r, c);
  j["floor_us_per_volume"] = f;
  j["floor_bound"] =
      (c.flops_per_s > 0 && r.flops_per_volume / c.flops_per_s >= r.bytes_per_volume / c.bytes_per_s)
          ? "flops"
          : "bytes";
  j["times_floor"] = f > 0 ? us / f : 0;
  j["achieved_gflops"] =
      r.compute.median_ms > 0 ? r.flops_per_volume * r.batch / (r.compute.median_ms * 1e-3) / 1e9 : 0;
  j["device_memory_bytes"] = r.device_memory_bytes;
  j["check"] = {{"relative_error", r.check_error},
                {"tolerance", r.check_tolerance},
                {"passed", r.check_passed},
                {"against", r.check_against}};
  return j;
}

void print_table(const std::vector<Row>& rows, const std::vector<Ceilings>& ceilings) {
  std::printf("%-16s %-6s %-5s %-5s %6s %10s %10s %10s %12s %12s %10s %8s  %s\n", "op", "mode", "dev", "prec",
              "batch", "p50 ms", "p90 ms", "p99 ms", "us/volume", "volumes/s", "floor us", "x floor",
              "check");
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const double us = r.compute.median_ms * 1e3 / r.batch;
    const double f = floor_us(r, ceilings[i]);
    std::printf("%-16s %-6s %-5s %-5s %6d %10.4f %10.4f %10.4f %12.3f %12.1f %10.3f %8.2f  %s (%.1e)\n",
                r.op.c_str(), r.mode.c_str(), r.device.c_str(), r.precision.c_str(), r.batch,
                r.compute.median_ms, r.compute.p90_ms, r.compute.p99_ms, us,
                r.batch / (r.compute.median_ms * 1e-3), f, f > 0 ? us / f : 0.0,
                r.check_passed ? "ok" : "FAILED", r.check_error);
  }
}

void write_csv(const std::string& path, const std::vector<Row>& rows, const std::vector<Ceilings>& ceilings) {
  std::string text =
      "op,mode,device,precision,batch,iterations,p50_ms,p10_ms,p90_ms,p99_ms,us_per_volume,volumes_per_s,"
      "upload_ms,download_ms,floor_us_per_volume,times_floor,check_error,check_passed\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const double us = r.compute.median_ms * 1e3 / r.batch, fl = floor_us(r, ceilings[i]);
    text += fmt::format(
        "{},{},{},{},{},{},{:.6f},{:.6f},{:.6f},{:.6f},{:.4f},{:.2f},{:.6f},{:.6f},{:.4f},{:.3f},{:.3e},{}\n",
        r.op, r.mode, r.device, r.precision, r.batch, r.compute.iterations, r.compute.median_ms,
        r.compute.p10_ms, r.compute.p90_ms, r.compute.p99_ms, us, r.batch / (r.compute.median_ms * 1e-3),
        r.upload_ms, r.download_ms, fl, fl > 0 ? us / fl : 0.0, r.check_error, r.check_passed);
  }
  AtomicOutput out(path, true);  // staged by the command's OutputSet, which applies --force
  write_file_checked(out.temporary_path(), text, path);
  out.commit();
}

}  // namespace nfmimo::bench
