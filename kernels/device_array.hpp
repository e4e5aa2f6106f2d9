// Device memory and streams for host code compiled without nvcc (the trainer, benchmarks, tests): RAII,
// move-free (no implicit copies), explicit stream-ordered copies. In a build without CUDA every constructor
// throws an InputError saying so. CUDA translation units use DeviceBuffer (kernels/device_buffer.hpp)
// instead.
#pragma once

#include <cstddef>
#include <memory>

struct CUstream_st;

namespace nfmimo {

class DeviceStream {
 public:
  DeviceStream();  // a non-blocking stream on the current device
  ~DeviceStream();
  DeviceStream(const DeviceStream&) = delete;
  DeviceStream& operator=(const DeviceStream&) = delete;
  CUstream_st* get() const { return stream_; }
  void synchronize() const;

 private:
  CUstream_st* stream_ = nullptr;
};

// Untyped device memory; DeviceArray<T> is the typed view most code wants.
class DeviceMemory {
 public:
  explicit DeviceMemory(std::size_t bytes);
  ~DeviceMemory();
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  // Stream-ordered copies of `bytes` bytes at the start of the buffer (InputError beyond its size).
  void upload(const void* host, std::size_t bytes, CUstream_st* stream);
  void download(void* host, std::size_t bytes, CUstream_st* stream) const;

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(std::size_t count) : memory_(count * sizeof(T)), size_(count) {}
  T* data() { return static_cast<T*>(memory_.data()); }
  const T* data() const { return static_cast<const T*>(memory_.data()); }
  std::size_t size() const { return size_; }
  std::size_t bytes() const { return memory_.bytes(); }
  // Stream-ordered copies of `count` elements starting at element 0.
  void upload(const T* host, std::size_t count, CUstream_st* stream) {
    memory_.upload(host, count * sizeof(T), stream);
  }
  void download(T* host, std::size_t count, CUstream_st* stream) const {
    memory_.download(host, count * sizeof(T), stream);
  }

 private:
  DeviceMemory memory_;
  std::size_t size_;
};

using DeviceFloats = DeviceArray<float>;

}  // namespace nfmimo
