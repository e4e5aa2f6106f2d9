// Raw bytes of an open HDF5 file, for the checks that run before Debian's HDF5 1.10.8 parses a structure it
// does not bound-check (data/hdf5_strings.cpp: global heaps; data/hdf5_headers.cpp: attribute messages).
// Internal to data/.
#pragma once

#include <cstdint>
#include <string>

#include <hdf5.h>

#include "radar/error.hpp"

namespace nfmimo::h5 {

inline std::uint64_t little_endian(const unsigned char* p, std::size_t bytes) {
  std::uint64_t v = 0;
  for (std::size_t i = bytes; i-- > 0;) v = (v << 8) | p[i];
  return v;
}

// The bytes of the open file, through its driver: sec2 (files on disk) or core (in-memory images). `shown`
// names the file in messages, `part` the structure being checked ("a string attribute's global heap").
class FileBytes {
 public:
  FileBytes(hid_t file, const std::string& shown, const std::string& part);
  std::uint64_t size() const { return size_; }
  // Throws damaged(...) when [offset, offset + bytes) is not inside the file.
  void read(std::uint64_t offset, std::size_t bytes, unsigned char* out) const;
  InputError damaged(const std::string& what) const;

 private:
  std::string shown_, part_;
  std::uint64_t size_ = 0;
  int fd_ = -1;
  const unsigned char* memory_ = nullptr;
};

// The file's address and length sizes and its user block (addresses count from the superblock after it).
struct FileLayout {
  std::size_t sizeof_addr = 0, sizeof_size = 0;
  hsize_t userblock = 0;
};
FileLayout file_layout(hid_t file, const std::string& shown, const std::string& what);

}  // namespace nfmimo::h5
