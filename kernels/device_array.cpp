// DeviceStream and DeviceMemory in a build with CUDA (runtime API only).
#include "kernels/device_array.hpp"

#include <cuda_runtime.h>

#include "kernels/cuda_check.hpp"
#include "radar/error.hpp"

namespace nfmimo {

DeviceStream::DeviceStream() {
  cudaStream_t s = nullptr;
  NFMIMO_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  stream_ = s;
}

DeviceStream::~DeviceStream() {
  if (stream_) NFMIMO_CUDA_LOG(cudaStreamDestroy(stream_));
}

void DeviceStream::synchronize() const { NFMIMO_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

DeviceMemory::DeviceMemory(std::size_t bytes) : bytes_(bytes) {
  if (bytes > 0) NFMIMO_CUDA_CHECK(cudaMalloc(&data_, bytes));
}

DeviceMemory::~DeviceMemory() {
  if (data_) NFMIMO_CUDA_LOG(cudaFree(data_));
}

void DeviceMemory::upload(const void* host, std::size_t bytes, CUstream_st* stream) {
  require(bytes <= bytes_, "device upload larger than the buffer");
  NFMIMO_CUDA_CHECK(cudaMemcpyAsync(data_, host, bytes, cudaMemcpyHostToDevice, stream));
}

void DeviceMemory::download(void* host, std::size_t bytes, CUstream_st* stream) const {
  require(bytes <= bytes_, "device download larger than the buffer");
  NFMIMO_CUDA_CHECK(cudaMemcpyAsync(host, data_, bytes, cudaMemcpyDeviceToHost, stream));
}

}  // namespace nfmimo
