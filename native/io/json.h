// A small JSON reader for file headers (safetensors). Strict: malformed input throws FormatError.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/named_tensors.h"

namespace segtool::io {

struct JsonValue {
  enum class Kind { Null, Bool, Number, String, Array, Object } kind = Kind::Null;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<JsonValue> array;
  std::vector<std::pair<std::string, JsonValue>> object;  // keeps file order

  const JsonValue* find(const std::string& key) const;
};

JsonValue parse_json(const std::string& text, const std::string& what);
std::string json_quote(const std::string& s);

}  // namespace segtool::io
