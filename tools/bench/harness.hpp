// The benchmark harness behind `nfmimo bench`: timing rules, statistics, ceilings (floors), environment
// block, and the JSON / CSV / table reports. Benchmarks are programs, never timed tests.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/device_buffer.hpp"

namespace nfmimo::bench {

struct TimingRules {
  int warmup = 3;
  int min_iterations = 3;       // always at least this many
  int target_iterations = 100;  // stop after this many ...
  double target_seconds = 5;    // ... or after this much time, whichever comes first
};

struct Stats {
  double median_ms = 0, p10_ms = 0, p90_ms = 0, p99_ms = 0, mean_ms = 0;
  int iterations = 0;
};
Stats summarise(std::vector<double> samples_ms);

// Runs `call` under the rules. With a stream, each call is timed with CUDA events on that stream (device
// time); without, with the steady clock around the (synchronous) call.
std::vector<double> time_calls(const TimingRules& rules, const std::function<void()>& call,
                               cudaStream_t stream = nullptr);

struct Row {
  std::string op;         // e.g. "adjoint"
  std::string mode;       // e.g. "exact", "fast"
  std::string device;     // "cpu" or "cuda"
  std::string precision;  // e.g. "fp32"
  int batch = 1;
  Stats compute;                          // per call, data already on the device
  double upload_ms = 0, download_ms = 0;  // per call, host <-> device (GPU rows)
  double flops_per_volume = 0, bytes_per_volume = 0;
  double device_memory_bytes = 0;
  // Correctness of this row's output against the reference path.
  double check_error = -1, check_tolerance = 0;
  bool check_passed = false;
  std::string check_against;
};

struct Ceilings {
  double flops_per_s = 0;  // measured arithmetic peak of the device (FMA)
  double bytes_per_s = 0;  // measured memory bandwidth
  std::string how;
};
Ceilings measure_cpu_ceilings();

nlohmann::json environment();  // CPU, threads, compiler, commit, date, GPU/driver/CUDA/cuDNN when present
nlohmann::json to_json(const Row& row, const Ceilings& ceilings);

// Prints the table (one line per row: latency percentiles, us/volume, volumes/s, floor and ratio to it,
// check).
void print_table(const std::vector<Row>& rows, const std::vector<Ceilings>& ceilings_per_row);
void write_csv(const std::string& path, const std::vector<Row>& rows,
               const std::vector<Ceilings>& ceilings_per_row);

}  // namespace nfmimo::bench
