// Training datasets (synthesize / merge output, train --data/--val) from memory through HDF5's core driver:
// the dataset description that resume and merge trust, and the training reader's shape checks.
#include <cstddef>
#include <cstdint>

#include "data/file_image.hpp"
#include "models/training/data.hpp"
#include "synthesizer/dataset.hpp"
#include "tests/fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = "fuzz-dataset.h5";
  const nfmimo::h5::ScopedFileImage image(path, data, size);
  nfmimo::fuzz::expect_ok_or_refusal([&] { nfmimo::read_dataset_info(path); });
  nfmimo::fuzz::expect_ok_or_refusal([&] { nfmimo::nn::inspect_training_file(path); });
  return 0;
}
