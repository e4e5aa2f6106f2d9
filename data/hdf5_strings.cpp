// Variable-length string attributes, read only after their global heap objects are checked.
//
// HDF5 stores each variable-length string in a "global heap collection" elsewhere in the file; the attribute
// holds only {length, collection address, object index}. Debian's HDF5 1.10.8 trusts the collection it finds
// there: a damaged one makes H5Aread loop for ever (a free-space object of size 0 never advances its parser),
// or copy an object's stored size into a buffer sized by the attribute's length (a heap overflow). h5py,
// linked to the same library, hangs or crashes on the same files. The fuzzers found all three within seconds
// (docs/reliability.md), so nfmimo reads the raw heap IDs first, walks each collection exactly as HDF5's
// parser would, and refuses the file when HDF5 would misbehave. Format: HDF5 File Format Specification 3.0,
// III.E "Global Heap" and the variable-length datatype's disk form (4-byte length, address, 4-byte index).
#include <cstring>
#include <map>
#include <mutex>

#include <fmt/format.h>

#include "data/hdf5.hpp"
#include "data/hdf5_raw.hpp"
#include "radar/error.hpp"

namespace nfmimo::h5 {
namespace {

constexpr const char* kRawTag = "nfmimo.vlen.raw";
constexpr std::uint64_t kHeapMinSize = 4096;         // HDF5 never writes a smaller collection (H5HG_MINSIZE)
constexpr std::uint64_t kHeapMaxRead = 64ull << 20;  // a larger collection is refused, not read
constexpr std::size_t kHeapHeader = 8;               // "GCOL", version, 3 reserved (then the size field)

// A conversion HDF5 offers nothing for: variable-length string (file form) to an opaque type tagged kRawTag
// of the same size. It does nothing, so H5Aread hands back the attribute's bytes as stored: the heap IDs.
herr_t raw_heap_ids(hid_t src, hid_t dst, H5T_cdata_t* cdata, size_t, size_t, size_t, void*, void*, hid_t) {
  if (cdata->command != H5T_CONV_INIT) return 0;
  if (H5Tis_variable_str(src) <= 0 || H5Tget_class(dst) != H5T_OPAQUE || H5Tget_size(src) != H5Tget_size(dst))
    return -1;
  char* tag = H5Tget_tag(dst);
  const bool ours = tag && std::strcmp(tag, kRawTag) == 0;
  H5free_memory(tag);
  return ours ? 0 : -1;
}

void register_raw_heap_ids() {
  static std::once_flag once;
  std::call_once(once, [] {
    Handle string(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(string.get(), H5T_VARIABLE);
    Handle raw(H5Tcreate(H5T_OPAQUE, 16), H5Tclose);
    H5Tset_tag(raw.get(), kRawTag);
    H5Tregister(H5T_PERS_SOFT, "nfmimo_raw_heap_ids", string.get(), raw.get(), raw_heap_ids);
  });
}

// One collection's objects, index -> stored size, parsed as H5HG__cache_heap_deserialize does.
using Collection = std::map<std::uint32_t, std::uint64_t>;

Collection parse_collection(const FileBytes& file, std::uint64_t at, std::size_t sizeof_size) {
  std::vector<unsigned char> head(kHeapHeader + sizeof_size);
  file.read(at, head.size(), head.data());
  if (std::memcmp(head.data(), "GCOL", 4) != 0 || head[4] != 1)
    throw file.damaged(fmt::format("no collection at address {}", at));
  const std::uint64_t size = little_endian(head.data() + kHeapHeader, sizeof_size);
  if (size < kHeapMinSize || size > kHeapMaxRead)
    throw file.damaged(fmt::format("a collection of {} bytes at address {}", size, at));
  std::vector<unsigned char> heap(size);
  file.read(at, size, heap.data());
  const std::size_t object_header = 8 + sizeof_size;  // index (2), references (2), reserved (4), size
  Collection objects;
  std::uint64_t p = head.size();
  while (p < size) {
    if (p + object_header > size) break;  // a tail too small for a header is free space
    const auto index = static_cast<std::uint32_t>(little_endian(&heap[p], 2));
    const std::uint64_t stored = little_endian(&heap[p + 8], sizeof_size);
    // Object 0 is the free space, its size counting its header; others are padded to 8 bytes after theirs.
    const std::uint64_t need = index ? object_header + ((stored + 7) / 8) * 8 : stored;
    if (stored > size || need < object_header || need > size - p)
      throw file.damaged(fmt::format("object {} of the collection at address {} has a bad size", index, at));
    if (index && !objects.emplace(index, stored).second)
      throw file.damaged(fmt::format("object {} appears twice in the collection at address {}", index, at));
    p += need;
  }
  return objects;
}

}  // namespace

void require_attribute_storage(hid_t attribute, const std::string& shown, const std::string& what) {
  // HDF5 1.10.8 sizes an attribute's stored bytes by the datatype message but converts by the type's disk
  // size times the element count, reading past the stored bytes when a damaged message makes them disagree.
  Handle type(H5Aget_type(attribute), H5Tclose);
  Handle space(H5Aget_space(attribute), H5Sclose);
  const hssize_t n = space ? H5Sget_simple_extent_npoints(space.get()) : -1;
  if (!type || n < 0) throw InputError(fmt::format("{}: cannot read {}", shown, what));
  // A variable-length string is stored as {length (4), heap address, object index (4)}.
  std::size_t element = H5Tget_size(type.get());
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle file(H5Iget_file_id(attribute), H5Fclose);
    element = 8 + file_layout(file.get(), shown, what).sizeof_addr;
  }
  const hsize_t stored = H5Aget_storage_size(attribute);
  if (element == 0 || stored / element < static_cast<hsize_t>(n))
    throw InputError(fmt::format("{}: damaged HDF5 file: {} stores {} bytes for {} values of {} bytes", shown,
                                 what, stored, n, element));
}

std::vector<std::string> read_string_values(hid_t attribute, const std::string& shown,
                                            const std::string& what) {
  Handle type(H5Aget_type(attribute), H5Tclose);
  Handle space(H5Aget_space(attribute), H5Sclose);
  const hssize_t n = space ? H5Sget_simple_extent_npoints(space.get()) : -1;
  if (!type || n < 0 || H5Tget_class(type.get()) != H5T_STRING)
    throw InputError(fmt::format("{}: cannot read {}", shown, what));
  if (n == 0) return {};
  require_attribute_storage(attribute, shown, what);
  if (H5Tis_variable_str(type.get()) > 0) {
    // HDF5 sizes its conversion buffer as length x the string's base type: a damaged datatype message with a
    // base of thousands of bytes turns a 4-byte length into gigabytes. Strings are of 1-byte characters.
    Handle base(H5Tget_super(type.get()), H5Tclose);
    if (!base || H5Tget_size(base.get()) != 1)
      throw InputError(fmt::format("{}: damaged HDF5 file: {} is a string whose characters are not one byte",
                                   shown, what));
    Handle file(H5Iget_file_id(attribute), H5Fclose);
    const auto [sizeof_addr, sizeof_size, userblock] = file_layout(file.get(), shown, what);
    register_raw_heap_ids();
    const std::size_t id_size = 8 + sizeof_addr;
    Handle raw(H5Tcreate(H5T_OPAQUE, id_size), H5Tclose);
    H5Tset_tag(raw.get(), kRawTag);
    std::vector<unsigned char> ids(id_size * static_cast<std::size_t>(n));
    if (H5Aread(attribute, raw.get(), ids.data()) < 0)
      throw InputError(fmt::format("{}: cannot read {}", shown, what));
    const FileBytes bytes(file.get(), shown, "a string attribute's global heap");
    std::map<std::uint64_t, Collection> collections;
    for (hssize_t i = 0; i < n; ++i) {
      const unsigned char* id = ids.data() + id_size * static_cast<std::size_t>(i);
      const std::uint64_t length = little_endian(id, 4);
      const std::uint64_t address = little_endian(id + 4, sizeof_addr);
      const auto index = static_cast<std::uint32_t>(little_endian(id + 4 + sizeof_addr, 4));
      if (address == 0) {  // a null string: HDF5 reads no heap, but allocates `length` bytes for it
        if (length != 0) throw bytes.damaged(fmt::format("{} is a null string of length {}", what, length));
        continue;
      }
      auto it = collections.find(address);
      if (it == collections.end())
        it = collections.emplace(address, parse_collection(bytes, userblock + address, sizeof_size)).first;
      const auto object = it->second.find(index);
      if (object == it->second.end() || object->second != length)
        throw bytes.damaged(
            fmt::format("{} names object {} of the collection at address {}, {}", what, index, address,
                        object == it->second.end() ? "which does not exist" : "whose size differs"));
    }
    Handle memory(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(memory.get(), H5T_VARIABLE);
    H5Tset_cset(memory.get(), H5Tget_cset(type.get()));
    std::vector<char*> p(static_cast<std::size_t>(n), nullptr);
    if (H5Aread(attribute, memory.get(), p.data()) < 0)
      throw InputError(fmt::format("{}: cannot read {}", shown, what));
    std::vector<std::string> out;
    out.reserve(p.size());
    for (char* s : p) out.emplace_back(s ? s : "");
    H5Dvlen_reclaim(memory.get(), space.get(), H5P_DEFAULT, p.data());
    return out;
  }
  // Fixed length: read the bytes as stored (NULLPAD/SPACEPAD strings from MATLAB or h5py fill all `size`
  // bytes, which a NULLTERM memory type of the same size would cut by one), then trim the padding.
  const std::size_t size = H5Tget_size(type.get());
  if (size == 0 || size > (std::size_t(1) << 30) / static_cast<std::size_t>(n))
    throw InputError(fmt::format("{}: {} declares strings of {} bytes", shown, what, size));
  std::vector<char> buffer(size * static_cast<std::size_t>(n));
  Handle memory(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(memory.get(), size);
  H5Tset_strpad(memory.get(), H5T_STR_NULLPAD);
  if (H5Aread(attribute, memory.get(), buffer.data()) < 0)
    throw InputError(fmt::format("{}: cannot read {}", shown, what));
  const bool spaces = H5Tget_strpad(type.get()) == H5T_STR_SPACEPAD;
  std::vector<std::string> out;
  for (hssize_t i = 0; i < n; ++i) {
    const char* s = buffer.data() + static_cast<std::size_t>(i) * size;
    std::string v(s, strnlen(s, size));
    if (spaces)
      while (!v.empty() && v.back() == ' ') v.pop_back();
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace nfmimo::h5
