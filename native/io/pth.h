// PyTorch checkpoint files (.pth): read the zip format (torch.save, PyTorch >= 1.6) and the
// legacy pickle format (PyTorch < 1.6, including files saved from CUDA tensors); write the zip
// format exactly as torch.save does, so torch.load (and torch.load(weights_only=True)) reads it.
// Every error is a FormatError whose message names the file and what was expected.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/named_tensors.h"
#include "io/pickle.h"

namespace segtool::io {

enum class PthFormat { Zip, Legacy };

struct PthFile {
  PthFormat format = PthFormat::Zip;
  // The whole pickled object (a state dict, or e.g. {"state_dict": {...}, "epoch": 20}).
  // Tensors are CPU tensors whatever device they were saved from.
  PyValue root;
  // The state dict found in `root` (see find_state_dict) in file order, "module." prefixes
  // stripped; empty, with state_dict_path "", when root holds none.
  NamedTensors tensors;
  std::string state_dict_path;  // "" for the root itself, else e.g. "state_dict"; see find_state_dict
  bool has_state_dict = false;
};

PthFile read_pth(const std::string& path);
// The same from bytes in memory; `what` names them in errors.
PthFile parse_pth(const uint8_t* data, size_t size, const std::string& what);

// The state dict in a checkpoint. With `key` empty: the root if it is a dict of tensors, else
// the first of root["state_dict"], ["model_state_dict"], ["model"], ["net"], ["module"] that
// is one, else the root's only value that is one. With `key`: that entry, '/' separating
// nested keys ("checkpoint/encoder"). Throws FormatError naming what the file holds instead.
NamedTensors read_state_dict(const std::string& path, const std::string& key = "");

// Finds a state dict (a dict of str -> tensor) in `root` as read_state_dict describes; sets
// *path to where. nullptr when there is none.
const PyValue* find_state_dict(const PyValue& root, const std::string& key = "", std::string* path = nullptr);

// A dict of str -> tensor as NamedTensors, in order, "module." prefixes (DataParallel) stripped.
NamedTensors named_tensors_of(const PyValue& dict, const std::string& what);

// An OrderedDict of the tensors, as nn.Module.state_dict() returns.
PyValue state_dict_value(const NamedTensors& tensors);

// Writes `tensors` as torch.save(OrderedDict) does, atomically (temp file, fsync, rename).
// Tensors may be on any device and non-contiguous; each is saved as its own storage.
void write_pth(const std::string& path, const NamedTensors& tensors);
// Writes any value of the pickled subset (nested dicts, lists, numbers, strings, tensors).
void write_pth_value(const std::string& path, const PyValue& value);
// The bytes write_pth_value writes.
std::vector<uint8_t> serialize_pth(const PyValue& value);

}  // namespace segtool::io
