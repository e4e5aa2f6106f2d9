// DeviceStream and DeviceMemory in a build without CUDA: a clear error, never a silent fallback.
#include "kernels/device.hpp"
#include "kernels/device_array.hpp"
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

DeviceMemory::DeviceMemory(std::size_t) { unavailable(); }
DeviceMemory::~DeviceMemory() = default;
void DeviceMemory::upload(const void*, std::size_t, CUstream_st*) { unavailable(); }
void DeviceMemory::download(void*, std::size_t, CUstream_st*) const { unavailable(); }

}  // namespace nfmimo
