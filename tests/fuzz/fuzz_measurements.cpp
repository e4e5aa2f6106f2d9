// Measurement and volume files (data/measurement_file.hpp) from memory through HDF5's core driver: the input
// bytes are the whole file. The readers used by reconstruct, evaluate, info and train run unchanged.
#include <cstddef>
#include <cstdint>

#include "data/file_image.hpp"
#include "data/measurement_file.hpp"
#include "tests/fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = "fuzz-measurements.h5";
  const nfmimo::h5::ScopedFileImage image(path, data, size);
  nfmimo::fuzz::expect_ok_or_refusal([&] { nfmimo::read_measurement_header(path); });
  nfmimo::fuzz::expect_ok_or_refusal([&] { nfmimo::read_measurements(path); });
  nfmimo::fuzz::expect_ok_or_refusal([&] { nfmimo::read_volumes(path); });
  return 0;
}
