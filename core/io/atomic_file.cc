// POSIX implementation of write_file_atomically.
#include "core/io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/util/error.h"

namespace kolo {

namespace fs = std::filesystem;

namespace {

// The temporary file's name: ".<target>.tmp.<pid>", hidden, and naming its writer.
constexpr const char* kTempMark = ".tmp.";

}  // namespace

void write_file_atomically(const std::string& path, const std::string& bytes) {
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  // Appended piece by piece: g++ 12 warns falsely (-Wrestrict) on "literal" + std::string&&.
  std::string name = ".";
  name += target.filename().string();
  name += kTempMark;
  name += std::to_string(::getpid());
  const std::string tmp = (dir / name).string();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  KOLO_CHECK(fd >= 0, tmp, ": cannot create (", std::strerror(errno), ")");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      KOLO_FAIL(tmp, ": write failed after ", done, " of ", bytes.size(), " bytes (", std::strerror(err), ")");
    }
    done += static_cast<size_t>(w);
  }
  const int synced = ::fsync(fd) == 0 ? 0 : errno;
  const int closed = ::close(fd) == 0 ? 0 : errno;  // closed whether or not fsync worked
  if (synced != 0 || closed != 0) {
    ::unlink(tmp.c_str());
    KOLO_FAIL(tmp, ": ", synced ? "fsync" : "close", " failed (", std::strerror(synced ? synced : closed), ")");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    KOLO_FAIL(path, ": rename from ", tmp, " failed (", std::strerror(err), ")");
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void remove_abandoned_temporaries(const std::string& dir, const std::string& name_prefix) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string fname = entry.path().filename().string();
    const size_t at = fname.rfind(kTempMark);
    if (fname.rfind("." + name_prefix, 0) != 0 || at == std::string::npos) continue;
    const std::string pid = fname.substr(at + std::strlen(kTempMark));
    if (pid.empty() || pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH) {
      std::error_code rm;
      fs::remove(entry.path(), rm);
    }
  }
}

}  // namespace kolo
