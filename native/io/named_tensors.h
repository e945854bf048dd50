// An ordered list of named tensors: the currency of state dicts and tensor files.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

namespace segtool::io {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Error thrown for malformed or unsupported files; the binding maps it to a SegtoolError
// with code ERR_BAD_FILE. The message names the file and what was expected.
struct FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace segtool::io
