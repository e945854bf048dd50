// File helpers shared by every reader and writer in native/io.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace segtool::io {

// Reads a whole file; a missing or unreadable file throws FormatError naming it.
std::vector<uint8_t> read_file(const std::string& path);

// Writes atomically: a temp file beside `path`, fsync, rename, fsync of the folder. An
// interrupted write leaves the previous file intact and no partial file under `path`.
void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace segtool::io
