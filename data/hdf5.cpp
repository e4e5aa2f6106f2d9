#include "data/hdf5.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <filesystem>
#include <mutex>

#include <fmt/format.h>

#include "data/atomic_file.hpp"
#include "data/file_image.hpp"
#include "radar/error.hpp"

namespace nfmimo::h5 {
namespace {

hid_t make_complex_type(hid_t component, std::size_t size) {
  const hid_t t = H5Tcreate(H5T_COMPOUND, 2 * size);
  H5Tinsert(t, "r", 0, component);
  H5Tinsert(t, "i", size, component);
  return t;
}

template <class T>
constexpr bool is_complex_v = std::is_same_v<T, cfloat> || std::is_same_v<T, cdouble>;

// The image a ScopedFileImage registered on this thread (path empty when none).
struct FileImage {
  std::string path;
  const void* data = nullptr;
  std::size_t size = 0;
};
thread_local FileImage t_file_image;

Handle dataspace_of(hid_t dataset) { return Handle(H5Dget_space(dataset), H5Sclose); }

Dims dims_of(hid_t dataset) {
  Handle space = dataspace_of(dataset);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  Dims d(static_cast<std::size_t>(std::max(rank, 0)));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), d.data(), nullptr);
  return d;
}

std::string dims_text(const Dims& d) {
  std::string s = "[";
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

// Datasets up to this size are read without comparing them with their storage; above it, a dataset must be
// stored with at most deflate's best ratio (about 1032:1) to be believed.
constexpr long double kTrustedBytes = 64.0L * 1024 * 1024;
constexpr long double kMaxCompression = 1100;

hsize_t product(const Dims& d) {
  hsize_t n = 1;
  for (hsize_t x : d) n *= x;
  return n;
}

// The operating system's reason behind the library's last failure ("No space left on device"), read from
// HDF5's error stack, whose file-driver entries carry "errno = N"; "is the disk full?" when there is none.
herr_t find_errno(unsigned, const H5E_error2_t* e, void* out) {
  if (e->desc)
    if (const char* p = std::strstr(e->desc, "errno = ")) *static_cast<int*>(out) = std::atoi(p + 8);
  return 0;
}
std::string failure_reason(const char* fallback = "is the disk full?") {
  int err = 0;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, find_errno, &err);
  return err > 0 ? std::strerror(err) : fallback;
}

// Closing a dataset writes its cached chunks: a full disk often shows only here, so the result is checked.
void close_dataset(Handle& d, const std::string& where) {
  if (H5Dclose(d.release()) < 0)
    throw InputError(fmt::format("{}: cannot finish writing ({})", where, failure_reason()));
}

Handle link_creation_properties() {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  return lcpl;
}

// Objects are created without access/modification times, so that the same content always gives the same bytes
// (reproducible datasets can then be compared file to file). Intermediate groups are created here for the
// same reason (the library would create them with times).
void create_parent_groups(hid_t file, const std::string& name) {
  Handle gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  H5Pset_obj_track_times(gcpl.get(), 0);
  for (std::size_t pos = name.find('/', 1); pos != std::string::npos; pos = name.find('/', pos + 1)) {
    const std::string group = name.substr(0, pos);
    if (H5Lexists(file, group.c_str(), H5P_DEFAULT) > 0) continue;
    Handle g(H5Gcreate2(file, group.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose);
  }
}

}  // namespace

void silence_library_errors() {
  // Per thread: the thread-safe HDF5 build keeps one error stack (and printing setting) per thread, so a
  // writer thread must silence its own.
  thread_local bool silenced = false;
  if (!silenced) H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  silenced = true;
}

namespace {
// No library clean-up at exit: every file is closed by its Handle, and after a failed close (a full disk)
// HDF5 1.10's exit handler crashes trying to close the file again. Must run before any other HDF5 call, hence
// a static initialiser.
const bool kNoAtExit = [] {
  H5dont_atexit();
  return true;
}();
}  // namespace

template <>
hid_t memory_type<float>() {
  return H5T_NATIVE_FLOAT;
}
template <>
hid_t memory_type<double>() {
  return H5T_NATIVE_DOUBLE;
}
template <>
hid_t memory_type<std::int32_t>() {
  return H5T_NATIVE_INT32;
}
template <>
hid_t memory_type<std::int64_t>() {
  return H5T_NATIVE_INT64;
}
template <>
hid_t memory_type<std::uint8_t>() {
  return H5T_NATIVE_UINT8;
}
template <>
hid_t memory_type<cfloat>() {
  static const hid_t t = make_complex_type(H5T_NATIVE_FLOAT, sizeof(float));
  return t;
}
template <>
hid_t memory_type<cdouble>() {
  static const hid_t t = make_complex_type(H5T_NATIVE_DOUBLE, sizeof(double));
  return t;
}

ScopedFileImage::ScopedFileImage(std::string path, const void* data, std::size_t size) {
  t_file_image = FileImage{std::move(path), data, size};
}

ScopedFileImage::~ScopedFileImage() { t_file_image = FileImage{}; }

File::File(const std::string& path, Mode mode, const std::string& shown)
    : path_(path), shown_(shown.empty() ? path : shown) {
  silence_library_errors();
  if (mode == Mode::Read && !t_file_image.path.empty() && t_file_image.path == path) {
    // Core driver without a backing store: HDF5 reads a copy of the registered bytes, never the disk (an
    // empty image would make HDF5 read the path from the disk instead, so it is refused here).
    if (t_file_image.size == 0) throw InputError(fmt::format("{}: not an HDF5 file (empty)", path));
    Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    const auto* image = static_cast<const unsigned char*>(t_file_image.data);
    check_root_header(
        [&](std::uint64_t offset, std::size_t bytes, unsigned char* out) {
          if (bytes) std::memcpy(out, image + offset, bytes);  // check_root_header reads inside `size` only
          return true;
        },
        t_file_image.size, path);
    if (!fapl || H5Pset_fapl_core(fapl.get(), 64 * 1024, 0) < 0 ||
        H5Pset_file_image(fapl.get(), const_cast<void*>(t_file_image.data), t_file_image.size) < 0)
      throw InputError(fmt::format("{}: cannot open the in-memory file image", path));
    file_ = Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
    if (!file_) throw InputError(fmt::format("{}: not an HDF5 file (in-memory image)", path));
    return;
  }
  if (mode == Mode::Create) {
    file_ = Handle(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    if (!file_)
      throw InputError(
          fmt::format("{}: cannot create the file ({})", shown_, failure_reason("is the folder writable?")));
    return;
  }
  require_regular_file(path);  // before HDF5 opens it: a FIFO would block for ever
  if (H5Fis_hdf5(path.c_str()) <= 0) throw InputError(fmt::format("{}: not an HDF5 file", shown_));
  if (mode == Mode::Read) {
    std::ifstream in(path, std::ios::binary);
    in.seekg(0, std::ios::end);
    const auto size = static_cast<std::uint64_t>(std::max<std::streamoff>(in.tellg(), 0));
    check_root_header(
        [&](std::uint64_t offset, std::size_t bytes, unsigned char* out) {
          in.seekg(static_cast<std::streamoff>(offset));
          return static_cast<bool>(
              in.read(reinterpret_cast<char*>(out), static_cast<std::streamsize>(bytes)));
        },
        size, shown_);
  }
  file_ = Handle(H5Fopen(path.c_str(), mode == Mode::Read ? H5F_ACC_RDONLY : H5F_ACC_RDWR, H5P_DEFAULT),
                 H5Fclose);
  if (!file_) throw InputError(fmt::format("{}: cannot open the HDF5 file (damaged or locked?)", shown_));
}

void File::flush() const {
  if (H5Fflush(id(), H5F_SCOPE_GLOBAL) < 0)
    throw InputError(fmt::format("{}: cannot write the file ({})", shown_, failure_reason()));
}

void File::close() {
  flush();
  const hid_t id = file_.get();
  file_.release();
  if (H5Fclose(id) < 0)
    throw InputError(fmt::format("{}: cannot finish the file (is the disk full?)", shown_));
}

std::uint64_t available_memory() {
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    unsigned long long kb = 0;
    bool found = false;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
        found = true;
        break;
      }
    std::fclose(f);
    if (found) return std::uint64_t(kb) * 1024;
  }
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? std::uint64_t(pages) * std::uint64_t(page) : ~std::uint64_t(0);
}

namespace {
std::string byte_text(long double bytes) {
  if (bytes >= 1e9L) return fmt::format("{:.1f} GB", double(bytes / 1e9L));
  if (bytes >= 1e6L) return fmt::format("{:.1f} MB", double(bytes / 1e6L));
  return fmt::format("{:.0f} bytes", double(bytes));
}
}  // namespace

void require_memory(const std::string& where, std::uint64_t elements, std::uint64_t element_size) {
  const long double bytes = static_cast<long double>(elements) * element_size;
  const std::uint64_t room = available_memory();
  if (bytes > static_cast<long double>(room))
    throw InputError(fmt::format("{}: declares {} values ({}), more than the {} of memory available", where,
                                 elements, byte_text(bytes), byte_text(room)));
}

std::string File::where(const std::string& name) const {
  return fmt::format("{}: dataset '{}'", shown_, name);
}

std::vector<std::string> File::members(const std::string& group) const {
  std::vector<std::string> names;
  const auto collect = [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  };
  hsize_t index = 0;
  if (H5Literate_by_name(file_.get(), group.c_str(), H5_INDEX_NAME, H5_ITER_INC, &index, collect, &names,
                         H5P_DEFAULT) < 0)
    throw InputError(fmt::format("{}: cannot list the group '{}' (damaged file?)", shown_, group));
  return names;
}

bool File::has(const std::string& name) const {
  if (name == "/") return true;
  // Check each path component so that a missing parent group is not an error.
  std::string partial;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    const std::size_t next = name.find('/', pos + 1);
    partial = name.substr(0, next);
    if (!partial.empty() && partial != "/") {
      if (H5Lexists(id(), partial.c_str(), H5P_DEFAULT) <= 0) return false;
      check_link_target(id(), partial, shown_);  // before HDF5 loads the object's header
    }
    pos = next;
  }
  return H5Oexists_by_name(id(), name.c_str(), H5P_DEFAULT) > 0;
}

bool File::is_dataset(const std::string& name) const {
  if (!has(name)) return false;
  H5O_info_t info;
#if H5_VERSION_GE(1, 12, 0)
  if (H5Oget_info_by_name3(id(), name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return false;
#else
  if (H5Oget_info_by_name(id(), name.c_str(), &info, H5P_DEFAULT) < 0) return false;
#endif
  return info.type == H5O_TYPE_DATASET;
}

Handle File::open_dataset(const std::string& name) const {
  if (!is_dataset(name))
    throw InputError(fmt::format("{}: missing (expected a dataset; see docs/formats.md)", where(name)));
  Handle d(H5Dopen2(id(), name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d) throw InputError(fmt::format("{}: cannot be opened", where(name)));
  return d;
}

Handle File::open_object(const std::string& name) const {
  if (!has(name)) throw InputError(fmt::format("{}: no object '{}'", shown_, name));
  Handle o(H5Oopen(id(), name.c_str(), H5P_DEFAULT), H5Oclose);
  if (!o) throw InputError(fmt::format("{}: cannot open '{}'", shown_, name));
  return o;
}

Dims File::shape(const std::string& name) const {
  Handle d = open_dataset(name);
  return dims_of(d.get());
}

bool File::is_complex(const std::string& name) const {
  Handle d = open_dataset(name);
  Handle type(H5Dget_type(d.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_COMPOUND || H5Tget_nmembers(type.get()) != 2) return false;
  if (H5Tget_member_index(type.get(), "r") < 0 || H5Tget_member_index(type.get(), "i") < 0) return false;
  for (unsigned m = 0; m < 2; ++m)
    if (H5Tget_member_class(type.get(), m) != H5T_FLOAT) return false;
  return true;
}

template <class T>
Array<T> File::read(const std::string& name) const {
  Handle d = open_dataset(name);
  Array<T> out;
  out.dims = dims_of(d.get());
  return read_rows<T>(name, 0, out.dims.empty() ? 1 : out.dims[0]);
}

template <class T>
Array<T> File::read_rows(const std::string& name, hsize_t first, hsize_t count) const {
  Handle d = open_dataset(name);
  Handle type(H5Dget_type(d.get()), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  if constexpr (is_complex_v<T>) {
    if (!is_complex(name))
      throw InputError(
          fmt::format("{}: expected complex values stored as the compound {{r, i}} of floats", where(name)));
  } else {
    if (cls != H5T_FLOAT && cls != H5T_INTEGER)
      throw InputError(fmt::format("{}: expected real numbers, found {}", where(name),
                                   cls == H5T_COMPOUND ? "a compound (complex?) type" : "another type"));
  }
  Array<T> out;
  out.dims = dims_of(d.get());
  Handle file_space = dataspace_of(d.get());
  if (out.dims.empty()) {  // scalar
    out.data.resize(1);
  } else {
    if (first + count > out.dims[0])
      throw InputError(fmt::format("{}: rows [{}, {}) out of range (the dataset has {})", where(name), first,
                                   first + count, out.dims[0]));
    Dims start(out.dims.size(), 0), size = out.dims;
    start[0] = first;
    size[0] = count;
    // Sizes come from the file: believe them only once they fit in memory, and a whole dataset only when the
    // file holds data for it (a small file can declare a huge dataset whose chunks were never written).
    long double declared = 1;
    for (hsize_t x : size) declared *= static_cast<long double>(x);
    if (declared > static_cast<long double>(std::numeric_limits<std::uint64_t>::max() / 16))
      throw InputError(fmt::format("{}: declares an impossible size {}", where(name), dims_text(out.dims)));
    const std::uint64_t elements = static_cast<std::uint64_t>(declared);
    require_memory(fmt::format("{} (shape {})", where(name), dims_text(out.dims)), elements, sizeof(T));
    const long double file_bytes = declared * static_cast<long double>(H5Tget_size(type.get()));
    // The storage a layout message declares is believed only up to the file's own size (a damaged
    // contiguous layout can claim gigabytes in a file of kilobytes; found by tests/fuzz/fuzz_measurements).
    hsize_t file_size = 0;
    const hsize_t stored = H5Fget_filesize(id(), &file_size) < 0
                               ? 0
                               : std::min<hsize_t>(H5Dget_storage_size(d.get()), file_size);
    if (first == 0 && count == out.dims[0] && file_bytes > kTrustedBytes &&
        static_cast<long double>(stored) * kMaxCompression < file_bytes)
      throw InputError(fmt::format(
          "{}: declares shape {} ({:.3g} bytes) but the file stores only {} bytes for it (a damaged or "
          "truncated file)",
          where(name), dims_text(out.dims), double(file_bytes), stored));
    H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, size.data(), nullptr);
    out.dims = size;
    out.data.resize(product(size));
  }
  Handle mem_space(H5Screate_simple(static_cast<int>(std::max<std::size_t>(out.dims.size(), 1)),
                                    out.dims.empty() ? Dims{1}.data() : out.dims.data(), nullptr),
                   H5Sclose);
  if (!out.data.empty() &&
      H5Dread(d.get(), memory_type<T>(), mem_space.get(), out.dims.empty() ? H5S_ALL : file_space.get(),
              H5P_DEFAULT, out.data.data()) < 0)
    throw InputError(fmt::format(
        "{}: cannot be read as the expected type (damaged file or wrong element type)", where(name)));
  return out;
}

template <class T>
void File::write(const std::string& name, const Dims& dims, const T* data, const WriteOptions& options) {
  if (has(name)) H5Ldelete(id(), name.c_str(), H5P_DEFAULT);
  Dims maxdims = dims;
  if (options.extendable) {
    if (dims.empty()) throw Error("an extendable dataset needs at least one dimension");
    maxdims[0] = H5S_UNLIMITED;
  }
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), maxdims.data()), H5Sclose);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_obj_track_times(dcpl.get(), 0);
  create_parent_groups(id(), name);
  Dims chunk = options.chunk;
  if (chunk.empty() && (options.extendable || options.gzip_level > 0) && !dims.empty()) {
    chunk = dims;
    chunk[0] = 1;  // one sample per chunk
  }
  if (!chunk.empty()) {
    for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = std::max<hsize_t>(chunk[i], 1);
    H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data());
    if (options.gzip_level > 0) H5Pset_deflate(dcpl.get(), static_cast<unsigned>(options.gzip_level));
  }
  Handle lcpl = link_creation_properties();
  Handle d(H5Dcreate2(id(), name.c_str(), memory_type<T>(), space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
           H5Dclose);
  if (!d) throw InputError(fmt::format("{}: cannot be created", where(name)));
  if (product(dims) > 0 && H5Dwrite(d.get(), memory_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    throw InputError(fmt::format("{}: write failed ({})", where(name), failure_reason()));
  close_dataset(d, where(name));
}

template <class T>
void File::append(const std::string& name, const T* data, hsize_t rows) {
  Handle d = open_dataset(name);
  Dims dims = dims_of(d.get());
  const hsize_t first = dims[0];
  dims[0] += rows;
  if (H5Dset_extent(d.get(), dims.data()) < 0)
    throw InputError(fmt::format("{}: cannot be extended (not created extendable?)", where(name)));
  Handle file_space = dataspace_of(d.get());
  Dims start(dims.size(), 0), size = dims;
  start[0] = first;
  size[0] = rows;
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, size.data(), nullptr);
  Handle mem_space(H5Screate_simple(static_cast<int>(size.size()), size.data(), nullptr), H5Sclose);
  if (H5Dwrite(d.get(), memory_type<T>(), mem_space.get(), file_space.get(), H5P_DEFAULT, data) < 0)
    throw InputError(fmt::format("{}: append failed ({})", where(name), failure_reason()));
  close_dataset(d, where(name));
}

void File::resize_rows(const std::string& name, hsize_t rows) {
  Handle d = open_dataset(name);
  Dims dims = dims_of(d.get());
  dims[0] = rows;
  if (H5Dset_extent(d.get(), dims.data()) < 0)
    throw InputError(fmt::format("{}: cannot be resized", where(name)));
}

namespace {

// The object that holds attributes. Before a read its attribute messages are checked (HDF5 decodes them all
// on any attribute call); a writer does not check, since the file it writes is nfmimo's own output.
enum class Check { Messages, None };
Handle open_attribute_target(const File& f, const std::string& object, Check check = Check::Messages) {
  const bool root = object == "/" || object.empty();
  if (!root && !f.has(object))
    throw InputError(fmt::format("{}: no object '{}' for attribute", f.path(), object));
  Handle target(H5Oopen(f.id(), root ? "/" : object.c_str(), H5P_DEFAULT), H5Oclose);
  if (!target) throw InputError(fmt::format("{}: cannot open object '{}'", f.path(), root ? "/" : object));
  if (check == Check::Messages)
    check_attribute_messages(target.get(), f.path(), fmt::format("object '{}'", root ? "/" : object));
  return target;
}

void write_attribute(const File& f, const std::string& object, const std::string& name, hid_t type,
                     const void* value) {
  Handle target = open_attribute_target(f, object, Check::None);
  if (H5Aexists(target.get(), name.c_str()) > 0) H5Adelete(target.get(), name.c_str());
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a(H5Acreate2(target.get(), name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a || H5Awrite(a.get(), type, value) < 0)
    throw InputError(fmt::format("{}: cannot write attribute '{}' on '{}'", f.path(), name, object));
}

// The attribute readers read one value: H5Aread writes every element of the attribute, so one that holds an
// array (a damaged or hostile file) would overflow that value. Found by tests/fuzz/fuzz_measurements.
void require_single_value(hid_t attribute, const std::string& file, const std::string& name,
                          const std::string& object) {
  Handle space(H5Aget_space(attribute), H5Sclose);
  const hssize_t n = space ? H5Sget_simple_extent_npoints(space.get()) : -1;
  if (n < 0) throw InputError(fmt::format("{}: cannot read attribute '{}' of '{}'", file, name, object));
  if (n != 1)
    throw InputError(
        fmt::format("{}: attribute '{}' of '{}' holds {} values; expected one", file, name, object, n));
  require_attribute_storage(attribute, file, fmt::format("attribute '{}' of '{}'", name, object));
}

}  // namespace

void File::set_attribute(const std::string& object, const std::string& name, const std::string& value) {
  // Variable-length UTF-8 string: h5py reads it as str, MATLAB's h5readatt as char.
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  const char* p = value.c_str();
  write_attribute(*this, object, name, type.get(), &p);
}

void File::set_attribute(const std::string& object, const std::string& name, long long value) {
  const std::int64_t v = value;
  write_attribute(*this, object, name, H5T_NATIVE_INT64, &v);
}

void File::set_attribute(const std::string& object, const std::string& name, double value) {
  write_attribute(*this, object, name, H5T_NATIVE_DOUBLE, &value);
}

bool File::has_attribute(const std::string& object, const std::string& name) const {
  if (object != "/" && !object.empty() && !has(object)) return false;
  Handle target = open_attribute_target(*this, object);
  return H5Aexists(target.get(), name.c_str()) > 0;
}

std::optional<std::string> File::string_attribute(const std::string& object, const std::string& name) const {
  if (!has_attribute(object, name)) return std::nullopt;
  Handle target = open_attribute_target(*this, object);
  Handle a(H5Aopen(target.get(), name.c_str(), H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(a.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING)
    throw InputError(fmt::format("{}: attribute '{}' of '{}' is not a string", shown_, name, object));
  require_single_value(a.get(), shown_, name, object);
  return read_string_values(a.get(), shown_, fmt::format("attribute '{}' of '{}'", name, object)).at(0);
}

std::optional<long long> File::int_attribute(const std::string& object, const std::string& name) const {
  if (!has_attribute(object, name)) return std::nullopt;
  Handle target = open_attribute_target(*this, object);
  Handle a(H5Aopen(target.get(), name.c_str(), H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(a.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    throw InputError(fmt::format("{}: attribute '{}' of '{}' is not an integer", shown_, name, object));
  require_single_value(a.get(), shown_, name, object);
  std::int64_t v = 0;
  if (H5Aread(a.get(), H5T_NATIVE_INT64, &v) < 0)
    throw InputError(
        fmt::format("{}: attribute '{}' of '{}' cannot be read as an integer", shown_, name, object));
  return v;
}

std::optional<double> File::double_attribute(const std::string& object, const std::string& name) const {
  if (!has_attribute(object, name)) return std::nullopt;
  Handle target = open_attribute_target(*this, object);
  Handle a(H5Aopen(target.get(), name.c_str(), H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(a.get()), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    throw InputError(fmt::format("{}: attribute '{}' of '{}' is not a number", shown_, name, object));
  require_single_value(a.get(), shown_, name, object);
  double v = 0;
  if (H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v) < 0)
    throw InputError(
        fmt::format("{}: attribute '{}' of '{}' cannot be read as a number", shown_, name, object));
  return v;
}

#define NFMIMO_H5_INSTANTIATE(T)                                                                \
  template Array<T> File::read<T>(const std::string&) const;                                    \
  template Array<T> File::read_rows<T>(const std::string&, hsize_t, hsize_t) const;             \
  template void File::write<T>(const std::string&, const Dims&, const T*, const WriteOptions&); \
  template void File::append<T>(const std::string&, const T*, hsize_t);

NFMIMO_H5_INSTANTIATE(float)
NFMIMO_H5_INSTANTIATE(double)
NFMIMO_H5_INSTANTIATE(std::int32_t)
NFMIMO_H5_INSTANTIATE(std::int64_t)
NFMIMO_H5_INSTANTIATE(std::uint8_t)
NFMIMO_H5_INSTANTIATE(cfloat)
NFMIMO_H5_INSTANTIATE(cdouble)
#undef NFMIMO_H5_INSTANTIATE

}  // namespace nfmimo::h5
