// Object headers, checked before HDF5 decodes them: chunk sizes, attribute, datatype and layout messages.
//
// An object's attributes are messages in its object header. Debian's HDF5 1.10.8 decodes every one of them on
// H5Aexists, H5Aopen or H5Aiterate, and copies the attribute's value (element count x element size, both from
// the message) without comparing it with the message's own size: a damaged dataspace or datatype makes it
// read past the header's buffer (a heap overflow; h5py on the same library crashes too). It trusts a header
// chunk's declared size (allocating gigabytes for a small file), a compact or contiguous dataset's declared
// storage, and the member names of compound and enum types in the same way. The fuzzers met each of these
// (docs/reliability.md), so nfmimo walks the header first, as HDF5's parser does, and refuses the file when a
// part does not hold what it declares. Format: HDF5 File Format Specification 3.0, II.A (superblock), IV.A.1
// (object header prefix, versions 1 and 2), IV.A.2.b (dataspace), IV.A.2.d (datatype), IV.A.2.i (layout),
// IV.A.2.m (attribute) and IV.A.2.q (header continuation).
#include <cstring>
#include <functional>
#include <optional>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "data/hdf5.hpp"
#include "data/hdf5_raw.hpp"

namespace nfmimo::h5 {
namespace {

constexpr unsigned kMessageContinuation = 0x10;
constexpr unsigned kMessageAttribute = 0x0C;
constexpr unsigned kMessageDataspace = 0x01;
constexpr unsigned kMessageDatatype = 0x03;
constexpr unsigned kMessageLayout = 0x08;
constexpr unsigned kMessageShared = 0x02;  // the message's bytes are a reference to a shared message
constexpr unsigned kDatatypeVariableLength = 9;
constexpr std::size_t kMaxChunks = 4096;              // a longer continuation chain is refused
constexpr std::uint64_t kMaxChunkBytes = 1ull << 26;  // HDF5 writes chunks of at most 4 GiB; 64 MiB is plenty

std::uint64_t round8(std::uint64_t n) { return (n + 7) / 8 * 8; }

struct Chunk {
  std::uint64_t address = 0, length = 0;
};

// An object header's prefix: version 1 {1, 0, messages (2), references (4), chunk size (4), 4 reserved};
// version 2 {"OHDR", 2, flags, [4 times of 4 bytes], [2 attribute limits of 2 bytes], chunk size (1, 2, 4 or
// 8 bytes)}. `area` is where chunk 0's messages start (from the prefix's start), `length` their bytes.
struct Prefix {
  unsigned version = 0;
  bool creation_order = false;
  std::uint64_t area = 0, length = 0;
  std::uint64_t chunk0() const {  // version 2: + checksum; saturated, so a damaged length cannot wrap around
    const std::uint64_t fixed = area + (version == 2 ? 4 : 0);
    return length > UINT64_MAX - fixed ? UINT64_MAX : fixed + length;
  }
};
constexpr std::size_t kPrefixBytes = 16 + 16 + 4 + 8;

std::optional<Prefix> parse_prefix(const unsigned char* b) {  // kPrefixBytes bytes
  Prefix p;
  if (std::memcmp(b, "OHDR", 4) == 0 && b[4] == 2) {
    const unsigned flags = b[5];
    const std::size_t at = 6 + ((flags & 0x20) ? 16 : 0) + ((flags & 0x10) ? 4 : 0);
    const std::size_t width = std::size_t(1) << (flags & 0x03);
    p = {2, (flags & 0x04) != 0, at + width, little_endian(b + at, width)};
  } else if (b[0] == 1) {
    p = {1, false, 16, little_endian(b + 8, 4)};
  } else {
    return std::nullopt;
  }
  return p;
}

// Elements of a dataspace message (version 1: rank 0 is a scalar; version 2: type 0 scalar, 1 simple, 2
// null), or nullopt for a message too damaged to say.
std::optional<std::uint64_t> dataspace_count(const unsigned char* s, std::uint64_t size,
                                             std::size_t sizeof_size) {
  if (size < 4) return std::nullopt;
  const unsigned version = s[0], rank = s[1];
  const std::uint64_t dims_at = version == 1 ? 8 : 4;
  if ((version != 1 && version != 2) || rank > 32 || dims_at + rank * sizeof_size > size) return std::nullopt;
  if (version == 2 && s[3] == 2) return 0;
  std::uint64_t count = 1;
  for (unsigned i = 0; i < rank; ++i) {
    const std::uint64_t d = little_endian(s + dims_at + i * sizeof_size, sizeof_size);
    if (d == 0) return 0;
    if (count > UINT64_MAX / d) return std::nullopt;
    count *= d;
  }
  return count;
}

// The stored size of one element of a datatype message (for a variable-length type, at least its heap ID).
std::optional<std::uint64_t> datatype_size(const unsigned char* t, std::uint64_t size,
                                           std::size_t sizeof_addr) {
  if (size < 8) return std::nullopt;
  const std::uint64_t element = little_endian(t + 4, 4);
  if ((t[0] & 0x0F) == kDatatypeVariableLength) return std::max<std::uint64_t>(element, 8 + sizeof_addr);
  return element;
}

// The bytes a datatype message's encoding takes, parsed as HDF5's decoder does, or nullopt when it runs past
// `size` or a name in it is not terminated inside: HDF5 1.10.8 copies compound and enum member names with
// strdup, reading past the header's buffer for an unterminated one (found by the fuzzers: a string type
// damaged into an enum). Format: HDF5 File Format Specification 3.0, IV.A.2.d.
std::optional<std::uint64_t> datatype_bytes(const unsigned char* t, std::uint64_t size, int depth = 0) {
  if (size < 8 || depth > 16) return std::nullopt;
  const unsigned cls = t[0] & 0x0F, version = t[0] >> 4;
  const std::uint64_t members = little_endian(t + 1, 2), element = little_endian(t + 4, 4);
  std::uint64_t p = 8;
  const auto name = [&](bool padded) {  // a NUL-terminated name at p, padded to 8 bytes in versions 1 and 2
    const void* end = p < size ? std::memchr(t + p, 0, size - p) : nullptr;
    if (!end) return false;
    const std::uint64_t n = static_cast<const unsigned char*>(end) - (t + p) + 1;
    p += padded ? round8(n) : n;
    return p <= size;
  };
  const auto nested = [&]() {
    if (p > size) return false;
    const auto n = datatype_bytes(t + p, size - p, depth + 1);
    if (!n) return false;
    p += *n;
    return true;
  };
  switch (cls) {
    case 0:
      p += 4;
      break;  // fixed point: offset, precision
    case 1:
      p += 12;
      break;  // floating point
    case 2:
      p += 2;
      break;  // time
    case 3:
    case 7:
      break;  // string, reference
    case 4:
      p += 4;
      break;  // bitfield
    case 5:
      p += t[1];
      break;  // opaque: its tag's length
    case 6:   // compound
      for (std::uint64_t i = 0; i < members; ++i) {
        if (!name(version < 3)) return std::nullopt;
        if (version < 3) {
          p += 4 + (version == 1 ? 28 : 0);  // byte offset; version 1: dimensionality, permutation, 4 sizes
        } else {
          std::uint64_t width = 1;  // the byte offset takes as many bytes as the compound's size needs
          while (width < 4 && (element >> (8 * width)) != 0) ++width;
          p += width;
        }
        if (!nested()) return std::nullopt;
      }
      break;
    case 8: {  // enum: base type, names, values
      if (!nested()) return std::nullopt;
      const std::uint64_t base = little_endian(t + 8 + 4, 4);
      for (std::uint64_t i = 0; i < members; ++i)
        if (!name(version < 3)) return std::nullopt;
      if (members && base > (size - std::min(p, size)) / members) return std::nullopt;
      p += members * base;
      break;
    }
    case 9:  // variable length: base type
      if (!nested()) return std::nullopt;
      break;
    case 10: {  // array: rank, [3 reserved], dimensions, [permutation], base type
      if (p >= size) return std::nullopt;
      const std::uint64_t rank = t[p];
      p += (version < 3 ? 4 : 1) + 4 * rank + (version < 3 ? 4 * rank : 0);
      if (!nested()) return std::nullopt;
      break;
    }
    default:
      return std::nullopt;
  }
  if (p > size) return std::nullopt;
  return p;
}

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
  if (!datatype_bytes(t, type)) throw bad("an attribute's datatype does not fit in its message");
  const auto element = datatype_size(t, type, layout.sizeof_addr);
  const auto count = dataspace_count(t + padded(type), space, layout.sizeof_size);
  if (!element) throw bad("an attribute's datatype is shorter than a datatype message");
  if (!count) throw bad("an attribute's dataspace cannot be read (its version, rank or length)");
  if (*count != 0 && *element > (size - value_at) / *count)
    throw bad(fmt::format("an attribute declares {} values of {} bytes in a message that holds {} bytes",
                          *count, *element, size - value_at));
}

// Where a header is read from: an open file (FileBytes) or, before HDF5 opens it, the file's bytes. `read`
// reads inside [0, size) only; `damaged` makes the refusal.
struct Source {
  std::function<void(std::uint64_t offset, std::size_t bytes, unsigned char* out)> read;
  std::uint64_t size = 0;
  std::function<InputError(const std::string&)> damaged;
};

// An open file's bytes as a Source.
Source source_of(const FileBytes& bytes) {
  return {[&bytes](std::uint64_t o, std::size_t n, unsigned char* out) { bytes.read(o, n, out); },
          bytes.size(), [&bytes](const std::string& why) { return bytes.damaged(why); }};
}

// One unshared message of a header: its type and bytes.
using Visit = std::function<void(unsigned type, const unsigned char* data, std::uint64_t size)>;

// The messages of one chunk's message area [begin, end) of `bytes` (version 1 or 2 layout); continuation
// messages append their chunks to `chunks`, other unshared messages go to `visit`.
void walk_messages(const std::vector<unsigned char>& bytes, std::size_t begin, std::size_t end,
                   unsigned version, bool creation_order, const FileLayout& layout, const Source& file,
                   const std::string& what, std::vector<Chunk>& chunks, const Visit& visit) {
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
    } else if (!(flags & kMessageShared)) {
      visit(type, data, size);
    }
    p += header + size;
    if (version == 1) p = begin + round8(p - begin);
  }
}

// An object header's unshared messages, copied out of the file.
struct Message {
  unsigned type = 0;
  std::vector<unsigned char> data;
};
struct Header {
  FileLayout layout;
  std::vector<Message> messages;
};

// Reads the header at file offset `at` (all chunks; continuation addresses count from `layout.userblock`) and
// returns its unshared messages. HDF5 1.10.8 allocates each chunk at its declared size before reading it
// (gigabytes for a few-KB damaged file): a chunk that runs past the end of the file is refused first.
std::vector<Message> read_header(const Source& src, std::uint64_t at, const FileLayout& layout,
                                 const std::string& what) {
  if (at >= src.size)
    throw src.damaged(fmt::format("{}: its object header lies past the end of the file", what));
  std::vector<unsigned char> head(kPrefixBytes);
  src.read(at, static_cast<std::size_t>(std::min<std::uint64_t>(head.size(), src.size - at)), head.data());
  const auto prefix = parse_prefix(head.data());
  if (!prefix) throw src.damaged(fmt::format("{}: an object header of unknown version", what));
  const auto [version, creation_order, area, length] = *prefix;
  std::vector<Message> messages;
  std::vector<Chunk> chunks{{at, prefix->chunk0()}};
  std::set<std::uint64_t> seen;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    if (chunks.size() > kMaxChunks)
      throw src.damaged(fmt::format("{}: an object header of more than {} chunks", what, kMaxChunks));
    const Chunk c = chunks[i];
    const std::uint64_t start = i == 0 ? c.address : layout.userblock + c.address;
    if (!seen.insert(start).second)
      throw src.damaged(fmt::format("{}: an object header whose chunks form a loop", what));
    if (start > src.size || c.length > src.size - start)
      throw src.damaged(fmt::format("{}: an object header chunk of {} bytes runs past the end of the file",
                                    what, c.length));
    if (c.length > kMaxChunkBytes)
      throw src.damaged(fmt::format("{}: an object header chunk of {} bytes", what, c.length));
    std::vector<unsigned char> chunk(c.length);
    src.read(start, chunk.size(), chunk.data());
    std::size_t begin = i == 0 ? area : 0, end = chunk.size();
    if (version ==
        2) {  // continuation chunks: "OCHK", messages, checksum; every chunk ends with its checksum
      if (chunk.size() < area + 4 ||
          (i > 0 && (chunk.size() < 8 || std::memcmp(chunk.data(), "OCHK", 4) != 0)))
        throw src.damaged(fmt::format("{}: an object header chunk without its signature or checksum", what));
      begin = i == 0 ? area : 4;
      end = chunk.size() - 4;
    } else if (chunk.size() < begin) {
      throw src.damaged(fmt::format("{}: an object header chunk shorter than its prefix", what));
    }
    walk_messages(chunk, begin, end, version, creation_order, layout, src, what, chunks,
                  [&](unsigned type, const unsigned char* data, std::uint64_t size) {
                    messages.push_back({type, std::vector<unsigned char>(data, data + size)});
                  });
  }
  return messages;
}

// Reads `object`'s header (all chunks) and returns its unshared messages; `check` then runs on them with the
// file's bytes at hand for its messages. Only files open read-only are checked: a file open for writing is
// nfmimo's own output (or its partial output, resumed), and its newest header may still be in HDF5's cache.
void check_header(hid_t object, const std::string& shown, const std::string& what, const std::string& part,
                  const std::function<void(const Header&, const FileBytes&)>& check) {
  Handle file(H5Iget_file_id(object), H5Fclose);
  unsigned intent = 0;
  if (!file || H5Fget_intent(file.get(), &intent) < 0)
    throw InputError(fmt::format("{}: cannot read {}", shown, what));
  if (intent & H5F_ACC_RDWR) return;
  Header header;
  FileLayout& layout = header.layout;
  layout = file_layout(file.get(), shown, what);
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
  const FileBytes bytes(file.get(), shown, part);
  const std::uint64_t at = layout.userblock + address;
  header.messages = read_header(source_of(bytes), at, layout, what);
  check(header, bytes);
}

// A dataset's storage against its dataspace and datatype. HDF5 1.10.8 reads a compact dataset (its values
// stored in the layout message itself) or a contiguous one (through a sieve buffer of the stored size) by the
// dataspace's element count times the datatype's size, whatever is stored, and copies a compact dataset's
// declared bytes out of the message when it decodes it: a damaged message makes it copy from past the buffer
// (a SEGV in H5VM_memcpyvv; h5py crashes too). Layout message versions 1 and 2: {version, rank, class, 5
// reserved, [address unless compact], rank x 4-byte dimensions, [compact: size (4), data]}; versions 3 and 4:
// {version, class, compact: {size (2), data} | contiguous: {address, size}}. Chunked and virtual storage are
// read through their own index by HDF5.
void check_layout(const std::vector<Message>& messages, const FileLayout& layout,
                  const std::function<InputError(const std::string&)>& damaged, const std::string& what) {
  const Message *space = nullptr, *type = nullptr, *found = nullptr;
  for (const Message& m : messages) {
    if (m.type == kMessageDataspace) space = &m;
    if (m.type == kMessageDatatype) type = &m;
    if (m.type == kMessageLayout) found = &m;
  }
  if (type && !datatype_bytes(type->data.data(), type->data.size()))
    throw damaged(fmt::format("{}: a datatype message that does not fit in its bytes", what));
  if (!found || found->data.size() < 2) return;
  const auto& l = found->data;
  const std::size_t o = layout.sizeof_addr, n = layout.sizeof_size;
  std::uint64_t stored = 0;
  const char* kind = "";
  if ((l[0] == 1 || l[0] == 2) && l.size() >= 8 && l[2] == 0) {
    const std::size_t at = 8 + 4 * std::size_t(l[1]);  // the compact size after the dimensions
    if (l.size() < at + 4 || little_endian(&l[at], 4) > l.size() - at - 4)
      throw damaged(fmt::format("{}: a compact layout that declares more bytes than it holds", what));
    stored = little_endian(&l[at], 4);
    kind = "compact";
  } else if ((l[0] == 3 || l[0] == 4) && l[1] == 0) {
    if (l.size() < 4 || little_endian(&l[2], 2) > l.size() - 4)
      throw damaged(fmt::format("{}: a compact layout that declares more bytes than it holds", what));
    stored = little_endian(&l[2], 2);
    kind = "compact";
  } else if ((l[0] == 3 || l[0] == 4) && l[1] == 1) {
    if (l.size() < 2 + o + n)
      throw damaged(fmt::format("{}: a contiguous layout message of {} bytes", what, l.size()));
    if (little_endian(&l[2], o) == (o == 8 ? UINT64_MAX : (std::uint64_t(1) << (8 * o)) - 1))
      return;  // no storage allocated: HDF5 returns the fill value and reads nothing
    stored = little_endian(&l[2 + o], n);
    kind = "contiguous";
  } else {
    return;
  }
  if (!space || !type) return;  // shared (a committed datatype): left to HDF5
  const auto count = dataspace_count(space->data.data(), space->data.size(), n);
  const auto element = datatype_size(type->data.data(), type->data.size(), o);
  if (!count || !element)
    throw damaged(fmt::format("{}: a dataspace or datatype message that cannot be read", what));
  if (*count != 0 && *element > stored / *count)
    throw damaged(fmt::format("{}: a {} dataset declares {} values of {} bytes and holds {} bytes", what,
                              kind, *count, *element, stored));
}

}  // namespace

void check_attribute_messages(hid_t object, const std::string& shown, const std::string& what) {
  check_header(object, shown, what, "an object header's attribute messages",
               [&](const Header& h, const FileBytes& bytes) {
                 for (const Message& m : h.messages)
                   if (m.type == kMessageAttribute)
                     check_attribute(m.data.data(), m.data.size(), h.layout, bytes, what);
               });
}

void check_link_target(hid_t file, const std::string& name, const std::string& shown) {
  // HDF5 1.10.8 allocates each header chunk at the size it declares before reading it (gigabytes for a few-KB
  // damaged file, found by the fuzzers) and decodes the datatype and layout when a dataset is opened. The
  // link gives the header's address without loading it: the header is walked and checked first.
  unsigned intent = 0;
  if (H5Fget_intent(file, &intent) < 0 || (intent & H5F_ACC_RDWR)) return;  // nfmimo's own output: see above
  haddr_t address = HADDR_UNDEF;
#if H5_VERSION_GE(1, 12, 0)
  H5L_info2_t link;
  if (H5Lget_info2(file, name.c_str(), &link, H5P_DEFAULT) < 0 || link.type != H5L_TYPE_HARD) return;
  if (H5VLnative_token_to_addr(file, link.u.token, &address) < 0) return;
#else
  H5L_info_t link;
  if (H5Lget_info(file, name.c_str(), &link, H5P_DEFAULT) < 0 || link.type != H5L_TYPE_HARD) return;
  address = link.u.address;
#endif
  const std::string what = fmt::format("object '{}'", name);
  const FileLayout layout = file_layout(file, shown, what);
  const FileBytes bytes(file, shown, "an object header, checked before HDF5 loads it");
  if (address == HADDR_UNDEF)
    throw bytes.damaged(fmt::format("{}: its object header lies past the end of the file", what));
  const Source src = source_of(bytes);
  const auto messages = read_header(src, layout.userblock + address, layout, what);
  // A dataset's layout message is decoded when HDF5 opens it (a compact one's data copied then): checked
  // here.
  check_layout(messages, layout, src.damaged, what);
}

void check_root_header(const std::function<bool(std::uint64_t, std::size_t, unsigned char*)>& read,
                       std::uint64_t size, const std::string& shown) {
  // The superblock is at 0 or after a user block of 512, 1024, 2048, ... bytes. Format: HDF5 File Format
  // Specification 3.0, II.A: version 0/1 {signature (8), version, 4 version bytes, offsets, lengths,
  // reserved, 2 + 2 node sizes, flags (4), [version 1: 4], base, free space, end of file, driver, root entry
  // {name offset, header address, ...}}; version 2/3 {signature, version, offsets, lengths, flags, base,
  // extension, end of file, root header address, checksum}. Anything unexpected is left to HDF5, which
  // refuses it.
  static const unsigned char signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  for (std::uint64_t start = 0; start + 64 <= size; start = start ? start * 2 : 512) {
    unsigned char b[96] = {};
    if (!read(start, static_cast<std::size_t>(std::min<std::uint64_t>(sizeof b, size - start)), b)) return;
    if (std::memcmp(b, signature, 8) != 0) continue;
    const unsigned version = b[8];
    const std::size_t offsets = version <= 1 ? b[13] : b[9];
    if (version > 3 || (offsets != 2 && offsets != 4 && offsets != 8)) return;
    const std::size_t field = version <= 1 ? (version == 0 ? 24 : 28) + 5 * offsets : 12 + 3 * offsets;
    if (field + offsets > sizeof b) return;
    const std::uint64_t address = little_endian(b + field, offsets);
    const std::size_t lengths = version <= 1 ? b[14] : b[10];
    if (lengths != 2 && lengths != 4 && lengths != 8) return;
    // Addresses count from the superblock (HDF5 writes a base address of 0 and skips a user block before it).
    const FileLayout layout{offsets, lengths, start};
    const Source src{[&](std::uint64_t o, std::size_t n, unsigned char* out) {
                       if (!read(o, n, out)) throw InputError(fmt::format("{}: cannot be read", shown));
                     },
                     size,
                     [&](const std::string& why) {
                       return InputError(fmt::format("{}: damaged HDF5 file: {}", shown, why));
                     }};
    (void)read_header(src, start + address, layout, "the root group");
    return;
  }
}

}  // namespace nfmimo::h5
