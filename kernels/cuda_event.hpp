// RAII CUDA event for timing and ordering (CUDA translation units only).
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda_check.hpp"

namespace nfmimo {

class CudaEvent {
 public:
  CudaEvent() { NFMIMO_CUDA_CHECK(cudaEventCreate(&e_)); }
  ~CudaEvent() {
    if (e_) NFMIMO_CUDA_LOG(cudaEventDestroy(e_));
  }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  cudaEvent_t get() const { return e_; }
  void record(cudaStream_t s) { NFMIMO_CUDA_CHECK(cudaEventRecord(e_, s)); }
  // Milliseconds from `start` to this event (both recorded and complete).
  float since(const CudaEvent& start) const {
    NFMIMO_CUDA_CHECK(cudaEventSynchronize(e_));
    float ms = 0;
    NFMIMO_CUDA_CHECK(cudaEventElapsedTime(&ms, start.e_, e_));
    return ms;
  }

 private:
  cudaEvent_t e_ = nullptr;
};

}  // namespace nfmimo
