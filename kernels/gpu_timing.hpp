// GPU timing and ceilings for benchmark programs, behind a header that compiles without nvcc. In a build
// without CUDA every entry point throws (benchmarks only construct these for GPU rows).
#pragma once

#include <cstddef>
#include <memory>

#include "kernels/device_buffer.hpp"

namespace nfmimo {

// Times work on a stream with CUDA events (device time, no host synchronisation inside the timed region).
class GpuEventTimer {
 public:
  GpuEventTimer();
  ~GpuEventTimer();
  GpuEventTimer(const GpuEventTimer&) = delete;
  GpuEventTimer& operator=(const GpuEventTimer&) = delete;
  void start(cudaStream_t stream);
  void stop(cudaStream_t stream);
  double elapsed_ms() const;  // waits for the stop event

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Waits for all work on a stream.
void gpu_synchronize(cudaStream_t stream);

// Device memory in use (total - free) in bytes; 0 without a GPU.
std::size_t gpu_memory_used();

// Ceilings measured in the same run as the benchmark rows.
struct GpuCeilings {
  double fp32_tflops = 0;  // FMA throughput of a register-resident kernel
  double copy_gbs = 0;     // device-to-device copy bandwidth (read + write bytes / time)
  // Matrix-unit rates: cuBLAS GEMM of 8192^3 (best of 5), float32 accumulation in every case. fp16 / bf16:
  // 16-bit inputs on tensor cores; tf32: float32 inputs on TF32 tensor cores; fp32:
  // CUBLAS_COMPUTE_32F_PEDANTIC (no tensor cores). These are the ceilings of the learned rows at the same
  // precision.
  double gemm_fp16_tflops = 0, gemm_bf16_tflops = 0, gemm_tf32_tflops = 0, gemm_fp32_tflops = 0;
};
GpuCeilings measure_gpu_ceilings();

}  // namespace nfmimo
