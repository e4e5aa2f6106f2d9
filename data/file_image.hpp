// In-memory HDF5 files for fuzzing and tests (docs/reliability.md). While a ScopedFileImage lives,
// h5::File(path, Read) on this thread opens these bytes through HDF5's core driver instead of the file
// system, so every reader (measurements, datasets, weights) runs unchanged on a buffer: the harnesses in
// tests/fuzz/ feed hostile files without touching the disk. One image at a time per thread; HDF5 copies the
// bytes when the file is opened. The implementation lives in data/hdf5.cpp.
#pragma once

#include <cstddef>
#include <string>

namespace nfmimo::h5 {

class ScopedFileImage {
 public:
  ScopedFileImage(std::string path, const void* data, std::size_t size);
  ScopedFileImage(const ScopedFileImage&) = delete;
  ScopedFileImage& operator=(const ScopedFileImage&) = delete;
  ~ScopedFileImage();
};

}  // namespace nfmimo::h5
