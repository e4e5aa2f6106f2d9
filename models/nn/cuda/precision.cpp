// Parts of the GPU network backend's interface that exist in every build.
#include <fmt/format.h>

#include "models/nn/cuda/network.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

// fp16 is the expected answer of the rule (issue 4: the fastest precision within 0.1 dB PSNR of fp32 on a
// test set): float16 storage with float32 accumulation halves every activation's bytes and runs the
// convolutions on tensor cores. The rule is checked on the device by tools/scripts/device_check.sh (evaluate
// at every precision on the held-out set); docs/networks.md records the measurement.
Precision default_gpu_precision() { return Precision::Fp16; }

Precision parse_inference_precision(const std::string& name) {
  if (name == "fp32" || name == "tf32" || name == "fp16" || name == "bf16") return parse_precision(name);
  throw InputError(fmt::format("unknown precision '{}' (fp32, tf32, fp16, bf16)", name));
}

}  // namespace nfmimo::nn
