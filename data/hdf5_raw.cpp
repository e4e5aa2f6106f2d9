// Raw bytes of an open HDF5 file (data/hdf5_raw.hpp).
#include "data/hdf5_raw.hpp"

#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "data/hdf5.hpp"

namespace nfmimo::h5 {

FileBytes::FileBytes(hid_t file, const std::string& shown, const std::string& part)
    : shown_(shown), part_(part) {
  Handle fapl(H5Fget_access_plist(file), H5Pclose);
  const hid_t driver = fapl ? H5Pget_driver(fapl.get()) : -1;
  void* handle = nullptr;
  hsize_t size = 0;
  if (driver < 0 || H5Fget_vfd_handle(file, fapl.get(), &handle) < 0 || !handle ||
      H5Fget_filesize(file, &size) < 0)
    throw InputError(fmt::format("{}: cannot check {} (no file handle)", shown, part));
  size_ = size;
  if (driver == H5FD_SEC2)
    fd_ = *static_cast<int*>(handle);
  else if (driver == H5FD_CORE)
    memory_ = *static_cast<const unsigned char**>(handle);  // the core driver hands out &its_buffer
  else
    throw InputError(fmt::format("{}: cannot check {} (unexpected HDF5 driver)", shown, part));
}

void FileBytes::read(std::uint64_t offset, std::size_t bytes, unsigned char* out) const {
  if (offset > size_ || bytes > size_ - offset) throw damaged("a structure lies past the end of the file");
  if (bytes == 0) return;  // `out` may be an empty vector's null data()
  if (memory_) {
    std::memcpy(out, memory_ + offset, bytes);
    return;
  }
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = pread(fd_, out + done, bytes - done, static_cast<off_t>(offset + done));
    if (n <= 0) throw InputError(fmt::format("{}: cannot read {} (read error)", shown_, part_));
    done += static_cast<std::size_t>(n);
  }
}

InputError FileBytes::damaged(const std::string& what) const {
  return InputError(fmt::format("{}: damaged HDF5 file: {} ({})", shown_, what, part_));
}

FileLayout file_layout(hid_t file, const std::string& shown, const std::string& what) {
  Handle fcpl(file >= 0 ? H5Fget_create_plist(file) : -1, H5Pclose);
  FileLayout l;
  if (!fcpl || H5Pget_sizes(fcpl.get(), &l.sizeof_addr, &l.sizeof_size) < 0 ||
      H5Pget_userblock(fcpl.get(), &l.userblock) < 0 || l.sizeof_addr == 0 || l.sizeof_addr > 8 ||
      l.sizeof_size == 0 || l.sizeof_size > 8)
    throw InputError(fmt::format("{}: cannot read {}", shown, what));
  return l;
}

}  // namespace nfmimo::h5
