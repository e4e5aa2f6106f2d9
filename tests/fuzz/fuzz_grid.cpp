// reconstruct/evaluate --grid "x0:x1:nx,y0:y1:ny,z0:z1:nz", then the check every command runs on it against
// the paper's system. An accepted grid has three axes of positive size with finite values.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "radar/system.hpp"
#include "tests/fuzz/fuzz_common.hpp"
#include "tools/commands.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const nfmimo::RadarSystem system = nfmimo::paper_system(2);
  const std::string text = nfmimo::fuzz::text_of(data, size);
  nfmimo::fuzz::expect_ok_or_refusal([&] {
    const nfmimo::ImagingGrid grid = nfmimo::parse_grid(text);
    nfmimo::validate_grid(grid, system, "--grid");
    for (const nfmimo::Axis* a : {&grid.x(), &grid.y(), &grid.z()})
      if (a->size < 1 || !std::isfinite(a->start) || !std::isfinite(a->last())) std::abort();
  });
  return 0;
}
