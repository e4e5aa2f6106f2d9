// The calls behind DeviceBuffer and DeviceStream in a build with CUDA (runtime API only).
#include "kernels/device_buffer.hpp"

#include <cuda_runtime.h>

#include <fmt/format.h>

#include "kernels/cuda_check.hpp"
#include "radar/error.hpp"

namespace nfmimo {

namespace device_memory {

void* allocate(std::size_t bytes) {
  void* data = nullptr;
  NFMIMO_CUDA_CHECK(cudaMalloc(&data, bytes));
  return data;
}

void release(void* data) noexcept { NFMIMO_CUDA_LOG(cudaFree(data)); }

void copy_to_device(void* device, const void* host, std::size_t bytes, cudaStream_t stream) {
  NFMIMO_CUDA_CHECK(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream));
}

void copy_to_host(void* host, const void* device, std::size_t bytes, cudaStream_t stream) {
  NFMIMO_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream));
}

void zero(void* device, std::size_t bytes, cudaStream_t stream) {
  NFMIMO_CUDA_CHECK(cudaMemsetAsync(device, 0, bytes, stream));
}

}  // namespace device_memory

DeviceStream::DeviceStream() {
  NFMIMO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
}

DeviceStream::~DeviceStream() {
  if (stream_) NFMIMO_CUDA_LOG(cudaStreamDestroy(stream_));
}

void DeviceStream::synchronize() const { NFMIMO_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

}  // namespace nfmimo
