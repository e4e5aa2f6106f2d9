// The one family of device memory and streams, for CUDA translation units and host code compiled without
// nvcc alike (the trainer, benchmarks, tests): RAII, move-only (no implicit copies, to prevent performance
// accidents), explicit stream-ordered uploads and downloads. In a build without CUDA every allocation and
// every stream throws an InputError saying so (kernels/cuda_unavailable.cpp).
//
// A stream handle is spelled `cudaStream_t` everywhere: the typedef below is the CUDA runtime's own
// (driver_types.h declares the same type), so headers need not include cuda_runtime.h to name it.
#pragma once

#include <cstddef>
#include <utility>

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;

namespace nfmimo {

// The untyped calls behind DeviceBuffer (kernels/device_buffer.cpp; InputError without CUDA).
namespace device_memory {
void* allocate(std::size_t bytes);  // OutOfMemoryError with advice when the device is full
void release(void* data) noexcept;  // logs a failure (called from destructors)
void copy_to_device(void* device, const void* host, std::size_t bytes, cudaStream_t stream);
void copy_to_host(void* host, const void* device, std::size_t bytes, cudaStream_t stream);
void zero(void* device, std::size_t bytes, cudaStream_t stream);
// InputError naming the buffer operation when [offset, offset + count) exceeds `size` elements.
void require_within(std::size_t offset, std::size_t count, std::size_t size, const char* operation);
}  // namespace device_memory

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t count) { allocate(count); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { release(); }

  void allocate(std::size_t count) {
    release();
    if (count == 0) return;
    data_ = static_cast<T*>(device_memory::allocate(count * sizeof(T)));
    size_ = count;
  }
  // Grows (never shrinks) to at least `count` elements; contents are not kept.
  void reserve(std::size_t count) {
    if (count > size_) allocate(count);
  }
  void release() {
    if (data_) device_memory::release(data_);
    data_ = nullptr;
    size_ = 0;
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::size_t bytes() const { return size_ * sizeof(T); }

  // Stream-ordered copies of `count` elements at element `offset` (InputError beyond the buffer).
  void upload(const T* host, std::size_t count, cudaStream_t stream, std::size_t offset = 0) {
    device_memory::require_within(offset, count, size_, "upload");
    device_memory::copy_to_device(data_ + offset, host, count * sizeof(T), stream);
  }
  void download(T* host, std::size_t count, cudaStream_t stream, std::size_t offset = 0) const {
    device_memory::require_within(offset, count, size_, "download");
    device_memory::copy_to_host(host, data_ + offset, count * sizeof(T), stream);
  }
  void zero(cudaStream_t stream) {
    if (data_) device_memory::zero(data_, bytes(), stream);
  }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

// A non-blocking stream on the current device.
class DeviceStream {
 public:
  DeviceStream();
  ~DeviceStream();
  DeviceStream(const DeviceStream&) = delete;
  DeviceStream& operator=(const DeviceStream&) = delete;
  cudaStream_t get() const { return stream_; }
  void synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace nfmimo
