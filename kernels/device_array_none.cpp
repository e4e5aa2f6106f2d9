// DeviceStream and DeviceFloats in a build without CUDA: a clear error, never a silent fallback.
#include "kernels/device_array.hpp"

#include "kernels/device.hpp"
#include "radar/error.hpp"

namespace nfmimo {

namespace {
[[noreturn]] void unavailable() {
  throw InputError("device memory needs the CUDA backend (" + cuda_unavailable_reason() + ")");
}
}  // namespace

DeviceStream::DeviceStream() { unavailable(); }
DeviceStream::~DeviceStream() = default;
void DeviceStream::synchronize() const { unavailable(); }

DeviceFloats::DeviceFloats(std::size_t) { unavailable(); }
DeviceFloats::~DeviceFloats() = default;
void DeviceFloats::upload(const float*, std::size_t, CUstream_st*) { unavailable(); }
void DeviceFloats::download(float*, std::size_t, CUstream_st*) const { unavailable(); }

}  // namespace nfmimo
