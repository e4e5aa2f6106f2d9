// Attribute messages, checked before HDF5 decodes them.
//
// An object's attributes are messages in its object header. Debian's HDF5 1.10.8 decodes every one of them on
// H5Aexists, H5Aopen or H5Aiterate, and copies the attribute's value (element count x element size, both from
// the message) without comparing it with the message's own size: a damaged dataspace or datatype makes it
// read past the header's buffer (a heap overflow; h5py on the same library crashes too). The fuzzers met this
// in every 20-second smoke (docs/reliability.md), so nfmimo walks the object header first, as HDF5's parser
// does, and refuses the file when an attribute message does not hold what it declares. Format: HDF5 File
// Format Specification 3.0, IV.A.1 (object header prefix, versions 1 and 2), IV.A.2.b (dataspace), IV.A.2.d
// (datatype), IV.A.2.m (attribute) and IV.A.2.q (header continuation).
#include <cerrno>
#include <cstring>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "data/hdf5.hpp"
#include "data/hdf5_raw.hpp"

namespace nfmimo::h5 {
namespace {

constexpr unsigned kMessageContinuation = 0x10;
constexpr unsigned kMessageAttribute = 0x0C;
constexpr unsigned kMessageShared = 0x02;  // the message's bytes are a reference to a shared message
constexpr unsigned kDatatypeVariableLength = 9;
constexpr std::size_t kMaxChunks = 4096;              // a longer continuation chain is refused
constexpr std::uint64_t kMaxChunkBytes = 1ull << 26;  // HDF5 writes chunks of at most 4 GiB; 64 MiB is plenty

std::uint64_t round8(std::uint64_t n) { return (n + 7) / 8 * 8; }

struct Chunk {
  std::uint64_t address = 0, length = 0;
};

// One attribute message's bytes [p, p + size): its parts must lie inside it, and so must its value.
void check_attribute(const unsigned char* p, std::uint64_t size, const FileLayout& layout,
                     const FileBytes& file, const std::string& what) {
  auto bad = [&](const std::string& why) { return file.damaged(fmt::format("{}: {}", what, why)); };
  if (size < 8) throw bad("an attribute message of " + std::to_string(size) + " bytes");
  const unsigned version = p[0];
  if (version < 1 || version > 3) throw bad(fmt::format("an attribute message of version {}", version));
  const unsigned flags = version == 1 ? 0 : p[1];
  const std::uint64_t name = little_endian(p + 2, 2), type = little_endian(p + 4, 2),
                      space = little_endian(p + 6, 2);
  const std::uint64_t head = version == 3 ? 9 : 8;
  const auto padded = [&](std::uint64_t n) { return version == 1 ? round8(n) : n; };
  const std::uint64_t value_at = head + padded(name) + padded(type) + padded(space);
  if (value_at > size)
    throw bad(fmt::format("an attribute message of {} bytes declares {} bytes of name, type and dataspace",
                          size, value_at - head));
  const unsigned char* n = p + head;
  if (name == 0 || std::memchr(n, 0, name) == nullptr)
    throw bad("an attribute's name is not a terminated string inside its message");
  // A shared datatype or dataspace is a reference to another message: its element size or count is not here,
  // and HDF5 reads it from that message. nfmimo never writes these; they are left to HDF5.
  if (flags & 0x03) return;
  const unsigned char* t = n + padded(name);
  const unsigned char* s = t + padded(type);
  if (type < 8) throw bad("an attribute's datatype is shorter than a datatype message");
  std::uint64_t element = little_endian(t + 4, 4);
  if ((t[0] & 0x0F) == kDatatypeVariableLength)  // stored as {length (4), heap address, index (4)}
    element = std::max<std::uint64_t>(element, 8 + layout.sizeof_addr);
  // Dataspace: version 1 {version, rank, flags, 5 reserved}, version 2 {version, rank, flags, type}; then the
  // dimensions (sizeof_size bytes each). Version 1's rank 0 and version 2's type 0 are scalars, type 2 is
  // null.
  if (space < 4) throw bad("an attribute's dataspace is shorter than a dataspace message");
  const unsigned space_version = s[0], rank = s[1];
  const std::uint64_t dims_at = space_version == 1 ? 8 : 4;
  if ((space_version != 1 && space_version != 2) || rank > 32)
    throw bad(fmt::format("an attribute's dataspace has version {} and rank {}", space_version, rank));
  if (dims_at + rank * layout.sizeof_size > space)
    throw bad("an attribute's dataspace is shorter than its rank");
  std::uint64_t count = 1;
  if (space_version == 2 && s[3] == 2) count = 0;
  for (unsigned i = 0; i < rank && count; ++i) {
    const std::uint64_t d = little_endian(s + dims_at + i * layout.sizeof_size, layout.sizeof_size);
    if (d != 0 && count > UINT64_MAX / d)
      throw bad("an attribute's dataspace declares more values than exist");
    count *= d;
  }
  if (count != 0 && element > (size - value_at) / count)
    throw bad(fmt::format("an attribute declares {} values of {} bytes in a message that holds {} bytes",
                          count, element, size - value_at));
}

// The messages of one chunk's message area [begin, end) of `bytes` (version 1 or 2 layout); continuation
// messages append their chunks to `chunks`.
void walk_messages(const std::vector<unsigned char>& bytes, std::size_t begin, std::size_t end,
                   unsigned version, bool creation_order, const FileLayout& layout, const FileBytes& file,
                   const std::string& what, std::vector<Chunk>& chunks) {
  const std::size_t header = version == 1 ? 8 : (creation_order ? 6 : 4);
  std::size_t p = begin;
  while (p + header <= end) {
    const unsigned char* m = bytes.data() + p;
    const unsigned type = version == 1 ? static_cast<unsigned>(little_endian(m, 2)) : m[0];
    const std::uint64_t size = little_endian(m + (version == 1 ? 2 : 1), 2);
    const unsigned flags = m[version == 1 ? 4 : 3];
    if (size > end - p - header)
      throw file.damaged(fmt::format("{}: a header message of {} bytes runs past its chunk", what, size));
    const unsigned char* data = m + header;
    if (type == kMessageContinuation) {
      if (size < layout.sizeof_addr + layout.sizeof_size)
        throw file.damaged(fmt::format("{}: a continuation message of {} bytes", what, size));
      chunks.push_back({little_endian(data, layout.sizeof_addr),
                        little_endian(data + layout.sizeof_addr, layout.sizeof_size)});
    } else if (type == kMessageAttribute && !(flags & kMessageShared)) {
      check_attribute(data, size, layout, file, what);
    }
    p += header + size;
    if (version == 1) p = begin + round8(p - begin);
  }
}

}  // namespace

void check_attribute_messages(hid_t object, const std::string& shown, const std::string& what) {
  Handle file(H5Iget_file_id(object), H5Fclose);
  // A file open for writing (a resumed output) may hold a newer header in HDF5's cache than on disk: written
  // out first; a failure names the system's reason (a full disk).
  unsigned intent = 0;
  if (!file || H5Fget_intent(file.get(), &intent) < 0)
    throw InputError(fmt::format("{}: cannot read {}", shown, what));
  if ((intent & H5F_ACC_RDWR) && H5Fflush(file.get(), H5F_SCOPE_LOCAL) < 0)
    throw InputError(fmt::format("{}: cannot write out its pending changes before reading {} ({})", shown,
                                 what, std::strerror(errno)));
  const FileLayout layout = file_layout(file.get(), shown, what);
  haddr_t address = HADDR_UNDEF;
#if H5_VERSION_GE(1, 12, 0)
  H5O_info2_t info;
  if (H5Oget_info3(object, &info, H5O_INFO_BASIC) >= 0)
    H5VLnative_token_to_addr(object, info.token, &address);
#else
  H5O_info_t info;
  if (H5Oget_info2(object, &info, H5O_INFO_BASIC) >= 0) address = info.addr;
#endif
  if (address == HADDR_UNDEF) throw InputError(fmt::format("{}: cannot read {}", shown, what));
  const FileBytes bytes(file.get(), shown, "an object header's attribute messages");

  // The prefix: version 1 {1, 0, messages (2), references (4), chunk size (4), 4 reserved}; version 2
  // {"OHDR", 2, flags, [4 times of 4 bytes], [2 attribute limits of 2 bytes], chunk size (1, 2, 4 or 8
  // bytes)}.
  std::vector<unsigned char> prefix(16 + 16 + 4 + 8);
  const std::uint64_t at = layout.userblock + address;
  if (at >= bytes.size())
    throw bytes.damaged(fmt::format("{}: its object header lies past the end of the file", what));
  bytes.read(at, static_cast<std::size_t>(std::min<std::uint64_t>(prefix.size(), bytes.size() - at)),
             prefix.data());
  unsigned version = 0;
  bool creation_order = false;
  std::uint64_t area = 0, length = 0;  // chunk 0's message area: offset from `at`, and length
  if (std::memcmp(prefix.data(), "OHDR", 4) == 0 && prefix[4] == 2) {
    version = 2;
    const unsigned flags = prefix[5];
    creation_order = flags & 0x04;
    std::size_t p = 6 + ((flags & 0x20) ? 16 : 0) + ((flags & 0x10) ? 4 : 0);
    const std::size_t width = std::size_t(1) << (flags & 0x03);
    length = little_endian(&prefix[p], width);
    area = p + width;
  } else if (prefix[0] == 1) {
    version = 1;
    length = little_endian(&prefix[8], 4);
    area = 16;
  } else {
    throw bytes.damaged(fmt::format("{}: an object header of unknown version", what));
  }

  if (length > kMaxChunkBytes)
    throw bytes.damaged(fmt::format("{}: an object header chunk of {} bytes", what, length));
  std::vector<Chunk> chunks{{at, area + length + (version == 2 ? 4 : 0)}};
  std::set<std::uint64_t> seen;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    if (chunks.size() > kMaxChunks)
      throw bytes.damaged(fmt::format("{}: an object header of more than {} chunks", what, kMaxChunks));
    const Chunk c = chunks[i];
    const std::uint64_t start = i == 0 ? c.address : layout.userblock + c.address;
    if (!seen.insert(start).second)
      throw bytes.damaged(fmt::format("{}: an object header whose chunks form a loop", what));
    if (c.length > kMaxChunkBytes)
      throw bytes.damaged(fmt::format("{}: an object header chunk of {} bytes", what, c.length));
    std::vector<unsigned char> chunk(c.length);
    bytes.read(start, chunk.size(), chunk.data());
    std::size_t begin = i == 0 ? area : 0, end = chunk.size();
    if (version ==
        2) {  // continuation chunks: "OCHK", messages, checksum; every chunk ends with its checksum
      if (i > 0 && (chunk.size() < 8 || std::memcmp(chunk.data(), "OCHK", 4) != 0))
        throw bytes.damaged(fmt::format("{}: an object header continuation without its signature", what));
      begin = i == 0 ? area : 4;
      end = chunk.size() - 4;
    }
    walk_messages(chunk, begin, end, version, creation_order, layout, bytes, what, chunks);
  }
}

}  // namespace nfmimo::h5
