// A restricted unpickler (and a small pickler) for the subset of Python pickle that torch.save
// writes: containers, scalars, strings, tensors over persistent storages. Anything else —
// in particular any GLOBAL outside a short whitelist — is refused with a FormatError. Nothing
// is ever executed: the whitelisted callables are implemented here in C++.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "io/named_tensors.h"

namespace segtool::io {

// A value of the pickled subset, as a plain owning tree (no sharing, no cycles). Tensors are
// CPU at::Tensors; two tensors that were views of one storage in the file still share it.
struct PyValue {
  enum class Kind { None, Bool, Int, BigInt, Float, String, Bytes, Tuple, List, Dict, Tensor };

  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0;
  std::string string;  // String (UTF-8), Bytes, BigInt (little-endian two's complement)
  std::vector<PyValue> items;                           // Tuple, List (and sets, as lists)
  std::vector<std::pair<PyValue, PyValue>> entries;     // Dict, in insertion (file) order
  bool ordered = false;                                 // Dict: collections.OrderedDict
  at::Tensor tensor;                                    // Tensor

  // Dict lookup by string key; nullptr when absent or not a Dict.
  const PyValue* find(const std::string& key) const;
  bool is_dict() const { return kind == Kind::Dict; }

  static PyValue none() { return PyValue(); }
  static PyValue from_bool(bool b);
  static PyValue from_int(int64_t i);
  static PyValue from_float(double d);
  static PyValue from_string(std::string s);
  static PyValue from_tensor(at::Tensor t);
  static PyValue list(std::vector<PyValue> items = {});
  static PyValue tuple(std::vector<PyValue> items = {});
  static PyValue dict(bool ordered = false);
  // Dict: appends (does not check for an existing key).
  void set(PyValue key, PyValue value) { entries.emplace_back(std::move(key), std::move(value)); }
  void set(const std::string& key, PyValue value) { set(from_string(key), std::move(value)); }
};

// "dict", "tensor float32 [64, 3, 3, 3]", ... for error messages.
std::string describe(const PyValue& v);

// What a persistent id says about a storage: ('storage', torch.<T>Storage, key, location,
// numel[, view_metadata]). The container format (zip or legacy) supplies the bytes.
struct StorageRequest {
  std::string key;
  std::string location;     // "cpu", "cuda:0", ...; everything loads to CPU
  at::ScalarType dtype;
  int64_t numel = 0;        // elements of the root storage
  // Legacy files only: a view (view_key, offset, numel) into the root storage `key`.
  bool is_view = false;
  std::string view_key;
  int64_t view_offset = 0;
  int64_t view_numel = 0;
};

// Elements [offset, offset + numel) of `storage` hold the storage's data (offset is non-zero
// only for legacy storage views).
struct StorageSlice {
  at::Storage storage;
  at::ScalarType dtype = at::kFloat;
  int64_t offset = 0;
  int64_t numel = 0;
};

using PersistentLoad = std::function<StorageSlice(const StorageRequest&)>;

// Parses one pickle starting at data[offset] and ending at its STOP opcode. `what` (usually
// the file name) prefixes every error. `persistent_load` resolves BINPERSID; without one a
// persistent id is an error. Returns the value and sets *end to the offset after STOP.
PyValue unpickle(const uint8_t* data, size_t size, size_t offset, const std::string& what,
                 const PersistentLoad& persistent_load, size_t* end = nullptr);

// Pickles `value` with protocol 2 the way torch.save does: Dicts with ordered=true become
// collections.OrderedDict, tensors become torch._utils._rebuild_tensor_v2 over a persistent
// storage. `add_storage(tensor)` is called once per tensor (a contiguous CPU tensor) and
// returns its storage key ("0", "1", ...). Bytes values are refused (protocol 2 cannot
// write them without calling _codecs.encode, which loaders rightly refuse).
std::vector<uint8_t> pickle_value(const PyValue& value,
                                  const std::function<std::string(const at::Tensor&)>& add_storage);

// torch.<T>Storage class name <-> dtype ("FloatStorage" <-> float32).
const char* storage_class_name(at::ScalarType dtype);  // nullptr when torch has none

}  // namespace segtool::io
