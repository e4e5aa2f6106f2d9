// A thin RAII layer over the HDF5 C API, shared by every file format of the project.
//
// Errors are InputErrors whose message names the file, the dataset and what is wrong. Complex data is stored
// as the compound {r, i} (the h5py convention); reading converts float32/float64 compounds and real types
// through HDF5's own conversion, so a file written with float64 reads into float buffers and vice versa.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "radar/complex.hpp"

namespace nfmimo::h5 {

// Owns one hid_t and closes it with the matching H5*close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      closer_ = o.closer_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  // Gives up ownership without closing (the caller closes and checks the result).
  hid_t release() {
    const hid_t id = id_;
    id_ = H5I_INVALID_HID;
    return id;
  }
  explicit operator bool() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0 && closer_) closer_(id_);
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

using Dims = std::vector<hsize_t>;

template <class T>
struct Array {
  Dims dims;
  std::vector<T> data;
};

struct WriteOptions {
  Dims chunk;               // empty: contiguous (or automatic for extendable datasets)
  int gzip_level = 0;       // 0: no compression
  bool extendable = false;  // first dimension unlimited (for appending samples)
};

// The HDF5 memory type for T: float, double, int32, int64, uint8, cfloat and cdouble (compound {r, i}).
template <class T>
hid_t memory_type();

class File {
 public:
  enum class Mode { Read, ReadWrite, Create };

  // Opens or creates a file. Read and ReadWrite check that the file exists, is a regular file (never a FIFO,
  // device or folder) and is HDF5. `shown` is the name used in messages when it differs from `path` (a file
  // written under a temporary name is reported under its final name).
  File(const std::string& path, Mode mode, const std::string& shown = "");
  File(File&&) noexcept = default;
  File& operator=(File&&) noexcept = default;

  // The name used in messages (the final name of a file written under a temporary name).
  const std::string& path() const { return shown_; }
  hid_t id() const { return file_.get(); }
  void flush() const;
  // Flushes and closes the file, checking both (a full disk shows here at the latest): InputError naming the
  // file. The File is unusable afterwards.
  void close();

  bool has(const std::string& name) const;  // a dataset or group exists at this path
  bool is_dataset(const std::string& name) const;
  // The names of a group's members, in name order. InputError when the group cannot be listed.
  std::vector<std::string> members(const std::string& group) const;
  Dims shape(const std::string& name) const;  // InputError if missing
  // True when the dataset's elements are a compound with members r and i (complex).
  bool is_complex(const std::string& name) const;

  template <class T>
  Array<T> read(const std::string& name) const;
  // Reads rows [first, first + count) along the first dimension.
  template <class T>
  Array<T> read_rows(const std::string& name, hsize_t first, hsize_t count) const;

  template <class T>
  void write(const std::string& name, const Dims& dims, const T* data, const WriteOptions& options = {});
  template <class T>
  void write(const std::string& name, const std::vector<T>& data) {
    write<T>(name, Dims{data.size()}, data.data());
  }
  // Appends `rows` rows to an extendable dataset (created by write with extendable = true).
  template <class T>
  void append(const std::string& name, const T* data, hsize_t rows);
  // Shrinks or grows the first dimension of an extendable dataset.
  void resize_rows(const std::string& name, hsize_t rows);

  // Attributes on the root ("/") or on a dataset or group path.
  void set_attribute(const std::string& object, const std::string& name, const std::string& value);
  void set_attribute(const std::string& object, const std::string& name, long long value);
  void set_attribute(const std::string& object, const std::string& name, double value);
  bool has_attribute(const std::string& object, const std::string& name) const;
  std::optional<std::string> string_attribute(const std::string& object, const std::string& name) const;
  std::optional<long long> int_attribute(const std::string& object, const std::string& name) const;
  std::optional<double> double_attribute(const std::string& object, const std::string& name) const;

  // "FILE: dataset 'NAME': " prefix for messages.
  std::string where(const std::string& name) const;

 private:
  Handle open_dataset(const std::string& name) const;
  Handle open_object(const std::string& name) const;
  std::string path_, shown_;
  Handle file_;
};

// Refuses (InputError naming the file, the dataset and the size) reading `elements` values of `element_size`
// bytes when that passes the memory this machine has available, before anything is allocated.
void require_memory(const std::string& where, std::uint64_t elements, std::uint64_t element_size);
// Bytes of memory available to this process now (MemAvailable, else physical memory).
std::uint64_t available_memory();

// Every value of a string attribute, fixed or variable length. Variable-length values are read only after
// their global heap objects are checked (HDF5 1.10 hangs or overflows on damaged ones;
// data/hdf5_strings.cpp): a damaged file is an InputError naming `shown` (the file) and `what` ("attribute
// 'x' of '/'").
std::vector<std::string> read_string_values(hid_t attribute, const std::string& shown,
                                            const std::string& what);

// Checks every attribute message in `object`'s header before HDF5 decodes them (data/hdf5_headers.cpp): HDF5
// 1.10.8 copies an attribute's declared value size out of the message without comparing it with the message's
// size. A damaged header is an InputError naming `shown` (the file) and `what` (the object).
void check_attribute_messages(hid_t object, const std::string& shown, const std::string& what);
// Walks the header of the object that link `name` points to before HDF5 loads it, and refuses a chunk that
// runs past the end of the file (HDF5 1.10.8 allocates the declared size before reading), a datatype that
// does not parse, or a dataset storing less than it declares (its layout is decoded when HDF5 opens it).
void check_link_target(hid_t file, const std::string& name, const std::string& shown);
// The same check for the root group, whose header H5Fopen loads: on the file's bytes, before it is opened.
// `read(offset, bytes, out)` reads from the file (false: cannot); `size` is the file's size.
void check_root_header(const std::function<bool(std::uint64_t, std::size_t, unsigned char*)>& read,
                       std::uint64_t size, const std::string& shown);

// Refuses (InputError) an attribute whose stored bytes are fewer than its values need: HDF5 1.10 would read
// past them. Every attribute reader calls it before H5Aread.
void require_attribute_storage(hid_t attribute, const std::string& shown, const std::string& what);

// Silences HDF5's own error printing (we report errors ourselves); called once by File.
void silence_library_errors();

}  // namespace nfmimo::h5
