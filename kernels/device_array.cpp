// DeviceStream and DeviceFloats in a build with CUDA (runtime API only).
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

DeviceFloats::DeviceFloats(std::size_t count) : size_(count) {
  if (count > 0) NFMIMO_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), count * sizeof(float)));
}

DeviceFloats::~DeviceFloats() {
  if (data_) NFMIMO_CUDA_LOG(cudaFree(data_));
}

void DeviceFloats::upload(const float* host, std::size_t count, CUstream_st* stream) {
  require(count <= size_, "device upload larger than the buffer");
  NFMIMO_CUDA_CHECK(cudaMemcpyAsync(data_, host, count * sizeof(float), cudaMemcpyHostToDevice, stream));
}

void DeviceFloats::download(float* host, std::size_t count, CUstream_st* stream) const {
  require(count <= size_, "device download larger than the buffer");
  NFMIMO_CUDA_CHECK(cudaMemcpyAsync(host, data_, count * sizeof(float), cudaMemcpyDeviceToHost, stream));
}

}  // namespace nfmimo
