// File helpers shared by every reader and writer in native/io.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace segtool::io {

// Reads a whole regular file; a missing or unreadable file, or one that is not a regular file
// (a folder, FIFO, device, socket), throws FormatError naming it. Opening never blocks.
std::vector<uint8_t> read_file(const std::string& path);

// Writes atomically: a temp file beside `path` (<path>.<pid>.<hex>.tmp), fsync, rename, fsync of
// the folder. An interrupted write leaves the previous file intact and no partial file under
// `path`. A `path` that exists and is not a regular file (a symlink, device, FIFO, folder) is
// refused with a FormatError naming it. The only atomic writer in native/.
void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace segtool::io
