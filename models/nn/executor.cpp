#include "models/nn/executor.hpp"

#include <fmt/format.h>

#include "models/nn/cpu/network.hpp"
#include "models/nn/cuda/network.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

std::unique_ptr<Executor> make_executor(Network network, const Parameters& parameters, Mode mode,
                                        DeviceKind device, Precision precision) {
  require(device != DeviceKind::Auto, "make_executor: resolve the device (--device auto) first");
  if (device == DeviceKind::Cuda)
    return std::make_unique<GpuNetwork>(std::move(network), parameters, mode, precision);
  require(precision == Precision::Fp32,
          fmt::format("the CPU network backend runs fp32 only (asked for {})", to_string(precision)));
  return std::make_unique<CpuNetwork>(std::move(network), parameters, mode);
}

}  // namespace nfmimo::nn
