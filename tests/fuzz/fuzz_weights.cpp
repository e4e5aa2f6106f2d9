// Weights files (models/weights.hpp: reconstruct --model, evaluate --model, train --resume) from memory
// through HDF5's core driver. A model that is accepted must also build its network.
#include <cstddef>
#include <cstdint>

#include "data/file_image.hpp"
#include "models/weights.hpp"
#include "tests/fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = "fuzz-weights.h5";
  const nfmimo::h5::ScopedFileImage image(path, data, size);
  nfmimo::fuzz::expect_ok_or_refusal([&] {
    const nfmimo::nn::Model model = nfmimo::nn::read_model(path);
    (void)model.network();
  });
  return 0;
}
