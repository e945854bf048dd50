#include "io/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <random>

#include "io/named_tensors.h"

namespace segtool::io {

namespace {
std::string errno_text() { return std::strerror(errno); }

std::string parent_dir(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}
}  // namespace

static const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

std::vector<uint8_t> read_file(const std::string& path) {
  // Non-blocking, so opening a FIFO never waits for a writer; then fstat the descriptor, so the
  // file checked is the file read. Only regular files are read (/dev/zero would never end).
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENXIO) throw FormatError(path + ": is a socket, expected a regular file");
    throw FormatError(path + ": cannot open file (" + errno_text() + ")");
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) throw FormatError(path + ": cannot stat file (" + errno_text() + ")");
  if (!S_ISREG(st.st_mode)) throw FormatError(path + ": is " + file_kind(st.st_mode) + ", expected a regular file");
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw FormatError(path + ": read failed (" + errno_text() + ")");
    }
    if (n == 0) throw FormatError(path + ": the file shrank while being read (" + std::to_string(done) + " of " +
                                  std::to_string(bytes.size()) + " bytes)");
    done += static_cast<size_t>(n);
  }
  return bytes;
}

namespace {
// Refuses to replace anything but a regular file (or nothing): a symlink would be replaced by a
// file (not its target written), a device node or FIFO would be replaced by a file (as root),
// a folder cannot be. The message names the path.
void check_replaceable(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;  // absent (or unreachable: open/rename will say)
  if (S_ISLNK(st.st_mode))
    throw FormatError("refusing to replace " + path +
                      ": it is a symbolic link (segtool replaces only regular files; remove the link or write to its target)");
  if (!S_ISREG(st.st_mode))
    throw FormatError("refusing to replace " + path + ": it is " + file_kind(st.st_mode) + ", not a regular file");
}

// <path>.<pid>.<8 hex>.tmp: the pattern lib/io/files.ts removes when the writer is gone.
std::string temporary_path(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t seed = [] {
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) ^ device();
  }();
  uint64_t mixed = (seed + 0x9e3779b97f4a7c15ULL * ++counter);
  mixed ^= mixed >> 29;
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(mixed & 0xffffffffu));
  return path + "." + std::to_string(::getpid()) + "." + hex + ".tmp";
}
}  // namespace

void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
  check_replaceable(path);
  // Unique per call, not just per process: two workers saving the same path at once must not
  // write into one temp file.
  std::string tmp = temporary_path(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw FormatError(path + ": cannot create " + tmp + " (" + errno_text() + ")");
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string why = errno_text();
      ::close(fd);
      ::unlink(tmp.c_str());
      throw FormatError(path + ": write failed (" + why + "); the previous file is untouched");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw FormatError(path + ": fsync failed (" + why + "); the previous file is untouched");
  }
  try {
    check_replaceable(path);  // again: the target may have been swapped while we wrote
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw FormatError(path + ": rename failed (" + why + "); the previous file is untouched");
  }
  int dir = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);  // make the rename itself durable; best effort
    ::close(dir);
  }
}

}  // namespace segtool::io
