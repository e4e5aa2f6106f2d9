// Shared by the libFuzzer harnesses (docs/reliability.md). A harness feeds one input to one parser of outside
// input. A clean refusal is an nfmimo::Error (the CLI prints it and exits 2); anything else that escapes
// (another exception, a crash, a sanitizer report, a timeout, an allocation past -malloc_limit_mb) is a
// finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "radar/error.hpp"

namespace nfmimo::fuzz {

// Runs `parse`; a refusal with nfmimo::Error is the expected outcome for bad input.
template <class F>
void expect_ok_or_refusal(F&& parse) {
  try {
    parse();
  } catch (const nfmimo::Error&) {
  }
}

inline std::string text_of(const std::uint8_t* data, std::size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

}  // namespace nfmimo::fuzz
