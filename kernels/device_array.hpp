// Device memory and a stream for code outside the CUDA translation units (the trainer hands device batches to
// a device-resident training backend). Compiles without nvcc; in a build without CUDA every constructor
// throws an InputError saying so. RAII: the memory and the stream are released by the destructors.
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

// `count` floats of device memory.
class DeviceFloats {
 public:
  explicit DeviceFloats(std::size_t count);
  ~DeviceFloats();
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;
  float* data() { return data_; }
  const float* data() const { return data_; }
  std::size_t size() const { return size_; }
  // Stream-ordered copies of `count` floats starting at element 0.
  void upload(const float* host, std::size_t count, CUstream_st* stream);
  void download(float* host, std::size_t count, CUstream_st* stream) const;

 private:
  float* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace nfmimo
