// simulate --points "x,y,z,amplitude;...". Accepted points must be finite (the parser promises it).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "radar/simulation.hpp"
#include "tests/fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text = nfmimo::fuzz::text_of(data, size);
  nfmimo::fuzz::expect_ok_or_refusal([&] {
    const auto points = nfmimo::parse_points(text);
    if (points.empty()) std::abort();
    for (const auto& p : points)
      if (!std::isfinite(p.position.x) || !std::isfinite(p.position.y) || !std::isfinite(p.position.z) ||
          !std::isfinite(p.amplitude))
        std::abort();
  });
  return 0;
}
