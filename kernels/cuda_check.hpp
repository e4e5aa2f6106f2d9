// Checked calls into CUDA, cuFFT and cuDNN (CUDA translation units only). The throwing form reports the
// failed expression and the library's status; out-of-memory becomes OutOfMemoryError with advice. The logging
// form is for destructors, which must not throw.
#pragma once

#include <cuda_runtime.h>
#include <cufft.h>

#include <cstdio>
#include <sstream>
#include <string>

#include "radar/error.hpp"

// fmt is not used in CUDA translation units: nvcc's front end cannot evaluate its consteval format checks.
namespace nfmimo::detail {

template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream s;
  (s << ... << args);
  return s.str();
}

[[noreturn]] inline void throw_cuda(cudaError_t e, const char* call, const char* file, int line) {
  cudaGetLastError();
  const std::string what = concat("CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ") in ",
                                  call, " at ", file, ":", line);
  if (e == cudaErrorMemoryAllocation)
    throw OutOfMemoryError("the GPU ran out of memory (" + what + "); use a smaller --batch or --device cpu",
                           call, static_cast<int>(e));
  throw DeviceError(what, call, static_cast<int>(e));
}

inline const char* cufft_status_name(cufftResult r) {
  switch (r) {
    case CUFFT_SUCCESS:
      return "CUFFT_SUCCESS";
    case CUFFT_INVALID_PLAN:
      return "CUFFT_INVALID_PLAN";
    case CUFFT_ALLOC_FAILED:
      return "CUFFT_ALLOC_FAILED";
    case CUFFT_INVALID_VALUE:
      return "CUFFT_INVALID_VALUE";
    case CUFFT_INTERNAL_ERROR:
      return "CUFFT_INTERNAL_ERROR";
    case CUFFT_EXEC_FAILED:
      return "CUFFT_EXEC_FAILED";
    case CUFFT_SETUP_FAILED:
      return "CUFFT_SETUP_FAILED";
    case CUFFT_INVALID_SIZE:
      return "CUFFT_INVALID_SIZE";
    default:
      return "cuFFT error";
  }
}

[[noreturn]] inline void throw_cufft(cufftResult r, const char* call, const char* file, int line) {
  const std::string what =
      concat("cuFFT error ", cufft_status_name(r), " (", int(r), ") in ", call, " at ", file, ":", line);
  if (r == CUFFT_ALLOC_FAILED)
    throw OutOfMemoryError("the GPU ran out of memory (" + what + ")", call, int(r));
  throw DeviceError(what, call, static_cast<int>(r));
}

}  // namespace nfmimo::detail

#define NFMIMO_CUDA_CHECK(expr)                                                \
  do {                                                                         \
    const cudaError_t nfmimo_status_ = (expr);                                 \
    if (nfmimo_status_ != cudaSuccess)                                         \
      ::nfmimo::detail::throw_cuda(nfmimo_status_, #expr, __FILE__, __LINE__); \
  } while (0)

#define NFMIMO_CUFFT_CHECK(expr)                                                \
  do {                                                                          \
    const cufftResult nfmimo_status_ = (expr);                                  \
    if (nfmimo_status_ != CUFFT_SUCCESS)                                        \
      ::nfmimo::detail::throw_cufft(nfmimo_status_, #expr, __FILE__, __LINE__); \
  } while (0)

// For destructors: log and continue.
#define NFMIMO_CUDA_LOG(expr)                                                                              \
  do {                                                                                                     \
    const cudaError_t nfmimo_status_ = (expr);                                                             \
    if (nfmimo_status_ != cudaSuccess)                                                                     \
      std::fprintf(stderr, "nfmimo: warning: %s failed: %s\n", #expr, cudaGetErrorString(nfmimo_status_)); \
  } while (0)

// After a kernel launch: launch-configuration errors surface immediately.
#define NFMIMO_CUDA_CHECK_LAUNCH() NFMIMO_CUDA_CHECK(cudaGetLastError())
