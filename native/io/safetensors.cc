#include "io/safetensors.h"

#include <cstring>

#include "io/file.h"
#include "io/json.h"

namespace segtool::io {

namespace {

struct DtypeName {
  const char* name;
  at::ScalarType type;
};
constexpr DtypeName kDtypes[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
    {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
    {"U8", at::kByte},    {"BOOL", at::kBool},
};

at::ScalarType dtype_from_name(const std::string& name, const std::string& what) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  throw FormatError(what + ": unsupported safetensors dtype '" + name + "'");
}

const char* dtype_name(at::ScalarType type) {
  for (const auto& d : kDtypes)
    if (type == d.type) return d.name;
  throw FormatError(std::string("safetensors cannot store dtype ") + c10::toString(type));
}

}  // namespace

SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& what) {
  if (size < 8) throw FormatError(what + ": not a safetensors file (shorter than its 8-byte header length)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > size - 8 || header_len > (100u << 20))
    throw FormatError(what + ": not a safetensors file or truncated (header length " +
                      std::to_string(header_len) + " exceeds file size " + std::to_string(size) + ")");
  std::string header(reinterpret_cast<const char*>(data + 8), header_len);
  JsonValue root = parse_json(header, what);
  if (root.kind != JsonValue::Kind::Object) throw FormatError(what + ": safetensors header is not a JSON object");
  const uint8_t* body = data + 8 + header_len;
  size_t body_size = size - 8 - header_len;

  SafetensorsFile file;
  std::vector<std::pair<uint64_t, std::pair<std::string, at::Tensor>>> by_offset;
  for (const auto& [name, entry] : root.object) {
    if (name == "__metadata__") {
      for (const auto& [k, v] : entry.object)
        if (v.kind == JsonValue::Kind::String) file.metadata[k] = v.string;
      continue;
    }
    const JsonValue* dtype = entry.find("dtype");
    const JsonValue* shape = entry.find("shape");
    const JsonValue* offsets = entry.find("data_offsets");
    if (!dtype || !shape || !offsets || offsets->array.size() != 2)
      throw FormatError(what + ": tensor '" + name + "' lacks dtype, shape or data_offsets");
    at::ScalarType type = dtype_from_name(dtype->string, what);
    std::vector<int64_t> sizes;
    int64_t numel = 1;
    for (const auto& d : shape->array) {
      if (d.number < 0) throw FormatError(what + ": tensor '" + name + "' has a negative dimension");
      sizes.push_back(static_cast<int64_t>(d.number));
      numel *= sizes.back();
    }
    auto begin = static_cast<uint64_t>(offsets->array[0].number);
    auto end = static_cast<uint64_t>(offsets->array[1].number);
    uint64_t expected = static_cast<uint64_t>(numel) * c10::elementSize(type);
    if (end < begin || end > body_size || end - begin != expected)
      throw FormatError(what + ": tensor '" + name + "' data [" + std::to_string(begin) + ", " +
                        std::to_string(end) + ") does not fit its shape or the file (truncated?)");
    at::Tensor t = at::empty(sizes, at::TensorOptions().dtype(type));
    if (expected) std::memcpy(t.data_ptr(), body + begin, expected);
    by_offset.push_back({begin, {name, t}});
  }
  std::stable_sort(by_offset.begin(), by_offset.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& e : by_offset) file.tensors.push_back(std::move(e.second));
  return file;
}

SafetensorsFile read_safetensors(const std::string& path) {
  std::vector<uint8_t> bytes = read_file(path);
  return parse_safetensors(bytes.data(), bytes.size(), path);
}

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) {
      if (!first) header += ",";
      header += json_quote(k) + ":" + json_quote(v);
      first = false;
    }
    header += "}";
  }
  std::vector<at::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
    uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    if (!first || !metadata.empty()) header += ",";
    first = false;
    header += json_quote(name) + ":{\"dtype\":\"" + dtype_name(t.scalar_type()) + "\",\"shape\":[";
    for (int64_t d = 0; d < t.dim(); ++d) header += (d ? "," : "") + std::to_string(t.size(d));
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
    data.push_back(t);
  }
  header += "}";
  while ((8 + header.size()) % 8) header += ' ';  // keep tensor data 8-byte aligned

  std::vector<uint8_t> out(8 + header.size() + offset);
  uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(len >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  uint8_t* p = out.data() + 8 + header.size();
  for (const auto& t : data) {
    size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
    if (bytes) std::memcpy(p, t.data_ptr(), bytes);
    p += bytes;
  }
  write_file_atomic(path, out);
}

}  // namespace segtool::io
