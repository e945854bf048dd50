// safetensors: 8-byte little-endian header length, JSON header, raw little-endian data.
#pragma once
#include <map>
#include <string>

#include "io/named_tensors.h"

namespace segtool::io {

struct SafetensorsFile {
  NamedTensors tensors;                         // in file (offset) order
  std::map<std::string, std::string> metadata;  // the header's "__metadata__"
};

SafetensorsFile read_safetensors(const std::string& path);
SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& what);
// Writes to `path` atomically (temp file, fsync, rename).
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace segtool::io
