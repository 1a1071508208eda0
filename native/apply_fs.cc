// File-system helpers for the layer applier. All of them work relative to fds; none
// resolves a path that could leave the directory it starts from.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "apply.h"

namespace tslayer {
namespace apply {

// Every open of a path below a layer root: no symlink anywhere on the way (our resolver
// already followed them inside the root; meeting one here means our view of the tree is
// stale, and the kernel refuses), no "..", no magic links, no other mount.
static constexpr uint64_t kBeneath = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;

int OpenBeneath(int rootFd, const std::string& path, int flags) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = kBeneath;
  const char* p = path.empty() ? "." : path.c_str();
  long r;
  // EAGAIN: the kernel saw a concurrent rename and could not vouch for the walk; retry.
  do {
    r = syscall(SYS_openat2, rootFd, p, &how, sizeof how);
  } while (r < 0 && (errno == EINTR || errno == EAGAIN));
  return static_cast<int>(r);
}

int LstatBeneath(int rootFd, const std::string& path, struct stat* st) {
  if (path.empty()) return fstat(rootFd, st) < 0 ? -errno : 0;
  int fd = OpenBeneath(rootFd, path, O_PATH | O_NOFOLLOW);
  if (fd < 0) return -errno;
  int r = fstat(fd, st) < 0 ? -errno : 0;
  close(fd);
  return r;
}

int ReadlinkFd(int fd, std::string* out) {
  std::string buf(256, '\0');
  for (;;) {
    ssize_t n = readlinkat(fd, "", &buf[0], buf.size());
    if (n < 0) return -errno;
    if (static_cast<size_t>(n) < buf.size()) {
      buf.resize(n);
      *out = std::move(buf);
      return 0;
    }
    buf.resize(buf.size() * 2);
  }
}

int RemoveAll(int dirFd, const std::string& name) {
  if (unlinkat(dirFd, name.c_str(), 0) == 0) return 0;
  if (errno != EISDIR) return -errno;
  int fd = openat(dirFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -errno;
  DIR* d = fdopendir(fd);
  if (d == nullptr) {
    int e = errno;
    close(fd);
    return -e;
  }
  // Names first, removal after: not deleting under a readdir cursor.
  std::vector<std::string> names;
  errno = 0;
  for (struct dirent* de; (de = readdir(d)) != nullptr; errno = 0) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    names.emplace_back(de->d_name);
  }
  int r = errno ? -errno : 0;
  for (size_t i = 0; r == 0 && i < names.size(); i++) r = RemoveAll(dirfd(d), names[i]);
  closedir(d);
  if (r < 0) return r;
  return unlinkat(dirFd, name.c_str(), AT_REMOVEDIR) < 0 ? -errno : 0;
}

int WriteAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

int CopyData(int in, int out) {
  if (ioctl(out, FICLONE, in) == 0) return 0;
  // copy_file_range: in-kernel, and itself shares extents where the fs can.
  for (;;) {
    ssize_t n = copy_file_range(in, nullptr, out, nullptr, 1 << 30, 0);
    if (n == 0) return 0;
    if (n > 0) continue;
    if (errno == EINTR) continue;
    if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP) break;
    return -errno;
  }
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = read(in, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return 0;
    int r = WriteAll(out, reinterpret_cast<const uint8_t*>(buf.data()), static_cast<size_t>(n));
    if (r < 0) return r;
  }
}

// An O_PATH fd (symlinks, devices) cannot be used with f*xattr. /proc/self/fd/N is a
// magic link to exactly that inode (a symlink is not followed further), so the
// link-following path calls reach it.
static std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

int XList(int fd, bool opath, std::vector<std::string>* names) {
  names->clear();
  std::string pp = opath ? ProcPath(fd) : std::string();
  std::vector<char> buf(1024);
  for (;;) {
    ssize_t n = opath ? listxattr(pp.c_str(), buf.data(), buf.size()) : flistxattr(fd, buf.data(), buf.size());
    if (n < 0 && errno == ERANGE) {
      ssize_t need = opath ? listxattr(pp.c_str(), nullptr, 0) : flistxattr(fd, nullptr, 0);
      if (need < 0) return -errno;
      buf.resize(static_cast<size_t>(need) + 1);
      continue;
    }
    if (n < 0) return errno == ENOTSUP ? 0 : -errno;
    for (ssize_t i = 0; i < n;) {
      std::string name(&buf[i]);
      i += static_cast<ssize_t>(name.size()) + 1;
      if (!name.empty()) names->push_back(std::move(name));
    }
    return 0;
  }
}

int XGet(int fd, bool opath, const std::string& name, std::string* value) {
  std::string pp = opath ? ProcPath(fd) : std::string();
  std::string buf(256, '\0');
  for (;;) {
    ssize_t n = opath ? getxattr(pp.c_str(), name.c_str(), &buf[0], buf.size())
                      : fgetxattr(fd, name.c_str(), &buf[0], buf.size());
    if (n < 0 && errno == ERANGE) {
      ssize_t need = opath ? getxattr(pp.c_str(), name.c_str(), nullptr, 0) : fgetxattr(fd, name.c_str(), nullptr, 0);
      if (need < 0) return -errno;
      buf.resize(static_cast<size_t>(need) + 1);
      continue;
    }
    if (n < 0) return -errno;
    buf.resize(static_cast<size_t>(n));
    *value = std::move(buf);
    return 0;
  }
}

int XSet(int fd, bool opath, const std::string& name, const std::string& value) {
  int r = opath ? setxattr(ProcPath(fd).c_str(), name.c_str(), value.data(), value.size(), 0)
                : fsetxattr(fd, name.c_str(), value.data(), value.size(), 0);
  return r < 0 ? -errno : 0;
}

int XRemove(int fd, bool opath, const std::string& name) {
  int r = opath ? removexattr(ProcPath(fd).c_str(), name.c_str()) : fremovexattr(fd, name.c_str());
  return r < 0 ? -errno : 0;
}

}  // namespace apply
}  // namespace tslayer
