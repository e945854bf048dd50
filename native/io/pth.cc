#include "io/pth.h"

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/versions.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <limits>
#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include <zlib.h>

#include "io/file.h"

namespace segtool::io {

namespace {

uint64_t le_at(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int k = 0; k < n; ++k) v |= uint64_t(p[k]) << (8 * k);
  return v;
}

// CRC-32 (zip's), slicing by 8: verifying every record catches corrupt bytes, which would
// otherwise load silently as wrong weights.
uint32_t crc32(const uint8_t* p, size_t n) {
  static const auto tables = [] {
    std::array<std::array<uint32_t, 256>, 8> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  while (n >= 8) {
    uint32_t lo = c ^ static_cast<uint32_t>(le_at(p, 4));
    uint32_t hi = static_cast<uint32_t>(le_at(p + 4, 4));
    c = tables[7][lo & 0xff] ^ tables[6][(lo >> 8) & 0xff] ^ tables[5][(lo >> 16) & 0xff] ^ tables[4][lo >> 24] ^
        tables[3][hi & 0xff] ^ tables[2][(hi >> 8) & 0xff] ^ tables[1][(hi >> 16) & 0xff] ^ tables[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = tables[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// ---------------------------------------------------------------------------------------------
// A zip reader over bytes in memory: central directory (zip64 too), local headers, stored
// records read in place. Every offset and size is checked against the file, so a lying header
// is an error, never a huge allocation or an out-of-bounds read.

struct ZipEntry {
  uint64_t data_offset = 0;
  uint64_t compressed_size = 0;
  uint64_t size = 0;
  uint16_t method = 0;
  uint32_t crc = 0;
};

class ZipArchive {
 public:
  ZipArchive(const uint8_t* data, size_t size, const std::string& what) : data_(data), size_(size), what_(what) {
    parse();
  }

  const std::vector<std::string>& names() const { return names_; }
  const ZipEntry* find(const std::string& name) const {
    auto it = entries_.find(name);
    return it == entries_.end() ? nullptr : &it->second;
  }

  // The bytes of a record, after its CRC is checked. Stored records are returned in place;
  // deflated ones (torch.save never compresses, a re-zipped file might) are inflated into
  // `scratch`, to exactly their declared size (see inflate).
  const uint8_t* read(const std::string& name, const ZipEntry& e, std::vector<uint8_t>& scratch) {
    const uint8_t* bytes = nullptr;
    if (e.method == 0) {
      bytes = data_ + e.data_offset;
    } else if (e.method == 8) {
      // Deflate cannot expand more than ~1032x: a larger claim is a lie.
      if (e.size > e.compressed_size * 1032 + 1024)
        fail("record " + name + " claims " + std::to_string(e.size) + " bytes from " +
             std::to_string(e.compressed_size) + " compressed bytes");
      scratch = inflate(name, e.size);
      bytes = scratch.data();
    } else {
      fail("record " + name + " uses zip compression method " + std::to_string(e.method) +
           " (torch.save stores records uncompressed)");
    }
    if (crc32(bytes, e.size) != e.crc) fail("record " + name + " is corrupt (CRC mismatch)");
    return bytes;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const { throw FormatError(what_ + ": " + why); }

  void parse() {
    // End of central directory: 22 bytes + a comment of up to 64 KiB, at the end.
    constexpr size_t kEocd = 22;
    if (size_ < kEocd) fail("truncated zip archive (no end-of-central-directory record)");
    size_t eocd = std::string::npos;
    size_t lowest = size_ > kEocd + 65535 ? size_ - kEocd - 65535 : 0;
    for (size_t p = size_ - kEocd + 1; p-- > lowest;)
      if (le_at(data_ + p, 4) == 0x06054b50 && p + kEocd + le_at(data_ + p + 20, 2) == size_) {
        eocd = p;
        break;
      }
    if (eocd == std::string::npos)
      fail("truncated or corrupt zip archive (no end-of-central-directory record; file cut short?)");
    if (le_at(data_ + eocd + 4, 2) != 0 || le_at(data_ + eocd + 6, 2) != 0 ||
        le_at(data_ + eocd + 8, 2) != le_at(data_ + eocd + 10, 2))
      fail("corrupt zip archive (multi-disk archives are not supported)");
    uint64_t count = le_at(data_ + eocd + 10, 2);
    uint64_t cd_size = le_at(data_ + eocd + 12, 4);
    uint64_t cd_offset = le_at(data_ + eocd + 16, 4);
    if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
      // zip64: a locator just before the EOCD points at the zip64 EOCD record.
      if (eocd < 20 || le_at(data_ + eocd - 20, 4) != 0x07064b50) fail("corrupt zip64 archive (no zip64 locator)");
      uint64_t z = le_at(data_ + eocd - 20 + 8, 8);
      if (z > size_ || size_ - z < 56 || le_at(data_ + z, 4) != 0x06064b50) fail("corrupt zip64 archive (bad zip64 record)");
      count = le_at(data_ + z + 32, 8);
      cd_size = le_at(data_ + z + 40, 8);
      cd_offset = le_at(data_ + z + 48, 8);
    }
    if (cd_offset > size_ || cd_size > size_ - cd_offset) fail("truncated or corrupt zip archive (central directory out of range)");
    if (count > cd_size / 46) fail("corrupt zip archive (entry count exceeds the central directory)");

    size_t p = static_cast<size_t>(cd_offset);
    size_t end = static_cast<size_t>(cd_offset + cd_size);
    for (uint64_t i = 0; i < count; ++i) {
      if (end - p < 46 || le_at(data_ + p, 4) != 0x02014b50) fail("corrupt zip archive (bad central directory entry)");
      ZipEntry e;
      uint64_t flags = le_at(data_ + p + 8, 2);
      if (flags & (0x01 | 0x20 | 0x40 | 0x2000)) fail("corrupt zip archive (encrypted or patched records are not supported)");
      if (le_at(data_ + p + 34, 2) != 0) fail("corrupt zip archive (multi-disk archives are not supported)");
      bool dos_folder = le_at(data_ + p + 38, 1) & 0x10;  // LibTorch's zip reader then reads no data
      e.method = static_cast<uint16_t>(le_at(data_ + p + 10, 2));
      e.crc = static_cast<uint32_t>(le_at(data_ + p + 16, 4));
      e.compressed_size = le_at(data_ + p + 20, 4);
      e.size = le_at(data_ + p + 24, 4);
      size_t name_len = le_at(data_ + p + 28, 2), extra_len = le_at(data_ + p + 30, 2), comment_len = le_at(data_ + p + 32, 2);
      uint64_t local = le_at(data_ + p + 42, 4);
      if (end - p - 46 < name_len + extra_len + comment_len) fail("corrupt zip archive (central directory entry overruns)");
      std::string name(reinterpret_cast<const char*>(data_ + p + 46), name_len);
      if (dos_folder && (name.empty() || name.back() != '/')) fail("corrupt zip archive (record " + name + " marked as a folder)");
      // zip64 extra field: 64-bit values for the fields saturated above, in this order.
      const uint8_t* x = data_ + p + 46 + name_len;
      for (size_t q = 0; q + 4 <= extra_len;) {
        size_t id = le_at(x + q, 2), len = le_at(x + q + 2, 2);
        if (q + 4 + len > extra_len) break;
        if (id == 0x0001) {
          size_t r = q + 4;
          auto take = [&](uint64_t& field) {
            if (field != 0xFFFFFFFF) return;
            if (r + 8 > q + 4 + len) fail("corrupt zip64 extra field in " + name);
            field = le_at(x + r, 8);
            r += 8;
          };
          take(e.size);
          take(e.compressed_size);
          take(local);
        }
        q += 4 + len;
      }
      p += 46 + name_len + extra_len + comment_len;

      if (local > size_ || size_ - local < 30 || le_at(data_ + local, 4) != 0x04034b50)
        fail("truncated or corrupt zip archive (bad local header for " + name + ")");
      uint64_t data_offset = local + 30 + le_at(data_ + local + 26, 2) + le_at(data_ + local + 28, 2);
      if (data_offset > size_ || e.compressed_size > size_ - data_offset)
        fail("truncated zip archive (record " + name + " runs past the end of the file)");
      if (e.method == 0 && e.compressed_size != e.size) fail("corrupt zip archive (stored record " + name + " changes size)");
      if (e.method != 0 && e.method != 8)
        fail("record " + name + " uses zip compression method " + std::to_string(e.method) +
             " (torch.save stores records uncompressed)");
      e.data_offset = data_offset;
      if (!entries_.emplace(name, e).second) fail("corrupt zip archive (record " + name + " appears twice)");
      names_.push_back(name);
    }
  }

  // The archive's version record, checked before any record is inflated (LibTorch's own reader
  // did this; a corrupt or unsupported version fails here).
  void check_version_record(const std::string& prefix) {
    std::string name = prefix + ".data/version";
    const ZipEntry* e = find(name);
    if (!e) e = find(name = prefix + "version");
    if (!e || e->size == 0 || e->size > 32) fail("zip archive without a valid " + prefix + "version record");
    if (e->method != 0) return;  // compressed itself: only LibTorch's reader can read it
    std::vector<uint8_t> scratch;
    const uint8_t* b = read(name, *e, scratch);
    uint64_t version = 0;
    bool digits = false;
    for (uint64_t i = 0; i < e->size && b[i] != '\n'; ++i) {
      if (b[i] < '0' || b[i] > '9' || version > 1000) fail("zip archive with a corrupt " + name + " record");
      version = version * 10 + (b[i] - '0');
      digits = true;
    }
    if (!digits || version < caffe2::serialize::kMinSupportedFileFormatVersion ||
        version > caffe2::serialize::kMaxSupportedFileFormatVersion)
      fail("unsupported checkpoint format version in " + name);
  }

  // Inflates a deflated record into exactly `expected` bytes (its central-directory size, which
  // the caller has checked against what the pickle declares): a stream that would produce more,
  // or ends short, or leaves compressed bytes unread, is an error. The output buffer is the
  // bound, so a small file never becomes a large allocation its header does not declare.
  std::vector<uint8_t> inflate(const std::string& name, uint64_t expected) {
    const ZipEntry* e = find(name);
    if (!e) fail("record " + name + " is missing");
    if (!version_checked_) {
      check_version_record(name.substr(0, name.find('/') + 1));
      version_checked_ = true;
    }
    if (expected > std::numeric_limits<size_t>::max()) fail("record " + name + " is too large for this machine");
    std::vector<uint8_t> out(static_cast<size_t>(expected));
    z_stream z{};
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK) fail("cannot inflate record " + name + " (zlib init failed)");
    const uint8_t* in = data_ + e->data_offset;
    uint64_t in_left = e->compressed_size;
    uint64_t out_done = 0;
    int status = Z_OK;
    uint8_t probe = 0;  // one byte past the declared size: any output here is too much
    bool over = false;
    while (status == Z_OK) {
      constexpr uint64_t kChunk = 1u << 30;
      z.next_in = const_cast<Bytef*>(in);
      z.avail_in = static_cast<uInt>(std::min(in_left, kChunk));
      if (out_done < expected) {
        z.next_out = out.data() + out_done;
        z.avail_out = static_cast<uInt>(std::min(expected - out_done, kChunk));
      } else {
        z.next_out = &probe;
        z.avail_out = 1;
      }
      uInt avail_in = z.avail_in, avail_out = z.avail_out;
      status = ::inflate(&z, Z_NO_FLUSH);
      in += avail_in - z.avail_in;
      in_left -= avail_in - z.avail_in;
      uint64_t produced = avail_out - z.avail_out;
      if (out_done >= expected && produced > 0) {
        over = true;
        break;
      }
      out_done += produced;
    }
    inflateEnd(&z);
    if (over)
      fail("record " + name + " inflates to more than the " + std::to_string(expected) + " bytes its zip entry declares");
    if (status != Z_STREAM_END)
      fail(status == Z_DATA_ERROR || status == Z_NEED_DICT || status == Z_MEM_ERROR
               ? "cannot inflate record " + name + " (corrupt deflate data)"
               : "record " + name + " is truncated (its deflate data ends before " + std::to_string(expected) + " bytes)");
    if (out_done != expected)
      fail("record " + name + " inflates to " + std::to_string(out_done) + " bytes, not the " + std::to_string(expected) +
           " its zip entry declares");
    if (in_left != 0) fail("record " + name + " has " + std::to_string(in_left) + " bytes after the end of its deflate data");
    return out;
  }

  const uint8_t* data_;
  size_t size_;
  const std::string& what_;
  std::unordered_map<std::string, ZipEntry> entries_;
  std::vector<std::string> names_;
  bool version_checked_ = false;
};

int64_t checked_nbytes(int64_t numel, at::ScalarType dtype, const std::string& what) {
  int64_t n;
  if (__builtin_mul_overflow(numel, static_cast<int64_t>(c10::elementSize(dtype)), &n))
    throw FormatError(what + ": storage size overflows");
  return n;
}

at::Storage new_storage(int64_t nbytes) {
  return at::empty({nbytes}, at::TensorOptions().dtype(at::kByte)).storage();
}

// ---------------------------------------------------------------------------------------------
// Zip format: <archive>/data.pkl, <archive>/data/<key>, <archive>/version.

PyValue read_zip(const uint8_t* data, size_t size, const std::string& what) {
  ZipArchive zip(data, size, what);
  if (zip.names().empty()) throw FormatError(what + ": empty zip archive, expected a torch.save checkpoint");
  // Like LibTorch's reader: the archive folder is the first record's top-level folder.
  const std::string& first = zip.names().front();
  auto slash = first.find('/');
  if (slash == std::string::npos)
    throw FormatError(what + ": a zip archive but not a torch.save checkpoint (records are not in an archive folder)");
  std::string prefix = first.substr(0, slash + 1);
  const ZipEntry* pkl = zip.find(prefix + "data.pkl");
  if (!pkl) {
    if (zip.find(prefix + "constants.pkl") || zip.find(prefix + "code/"))
      throw FormatError(what + ": a TorchScript archive (torch.jit.save), not a torch.save checkpoint");
    throw FormatError(what + ": a zip archive without " + prefix + "data.pkl: not a torch.save checkpoint");
  }
  if (const ZipEntry* order = zip.find(prefix + "byteorder")) {  // written by PyTorch >= 2.1
    if (order->size > 16) throw FormatError(what + ": corrupt " + prefix + "byteorder record (" + std::to_string(order->size) + " bytes)");
    std::vector<uint8_t> scratch;
    const uint8_t* b = zip.read(prefix + "byteorder", *order, scratch);
    std::string byteorder(reinterpret_cast<const char*>(b), static_cast<size_t>(order->size));
    if (byteorder != "little")
      throw FormatError(what + ": a checkpoint with byte order '" + byteorder + "'; only little-endian is supported");
  }
  std::vector<uint8_t> pkl_scratch;
  const uint8_t* pkl_bytes = zip.read(prefix + "data.pkl", *pkl, pkl_scratch);

  struct Loaded {
    at::Storage storage;
    at::ScalarType dtype;
  };
  std::unordered_map<std::string, Loaded> loaded;
  PersistentLoad load = [&](const StorageRequest& r) -> StorageSlice {
    std::string name = prefix + "data/" + r.key;
    int64_t nbytes = checked_nbytes(r.numel, r.dtype, what);
    auto it = loaded.find(r.key);
    if (it == loaded.end()) {
      const ZipEntry* e = zip.find(name);
      if (!e) throw FormatError(what + ": record " + name + " is missing (truncated or corrupt checkpoint)");
      if (e->size != static_cast<uint64_t>(nbytes))
        throw FormatError(what + ": record " + name + " holds " + std::to_string(e->size) + " bytes, expected " +
                          std::to_string(nbytes) + " (" + std::to_string(r.numel) + " x " +
                          c10::toString(r.dtype) + ")");
      std::vector<uint8_t> scratch;
      const uint8_t* bytes = zip.read(name, *e, scratch);
      at::Storage storage = new_storage(nbytes);
      if (nbytes) std::memcpy(storage.data(), bytes, static_cast<size_t>(nbytes));
      it = loaded.emplace(r.key, Loaded{storage, r.dtype}).first;
    } else if (static_cast<int64_t>(it->second.storage.nbytes()) != nbytes) {
      throw FormatError(what + ": storage " + r.key + " is used with two different sizes");
    }
    return StorageSlice{it->second.storage, r.dtype, 0, r.numel};
  };
  return unpickle(pkl_bytes, static_cast<size_t>(pkl->size), 0, what + " (" + prefix + "data.pkl)", load);
}

// ---------------------------------------------------------------------------------------------
// Legacy format: pickles of the magic number, the protocol version and sys_info, then the
// object (storages as persistent ids), then the list of storage keys, then each storage's data
// in that order as an int64 element count and the raw little-endian elements.

constexpr uint8_t kLegacyMagic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};  // 0x1950a86a20f9469cfc6c
constexpr int64_t kLegacyProtocol = 1001;

PyValue read_legacy(const uint8_t* data, size_t size, const std::string& what) {
  size_t pos = 0;
  PyValue magic = unpickle(data, size, pos, what, nullptr, &pos);
  if (magic.kind != PyValue::Kind::BigInt || magic.string.size() != sizeof kLegacyMagic ||
      std::memcmp(magic.string.data(), kLegacyMagic, sizeof kLegacyMagic) != 0)
    throw FormatError(what + ": a pickle but not a PyTorch checkpoint (no torch.save magic number)");
  PyValue protocol = unpickle(data, size, pos, what, nullptr, &pos);
  if (protocol.kind != PyValue::Kind::Int || protocol.integer != kLegacyProtocol)
    throw FormatError(what + ": unsupported legacy checkpoint protocol (expected " + std::to_string(kLegacyProtocol) + ")");
  PyValue sys_info = unpickle(data, size, pos, what, nullptr, &pos);
  const PyValue* little = sys_info.find("little_endian");
  if (!little || little->kind != PyValue::Kind::Bool)
    throw FormatError(what + ": legacy checkpoint without sys_info (corrupt file)");
  if (!little->boolean) throw FormatError(what + ": a big-endian legacy checkpoint, which is not supported");

  struct Root {
    at::Storage storage;
    at::ScalarType dtype;
    int64_t numel;
    bool filled = false;
  };
  std::unordered_map<std::string, Root> roots;
  uint64_t claimed = 0;
  PersistentLoad load = [&](const StorageRequest& r) -> StorageSlice {
    auto it = roots.find(r.key);
    if (it == roots.end()) {
      int64_t nbytes = checked_nbytes(r.numel, r.dtype, what);
      // The data follows in this file, so all storages together cannot exceed its size: a
      // larger claim is a lie and must not turn into an allocation.
      claimed += static_cast<uint64_t>(nbytes);
      if (claimed > size)
        throw FormatError(what + ": its storages need more bytes (" + std::to_string(claimed) + " so far) than the file holds (" +
                          std::to_string(size) + "): truncated or corrupt checkpoint");
      it = roots.emplace(r.key, Root{new_storage(nbytes), r.dtype, r.numel}).first;
    } else if (it->second.dtype != r.dtype || it->second.numel != r.numel) {
      throw FormatError(what + ": storage " + r.key + " is used with two different types or sizes");
    }
    const Root& root = it->second;
    if (!r.is_view) return StorageSlice{root.storage, root.dtype, 0, root.numel};
    if (r.view_offset > root.numel || r.view_numel > root.numel - r.view_offset)
      throw FormatError(what + ": storage view " + r.view_key + " lies outside storage " + r.key);
    return StorageSlice{root.storage, root.dtype, r.view_offset, r.view_numel};
  };
  PyValue result = unpickle(data, size, pos, what, load, &pos);

  PyValue keys = unpickle(data, size, pos, what, nullptr, &pos);
  if (keys.kind != PyValue::Kind::List) throw FormatError(what + ": legacy checkpoint without its storage key list (corrupt file)");
  for (const PyValue& key : keys.items) {
    std::string k = key.kind == PyValue::Kind::String ? key.string
                    : key.kind == PyValue::Kind::Int  ? std::to_string(key.integer)
                                                      : std::string("?");
    auto it = roots.find(k);
    if (it == roots.end() || it->second.filled)
      throw FormatError(what + ": storage key list names unknown or repeated storage " + k + " (corrupt file)");
    Root& root = it->second;
    if (size - pos < 8) throw FormatError(what + ": truncated file (data of storage " + k + " missing)");
    uint64_t count = le_at(data + pos, 8);
    pos += 8;
    if (count != static_cast<uint64_t>(root.numel))
      throw FormatError(what + ": storage " + k + " holds " + std::to_string(count) + " elements, expected " +
                        std::to_string(root.numel) + " (corrupt file)");
    size_t nbytes = root.storage.nbytes();
    if (size - pos < nbytes) throw FormatError(what + ": truncated file (data of storage " + k + " cut short)");
    if (nbytes) std::memcpy(root.storage.data(), data + pos, nbytes);
    pos += nbytes;
    root.filled = true;
  }
  for (const auto& [k, root] : roots)
    if (!root.filled) throw FormatError(what + ": storage " + k + " has no data (truncated or corrupt file)");
  return result;
}

// What a file that is not a checkpoint looks like, for the error message.
std::string sniff(const uint8_t* d, size_t n) {
  auto starts = [&](const char* magic, size_t len) { return n >= len && std::memcmp(d, magic, len) == 0; };
  if (starts("\xFF\xD8\xFF", 3)) return " (it looks like a JPEG image)";
  if (starts("\x89PNG", 4)) return " (it looks like a PNG image)";
  if (starts("\x1f\x8b", 2)) return " (it looks gzip-compressed)";
  if (n >= 262 && std::memcmp(d + 257, "ustar", 5) == 0)
    return " (a tar archive: PyTorch's pre-0.4 checkpoint format is not supported; re-save it with a newer PyTorch)";
  if (n >= 9 && d[8] == '{' && le_at(d, 8) < n) return " (it looks like a safetensors file)";
  return "";
}

bool is_tensor_dict(const PyValue& v) {
  if (v.kind != PyValue::Kind::Dict) return false;
  for (const auto& [k, t] : v.entries)
    if (k.kind != PyValue::Kind::String || t.kind != PyValue::Kind::Tensor) return false;
  return true;
}

std::string keys_summary(const PyValue& v) {
  if (v.kind != PyValue::Kind::Dict) return describe(v);
  std::string out = describe(v) + " with keys";
  size_t shown = 0;
  for (const auto& [k, val] : v.entries) {
    if (shown++ == 8) return out + ", ...";
    out += (shown > 1 ? ", " : " ") + (k.kind == PyValue::Kind::String ? k.string : describe(k)) + " (" + describe(val) + ")";
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

PthFile parse_pth(const uint8_t* data, size_t size, const std::string& what) {
  if (size == 0) throw FormatError(what + ": empty file, expected a PyTorch checkpoint (.pth)");
  PthFile file;
  try {
    if (size >= 4 && (std::memcmp(data, "PK\x03\x04", 4) == 0 || std::memcmp(data, "PK\x05\x06", 4) == 0)) {
      file.format = PthFormat::Zip;
      file.root = read_zip(data, size, what);
    } else if (data[0] == 0x80) {  // pickle PROTO opcode: the legacy format starts with pickles
      file.format = PthFormat::Legacy;
      file.root = read_legacy(data, size, what);
    } else if (size < 4 && std::memcmp(data, "PK\x03", size) == 0) {
      throw FormatError(what + ": truncated zip archive (" + std::to_string(size) + " bytes), expected a torch.save checkpoint");
    } else {
      throw FormatError(what + ": not a PyTorch checkpoint" + sniff(data, size) +
                        "; expected a torch.save file (a zip archive, or a legacy pickle)");
    }
  } catch (const c10::Error& e) {
    // LibTorch checks (e.g. of tensor geometry) are bad input too; drop the C++ backtrace.
    throw FormatError(what + ": corrupt checkpoint (" + e.what_without_backtrace() + ")");
  }
  std::string path;
  if (const PyValue* sd = find_state_dict(file.root, "", &path)) {
    file.tensors = named_tensors_of(*sd, what);
    file.state_dict_path = path;
    file.has_state_dict = true;
  }
  return file;
}

PthFile read_pth(const std::string& path) {
  std::vector<uint8_t> bytes = read_file(path);
  return parse_pth(bytes.data(), bytes.size(), path);
}

const PyValue* find_state_dict(const PyValue& root, const std::string& key, std::string* path) {
  if (!key.empty()) {
    const PyValue* v = &root;
    size_t start = 0;
    while (v && start <= key.size()) {
      size_t slash = key.find('/', start);
      std::string part = key.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      v = v->find(part);
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
    if (!v || !is_tensor_dict(*v)) return nullptr;
    if (path) *path = key;
    return v;
  }
  if (is_tensor_dict(root)) {
    if (path) *path = "";
    return &root;
  }
  if (root.kind != PyValue::Kind::Dict) return nullptr;
  for (const char* name : {"state_dict", "model_state_dict", "model", "net", "module"}) {
    const PyValue* v = root.find(name);
    if (v && is_tensor_dict(*v) && !v->entries.empty()) {
      if (path) *path = name;
      return v;
    }
  }
  const PyValue* only = nullptr;
  std::string only_key;
  for (const auto& [k, v] : root.entries)
    if (k.kind == PyValue::Kind::String && is_tensor_dict(v) && !v.entries.empty()) {
      if (only) return nullptr;  // several candidates: the caller must name one
      only = &v;
      only_key = k.string;
    }
  if (only && path) *path = only_key;
  return only;
}

NamedTensors named_tensors_of(const PyValue& dict, const std::string& what) {
  if (!is_tensor_dict(dict)) throw FormatError(what + ": expected a dict of tensors, found " + keys_summary(dict));
  NamedTensors out;
  out.reserve(dict.entries.size());
  std::unordered_set<std::string> seen;
  for (const auto& [k, v] : dict.entries) {
    std::string name = k.string.rfind("module.", 0) == 0 ? k.string.substr(7) : k.string;
    if (!seen.insert(name).second)
      throw FormatError(what + ": key " + name + " appears both with and without the 'module.' prefix");
    out.emplace_back(std::move(name), v.tensor);
  }
  return out;
}

NamedTensors read_state_dict(const std::string& path, const std::string& key) {
  PthFile file = read_pth(path);
  if (key.empty()) {
    if (file.has_state_dict) return std::move(file.tensors);
    throw FormatError(path + ": no state dict (a dict of tensors) found; the file holds " + keys_summary(file.root));
  }
  const PyValue* sd = find_state_dict(file.root, key);
  if (!sd)
    throw FormatError(path + ": '" + key + "' is not a dict of tensors in this file; it holds " + keys_summary(file.root));
  return named_tensors_of(*sd, path);
}

PyValue state_dict_value(const NamedTensors& tensors) {
  PyValue dict = PyValue::dict(/*ordered=*/true);
  std::unordered_set<std::string> seen;
  for (const auto& [name, tensor] : tensors) {
    if (!seen.insert(name).second) throw FormatError("cannot save a state dict with the key " + name + " twice");
    dict.set(name, PyValue::from_tensor(tensor));
  }
  return dict;
}

std::vector<uint8_t> serialize_pth(const PyValue& value) {
  std::vector<std::pair<std::string, at::Tensor>> storages;
  std::vector<uint8_t> pickle = pickle_value(value, [&](const at::Tensor& t) {
    storages.emplace_back(std::to_string(storages.size()), t);
    return storages.back().first;
  });
  // torch.save writes the storages in the sorted order of their keys (as strings).
  std::sort(storages.begin(), storages.end(), [](const auto& a, const auto& b) { return a.first < b.first; });

  std::vector<uint8_t> out;
  try {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* buf, size_t n) -> size_t {
      const uint8_t* b = static_cast<const uint8_t*>(buf);
      out.insert(out.end(), b, b + n);
      return n;
    });
    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    // Newer PyTorch records the byte order; 1.13 ignores the record.
    static const char kByteOrder[] = "little";
    writer.writeRecord("byteorder", kByteOrder, sizeof kByteOrder - 1);
    for (const auto& [key, t] : storages)
      writer.writeRecord("data/" + key, t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
    writer.writeEndOfFile();  // writes the "version" record and the central directory
  } catch (const c10::Error& e) {
    throw FormatError(std::string("cannot serialize checkpoint (") + e.what_without_backtrace() + ")");
  }
  return out;
}

void write_pth_value(const std::string& path, const PyValue& value) {
  std::vector<uint8_t> bytes;
  try {
    bytes = serialize_pth(value);
  } catch (const FormatError& e) {
    throw FormatError(path + ": " + e.what());
  }
  write_file_atomic(path, bytes);
}

void write_pth(const std::string& path, const NamedTensors& tensors) {
  PyValue dict;
  try {
    dict = state_dict_value(tensors);
  } catch (const FormatError& e) {
    throw FormatError(path + ": " + e.what());
  }
  write_pth_value(path, dict);
}

}  // namespace segtool::io
