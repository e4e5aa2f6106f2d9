// Which cuDNN convolution algorithm a plan may use, as a rule that compiles and is tested without CUDA.
//
// cuDNN's Find calls return every algorithm it tried, fastest first, each with the math it ran in. fp32 means
// IEEE float32 products: an algorithm that ran on tensor cores (TF32's 10-bit mantissa, or a down-conversion)
// is never accepted for it, even when it is the only one that works; the plan then fails and says so, rather
// than silently computing in TF32. The other precisions accept any math (tensor cores are their point).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "models/training/backend.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

struct AlgorithmCandidate {
  int algo = -1;
  bool succeeded = false;  // cuDNN ran it (CUDNN_STATUS_SUCCESS)
  bool fma_math = false;   // it ran in CUDNN_FMA_MATH (true float32 products)
  std::size_t workspace = 0;
  float ms = 0;
};

// The index of the first (fastest) candidate allowed in `precision`; Error naming `what` and the reason when
// there is none.
inline std::size_t choose_algorithm(const std::vector<AlgorithmCandidate>& candidates, Precision precision,
                                    const std::string& what) {
  std::size_t ran = 0;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    if (!candidates[i].succeeded) continue;
    ++ran;
    if (precision != Precision::Fp32 || candidates[i].fma_math) return i;
  }
  if (precision == Precision::Fp32 && ran > 0)
    throw Error(
        fmt::format("cuDNN offers no float32 (FMA math) algorithm for {}: the {} that ran use tensor cores "
                    "(TF32), which fp32 does not accept; use --precision tf32 to allow them",
                    what, ran == 1 ? "one" : std::to_string(ran)));
  throw Error(fmt::format("cuDNN offers no algorithm for {} ({} tried, none ran)", what, candidates.size()));
}

}  // namespace nfmimo::nn
