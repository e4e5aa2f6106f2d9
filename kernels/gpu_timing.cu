#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/cuda_check.hpp"
#include "kernels/cuda_event.hpp"
#include "kernels/device_buffer.hpp"
#include "kernels/gpu_timing.hpp"

namespace nfmimo {

struct GpuEventTimer::Impl {
  CudaEvent start, stop;
};

GpuEventTimer::GpuEventTimer() : impl_(std::make_unique<Impl>()) {}
GpuEventTimer::~GpuEventTimer() = default;
void GpuEventTimer::start(cudaStream_t s) { impl_->start.record(s); }
void GpuEventTimer::stop(cudaStream_t s) { impl_->stop.record(s); }
double GpuEventTimer::elapsed_ms() const { return impl_->stop.since(impl_->start); }

void gpu_synchronize(cudaStream_t s) { NFMIMO_CUDA_CHECK(cudaStreamSynchronize(s)); }

std::size_t gpu_memory_used() {
  std::size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return total - free;
}

namespace {

// 8 independent FMA chains per thread keep the pipes full; the result is written so nothing is optimised
// away.
__global__ void fma_peak_kernel(float* out, int iterations, float a, float b) {
  float v[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = threadIdx.x * 1e-3f + i;
  for (int it = 0; it < iterations; ++it)
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = fmaf(v[i], a, b);
  float s = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) s += v[i];
  if (s == 1234.5f) out[threadIdx.x] = s;
}

__global__ void copy_kernel(const float4* __restrict__ in, float4* __restrict__ out, long long n) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x)
    out[i] = in[i];
}

}  // namespace

// cuBLAS failures (fmt is not used in CUDA translation units).
static void check_cublas(cublasStatus_t s, const char* call) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw DeviceError(detail::concat("cuBLAS error ", int(s), " in ", call), call, int(s));
}

// Best-of-five TFLOP/s of an n^3 GEMM with inputs of `type` and float32 accumulation (`compute`).
static double gemm_tflops(cublasHandle_t h, cudaStream_t stream, cudaDataType_t type,
                          cublasComputeType_t compute, std::size_t element_bytes) {
  constexpr int n = 8192;
  DeviceBuffer<unsigned char> a(std::size_t(n) * n * element_bytes), b(std::size_t(n) * n * element_bytes);
  DeviceBuffer<float> c(std::size_t(n) * n);
  // Small values (bytes 0x10: about 1e-4 as half, 3e-29 as float): no overflow, and the timing does not
  // depend on the data.
  NFMIMO_CUDA_CHECK(cudaMemsetAsync(a.data(), 0x10, a.bytes(), stream));
  NFMIMO_CUDA_CHECK(cudaMemsetAsync(b.data(), 0x10, b.bytes(), stream));
  const float alpha = 1.f, beta = 0.f;
  const auto call = [&] {
    check_cublas(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a.data(), type, n, b.data(), type,
                              n, &beta, c.data(), CUDA_R_32F, n, compute, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  };
  call();  // warm-up (heuristics, kernel load)
  CudaEvent t0, t1;
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    t0.record(stream);
    call();
    t1.record(stream);
    best = std::min(best, double(t1.since(t0)));
  }
  return 2.0 * double(n) * n * n / (best * 1e-3) / 1e12;
}

GpuCeilings measure_gpu_ceilings() {
  GpuCeilings c;
  DeviceStream stream;
  CudaEvent t0, t1;
  int sms = 0;
  NFMIMO_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  DeviceBuffer<float> sink(1024);
  const int iterations = 1 << 14, blocks = sms * 16, threads = 256;
  fma_peak_kernel<<<blocks, threads, 0, stream.get()>>>(sink.data(), 64, 0.999f, 1e-3f);  // warm-up
  t0.record(stream.get());
  fma_peak_kernel<<<blocks, threads, 0, stream.get()>>>(sink.data(), iterations, 0.999f, 1e-3f);
  t1.record(stream.get());
  NFMIMO_CUDA_CHECK_LAUNCH();
  const double ms = t1.since(t0);
  c.fp32_tflops = 2.0 * 8 * iterations * double(blocks) * threads / (ms * 1e-3) / 1e12;

  const long long n = 1ll << 26;  // 1 GiB in, 1 GiB out (float4)
  DeviceBuffer<float4> a(n), b(n);
  copy_kernel<<<sms * 8, 512, 0, stream.get()>>>(a.data(), b.data(), n);
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    t0.record(stream.get());
    copy_kernel<<<sms * 8, 512, 0, stream.get()>>>(a.data(), b.data(), n);
    t1.record(stream.get());
    best = std::min(best, double(t1.since(t0)));
  }
  c.copy_gbs = 2.0 * n * sizeof(float4) / (best * 1e-3) / 1e9;
  a.release(), b.release();

  cublasHandle_t h = nullptr;
  check_cublas(cublasCreate(&h), "cublasCreate");
  try {
    check_cublas(cublasSetStream(h, stream.get()), "cublasSetStream");
    c.gemm_fp16_tflops = gemm_tflops(h, stream.get(), CUDA_R_16F, CUBLAS_COMPUTE_32F, 2);
    c.gemm_bf16_tflops = gemm_tflops(h, stream.get(), CUDA_R_16BF, CUBLAS_COMPUTE_32F, 2);
    c.gemm_tf32_tflops = gemm_tflops(h, stream.get(), CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, 4);
    c.gemm_fp32_tflops = gemm_tflops(h, stream.get(), CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC, 4);
  } catch (...) {
    cublasDestroy(h);
    throw;
  }
  cublasDestroy(h);
  return c;
}

}  // namespace nfmimo
