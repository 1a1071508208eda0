// Applying one tar entry: the rules of the OCI layer spec, written as umoci applies a layer
// to one directory, and (mode 'overlay') translated into what an overlayfs upper dir must
// hold for the merged view to show that same tree.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "apply.h"

namespace tslayer {
namespace apply {

static bool StartsWith(const std::string& s, const char* p) { return s.compare(0, strlen(p), p) == 0; }

// Visits the '/'-separated components of `p`, skipping empty ones and ".".
template <typename F>
static bool EachComponent(const std::string& p, F f) {
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    if (j > i && !(j - i == 1 && p[i] == '.') && !f(p.substr(i, j - i))) return false;
    i = j + 1;
  }
  return true;
}

// An entry name, cleaned as umoci's CleanPath (and containerd) do: "." and empty parts go,
// ".." never climbs above the root, a leading "/" means the root. So "../x", "/x" and
// "a/../../x" are all "x", applied inside the root.
static void CleanName(const std::string& name, std::vector<std::string>* out) {
  EachComponent(name, [&](std::string c) {
    if (c != "..") out->push_back(std::move(c));
    else if (!out->empty()) out->pop_back();
    return true;
  });
}

// A hardlink target: like a name, but a ".." that would climb above the root refuses the
// entry (containerd does too): a link is an inode, and an escaping target is never an
// accident.
static bool CleanLinkTarget(const std::string& link, std::vector<std::string>* out) {
  return EachComponent(link, [&](std::string c) {
    if (c != "..") {
      out->push_back(std::move(c));
      return true;
    }
    if (out->empty()) return false;
    out->pop_back();
    return true;
  });
}

Applier::Applier(int rootFd, std::vector<int> lowerFds, bool overlay, bool rootless)
    : rootFd_(rootFd), lowerFds_(std::move(lowerFds)), overlay_(overlay), rootless_(rootless),
      opaqueXattr_(rootless ? "user.overlay.opaque" : "trusted.overlay.opaque") {}

Applier::~Applier() { Close(); }

void Applier::Close() {
  if (cur_.fd >= 0) close(cur_.fd);
  cur_.fd = -1;
  if (slotFd_ >= 0) close(slotFd_);
  slotFd_ = -1;
  if (rootFd_ >= 0) close(rootFd_);
  rootFd_ = -1;
  for (int fd : lowerFds_)
    if (fd >= 0) close(fd);
  lowerFds_.clear();
}

bool Applier::Unsafe(const std::string& msg) {
  fail_ = Failure{};
  fail_.kind = FailKind::Unsafe;
  fail_.message = msg;
  fail_.entry = entryName_;
  return false;
}

bool Applier::Invalid(const std::string& msg) {
  fail_ = Failure{};
  fail_.kind = FailKind::Invalid;
  fail_.message = msg;
  fail_.entry = entryName_;
  return false;
}

bool Applier::Sys(int err, const char* syscall, const std::string& path) {
  fail_ = Failure{};
  fail_.kind = FailKind::Sys;
  fail_.err = err;
  fail_.syscall = syscall;
  fail_.path = path;
  fail_.entry = entryName_;
  return false;
}

// ---- metadata -------------------------------------------------------------------------

bool Applier::Chown(int rc, const std::string& path) {
  if (rc == 0) return true;
  // A rootless store cannot give files away; the owner is recorded elsewhere by the caller.
  if (rootless_ && (errno == EPERM || errno == EINVAL)) return true;
  return Sys(errno, "fchown", path);
}

// xattrs that drive overlayfs itself: a layer must never set them (a forged
// trusted.overlay.redirect or .opaque would reach into other layers).
bool Applier::Private(const std::string& name) const {
  return StartsWith(name, "trusted.overlay.") || (rootless_ && StartsWith(name, "user.overlay."));
}

// Host-specific xattrs umoci never applies from a layer (nor clears on disk).
bool Applier::Ignored(const std::string& name) const {
  return name == "security.selinux" || name == "system.nfs4_acl";
}

bool Applier::SetXattrs(int fd, bool opath, const Entry& e, const std::string& path) {
  for (const auto& kv : e.xattrs) {
    if (Private(kv.first) || Ignored(kv.first)) continue;
    int r = XSet(fd, opath, kv.first, kv.second);
    if (r == 0 || r == -ENOTSUP) continue;  // ENOTSUP: the file system has no such xattrs (umoci warns and goes on)
    if (rootless_ && r == -EPERM) continue;
    return Sys(-r, "setxattr", path + " (" + kv.first + ")");
  }
  return true;
}

// An entry for an existing directory replaces its xattrs, like umoci's clear-then-set.
bool Applier::ClearXattrs(int fd, const std::string& path) {
  std::vector<std::string> names;
  int r = XList(fd, false, &names);
  if (r < 0) return Sys(-r, "flistxattr", path);
  for (const auto& n : names) {
    if (Private(n) || Ignored(n)) continue;
    r = XRemove(fd, false, n);
    if (r < 0 && r != -ENODATA && r != -ENOTSUP && !(rootless_ && r == -EPERM))
      return Sys(-r, "removexattr", path + " (" + n + ")");
  }
  return true;
}

bool Applier::CopyXattrs(int src, bool srcPath, int dst, bool dstPath, const std::string& path) {
  std::vector<std::string> names;
  int r = XList(src, srcPath, &names);
  if (r < 0) return Sys(-r, "listxattr", path);
  for (const auto& n : names) {
    if (Private(n)) continue;
    std::string v;
    r = XGet(src, srcPath, n, &v);
    if (r == -ENODATA) continue;
    if (r < 0) return Sys(-r, "getxattr", path + " (" + n + ")");
    r = XSet(dst, dstPath, n, v);
    if (r < 0 && r != -ENOTSUP && !(rootless_ && r == -EPERM)) return Sys(-r, "setxattr", path + " (" + n + ")");
  }
  return true;
}

static bool Utimes(int pfd, const std::string& name, const Times& t) {
  struct timespec ts[2] = {t.atime, t.mtime};
  return utimensat(pfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0;
}

bool Applier::SetOpaque(const std::string& path) {
  int fd = OpenBeneath(rootFd_, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (fd < 0) return Sys(errno, "openat2", path);
  int r = fsetxattr(fd, opaqueXattr_.c_str(), "y", 1, 0);
  int e = errno;
  close(fd);
  return r == 0 || Sys(e, "fsetxattr", path + " (" + opaqueXattr_ + ")");
}

// Remembers that this layer wrote `path` (and so its ancestors). Whiteouts spare these;
// anything else is lower content, including what overlay mode copied up from below (a
// parent directory, a hardlink target), which a whiteout must still hide.
bool Applier::Touch(const std::string& path) {
  std::string p = path;
  while (touched_.insert(p).second && !p.empty()) p = Dirname(p);
  return true;
}

// ---- entries --------------------------------------------------------------------------

bool Applier::ApplyEntry(Entry& e) {
  entryName_ = e.name;
  if (e.name.find('\0') != std::string::npos || e.link.find('\0') != std::string::npos)
    return Invalid("name or link target contains a NUL byte");
  std::vector<std::string> comps;
  CleanName(e.name, &comps);
  size_t len = 0;
  for (const auto& c : comps) len += c.size() + 1;
  if (len > kMaxPath + 1) return Invalid("name is longer than 4095 bytes");
  if (comps.empty()) return ApplyRoot(e);
  std::string base = std::move(comps.back());
  comps.pop_back();
  if (StartsWith(base, ".wh.")) {
    if (!ApplyWhiteout(comps, base)) return false;
    if (e.type == '0' && e.size > 0) {  // a whiteout's content, if any, means nothing
      cur_.active = true;
      cur_.fd = -1;
      cur_.remaining = e.size;
    }
    return true;
  }
  switch (e.type) {
    case '0':
      return ApplyFile(comps, base, e);
    case '5':
      return ApplyDir(comps, base, e);
    case '2':
      return ApplySymlink(comps, base, e);
    case '1':
      return ApplyHardlink(comps, base, e);
    case '3':
    case '4':
    case '6':
      return ApplyNode(comps, base, e);
    default:
      return Invalid(std::string("unsupported entry type '") + e.type + "'");
  }
}

// "./" and the like: the root's own metadata. Anything else there would replace the root
// (with a symlink, say), which umoci refuses too.
bool Applier::ApplyRoot(const Entry& e) {
  if (e.type != '5') return Unsafe("names the root directory but is not a directory");
  int fd = OpenBeneath(rootFd_, "", O_RDONLY | O_DIRECTORY);
  if (fd < 0) return Sys(errno, "openat2", "");
  bool ok = Chown(fchown(fd, e.uid, e.gid), "") && (fchmod(fd, e.mode & 07777) == 0 || Sys(errno, "fchmod", "")) &&
            ClearXattrs(fd, "") && SetXattrs(fd, false, e, "");
  close(fd);
  if (ok) dirTimes_[""] = e.times;
  rootExplicit_ = true;
  return ok;
}

// overlay: the merged root shows the target dir's own root, which the snapshotter made.
// Unless this layer has an entry for the root, it takes the top lower root's metadata (a
// copy-up of the root), so that "./" of an earlier layer keeps applying, as in one directory.
bool Applier::CopyUpRootMetadata() {
  if (!overlay_ || rootExplicit_ || lowerFds_.empty()) return true;
  int src = OpenBeneath(lowerFds_[0], "", O_RDONLY | O_DIRECTORY);
  if (src < 0) return Sys(errno, "openat2", "");
  int dst = OpenBeneath(rootFd_, "", O_RDONLY | O_DIRECTORY);
  struct stat st;
  bool ok = (dst >= 0 || Sys(errno, "openat2", "")) && (fstat(src, &st) == 0 || Sys(errno, "fstat", "")) &&
            Chown(fchown(dst, st.st_uid, st.st_gid), "") && (fchmod(dst, st.st_mode & 07777) == 0 || Sys(errno, "fchmod", "")) &&
            ClearXattrs(dst, "") && CopyXattrs(src, false, dst, false, "");
  if (ok) dirTimes_[""] = Times{st.st_atim, st.st_mtim};
  close(src);
  if (dst >= 0) close(dst);
  return ok;
}

// Resolves an entry's parent in the merged view (creating implied directories), makes sure
// it is in the target dir, and returns its canonical path and an fd for it.
bool Applier::PrepareParent(const std::vector<std::string>& dir, std::string* ppath, int* pfd) {
  View* pv = nullptr;
  switch (ResolveDir(dir, true, ppath, &pv)) {
    case Res::Fail:
      return false;
    case Res::NotDir:
    case Res::Missing:
      return Invalid("a parent of the entry exists and is not a directory");
    case Res::Ok:
      break;
  }
  return EnsureUpper(*ppath, pv) && UpperFd(*ppath, pfd) && NoteModified(*ppath, *pfd);
}

// Whatever is at `name` goes (a directory with everything in it); the entry replaces it.
bool Applier::RemoveExisting(int pfd, const std::string& name, const std::string& path, const struct stat& st) {
  bool dir = S_ISDIR(st.st_mode);
  int r = dir ? RemoveAll(pfd, name) : (unlinkat(pfd, name.c_str(), 0) < 0 ? -errno : 0);
  if (r < 0) return Sys(-r, dir ? "unlinkat(recursive)" : "unlinkat", path);
  // Removing a directory, a symlink or (overlay) a whiteout can change how paths resolve.
  OnRemoved(path, dir || S_ISLNK(st.st_mode) || (overlay_ && IsWhiteout(st)));
  return true;
}

bool Applier::ApplyFile(const std::vector<std::string>& dir, const std::string& base, Entry& e) {
  std::string ppath;
  int pfd;
  if (!PrepareParent(dir, &ppath, &pfd)) return false;
  std::string path = Join(ppath, base);
  BeforeCreate(path, false);
  int fd;
  for (int attempt = 0;; attempt++) {
    fd = openat(pfd, base.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) break;
    if (errno != EEXIST || attempt > 0) return Sys(errno, "openat", path);
    struct stat st;  // duplicate entry, or a lower layer's file: last one wins
    if (fstatat(pfd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return Sys(errno, "fstatat", path);
    if (!RemoveExisting(pfd, base, path, st)) return false;
  }
  Touch(path);
  cur_.active = true;
  cur_.fd = fd;
  cur_.remaining = e.size;
  cur_.path = path;
  cur_.e = std::move(e);
  return cur_.remaining == 0 ? FinishFile() : true;
}

bool Applier::WriteData(const uint8_t* p, size_t n) {
  if (!cur_.active || n > cur_.remaining) return Invalid("internal: file data does not match its entry");
  if (cur_.fd >= 0) {
    int r = WriteAll(cur_.fd, p, n);
    if (r < 0) return Sys(-r, "write", cur_.path);
  }
  cur_.remaining -= n;
  return cur_.remaining == 0 ? FinishFile() : true;
}

// Owner before mode (chown clears setuid/setgid), xattrs after both (chown and writes
// clear security.capability), times last.
bool Applier::FinishFile() {
  cur_.active = false;
  int fd = cur_.fd;
  cur_.fd = -1;
  if (fd < 0) return true;
  const Entry& e = cur_.e;
  const std::string& path = cur_.path;
  struct timespec ts[2] = {e.times.atime, e.times.mtime};
  bool ok = Chown(fchown(fd, e.uid, e.gid), path) && (fchmod(fd, e.mode & 07777) == 0 || Sys(errno, "fchmod", path)) &&
            SetXattrs(fd, false, e, path) && (futimens(fd, ts) == 0 || Sys(errno, "futimens", path));
  close(fd);
  return ok;
}

bool Applier::ApplyDir(const std::vector<std::string>& dir, const std::string& base, const Entry& e) {
  std::string ppath;
  int pfd;
  if (!PrepareParent(dir, &ppath, &pfd)) return false;
  std::string path = Join(ppath, base);
  struct stat st;
  bool exists = fstatat(pfd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (!exists && errno != ENOENT) return Sys(errno, "fstatat", path);
  // An existing directory stays (with its contents); anything else is replaced.
  bool fresh = !(exists && S_ISDIR(st.st_mode));
  if (fresh) {
    if (exists && !RemoveExisting(pfd, base, path, st)) return false;
    BeforeCreate(path, true);
    if (mkdirat(pfd, base.c_str(), 0700) < 0) return Sys(errno, "mkdirat", path);
  }
  int fd = openat(pfd, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Sys(errno, "openat", path);
  bool ok = true;
  if (fresh && exists && overlay_) {
    // This layer had put a non-directory (or a whiteout) here, which in one-directory
    // terms already removed what the lowers have: the new directory must not show it.
    View* pv = GetView(ppath);
    bool has = false;
    ok = pv != nullptr && LowerHas(*pv, path, true, &has) && (!has || SetOpaque(path));
    if (has) Invalidate();
  }
  Touch(path);
  ok = ok && Chown(fchown(fd, e.uid, e.gid), path) && (fchmod(fd, e.mode & 07777) == 0 || Sys(errno, "fchmod", path)) &&
       (fresh || ClearXattrs(fd, path)) && SetXattrs(fd, false, e, path);
  close(fd);
  if (ok) dirTimes_[path] = e.times;  // set at the end, after the children
  return ok;
}

bool Applier::ApplySymlink(const std::vector<std::string>& dir, const std::string& base, const Entry& e) {
  if (e.link.empty()) return Invalid("symlink has an empty target");
  std::string ppath;
  int pfd;
  if (!PrepareParent(dir, &ppath, &pfd)) return false;
  std::string path = Join(ppath, base);
  BeforeCreate(path, false);
  // The target is data: stored verbatim, never looked at here.
  for (int attempt = 0;; attempt++) {
    if (symlinkat(e.link.c_str(), pfd, base.c_str()) == 0) break;
    if (errno != EEXIST || attempt > 0) return Sys(errno, "symlinkat", path);
    struct stat st;
    if (fstatat(pfd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return Sys(errno, "fstatat", path);
    if (!RemoveExisting(pfd, base, path, st)) return false;
  }
  Touch(path);
  bool ok = Chown(fchownat(pfd, base.c_str(), e.uid, e.gid, AT_SYMLINK_NOFOLLOW), path);
  if (ok && !e.xattrs.empty()) {
    int o = openat(pfd, base.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    ok = (o >= 0 || Sys(errno, "openat", path)) && SetXattrs(o, true, e, path);
    if (o >= 0) close(o);
  }
  return ok && (Utimes(pfd, base, e.times) || Sys(errno, "utimensat", path));
}

bool Applier::ApplyNode(const std::vector<std::string>& dir, const std::string& base, const Entry& e) {
  mode_t fmt = e.type == '3' ? S_IFCHR : e.type == '4' ? S_IFBLK : S_IFIFO;
  std::string ppath;
  int pfd;
  if (!PrepareParent(dir, &ppath, &pfd)) return false;
  std::string path = Join(ppath, base);
  BeforeCreate(path, false);
  for (int attempt = 0;; attempt++) {
    if (mknodat(pfd, base.c_str(), fmt | 0600, makedev(e.devmajor, e.devminor)) == 0) break;
    if (errno != EEXIST || attempt > 0) return Sys(errno, "mknodat", path);
    struct stat st;
    if (fstatat(pfd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return Sys(errno, "fstatat", path);
    if (!RemoveExisting(pfd, base, path, st)) return false;
  }
  Touch(path);
  // fchmodat follows a final symlink, but the name is the node we just made.
  bool ok = Chown(fchownat(pfd, base.c_str(), e.uid, e.gid, AT_SYMLINK_NOFOLLOW), path) &&
            (fchmodat(pfd, base.c_str(), e.mode & 07777, 0) == 0 || Sys(errno, "fchmodat", path));
  if (ok && !e.xattrs.empty()) {
    int o = openat(pfd, base.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    ok = (o >= 0 || Sys(errno, "openat", path)) && SetXattrs(o, true, e, path);
    if (o >= 0) close(o);
  }
  return ok && (Utimes(pfd, base, e.times) || Sys(errno, "utimensat", path));
}

// A hardlink is an inode: its target is resolved like a name (its directory through the
// merged view, its last component not followed), must exist, and must not be a directory.
// A target that only a lower layer has is copied up first and linked there, so that both
// names show one inode as they would in one directory. The entry's own metadata is
// ignored (the inode keeps the target's), as umoci does.
bool Applier::ApplyHardlink(const std::vector<std::string>& dir, const std::string& base, const Entry& e) {
  std::vector<std::string> tcomps;
  if (!CleanLinkTarget(e.link, &tcomps)) return Unsafe("hardlink target \"" + e.link + "\" leaves the root");
  if (tcomps.empty()) return Invalid("hardlink to the root directory");
  std::string tbase = std::move(tcomps.back());
  tcomps.pop_back();
  std::string tppath;
  View* tv = nullptr;
  Res r = ResolveDir(tcomps, false, &tppath, &tv);
  if (r == Res::Fail) return false;
  if (r != Res::Ok) return Invalid("hardlink target \"" + e.link + "\" does not exist");
  std::string ppath;
  int pfd;
  if (!PrepareParent(dir, &ppath, &pfd)) return false;
  std::string path = Join(ppath, base);
  std::string tpath = Join(tppath, tbase);
  if ((tv = GetView(tppath)) == nullptr) return false;
  Lookup lk;
  if (!LookupChild(*tv, tppath, tbase, &lk)) return false;
  if (lk.kind == Lookup::Missing) return Invalid("hardlink target \"" + e.link + "\" does not exist");
  if (lk.kind == Lookup::Dir) return Invalid("hardlink target \"" + e.link + "\" is a directory");
  // The entry replaces what is at its path, so a target there (a link to itself, maybe
  // through symlinks) or below it would be gone before the link: containerd, moby and
  // umoci all fail on such a link too.
  if (path == tpath || tpath.compare(0, path.size() + 1, path + "/") == 0)
    return Invalid("hardlink target \"" + e.link + "\" is the entry itself or inside it");
  if (lk.layer >= 0 && !CopyUp(tppath, tv, tbase, lk)) return false;
  int tfd = OpenBeneath(rootFd_, tppath, O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (tfd < 0) return Sys(errno, "openat2", tppath);
  bool ok = UpperFd(ppath, &pfd);
  if (ok) BeforeCreate(path, false);
  for (int attempt = 0; ok; attempt++) {
    if (linkat(tfd, tbase.c_str(), pfd, base.c_str(), 0) == 0) break;  // 0: a symlink target is linked, not followed
    if (errno != EEXIST || attempt > 0) {
      ok = Sys(errno, "linkat", path);
      break;
    }
    struct stat st;
    ok = (fstatat(pfd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 || Sys(errno, "fstatat", path)) &&
         RemoveExisting(pfd, base, path, st);
  }
  close(tfd);
  return ok && Touch(path);
}

// Copies a non-directory from lower layer lk.layer into the target dir at the same path,
// with its metadata (content by reflink where the file system can).
bool Applier::CopyUp(const std::string& ppath, View* pv, const std::string& name, const Lookup& lk) {
  int pfd;
  if (!EnsureUpper(ppath, pv) || !UpperFd(ppath, &pfd) || !NoteModified(ppath, pfd)) return false;
  std::string path = Join(ppath, name);
  int lfd = lowerFds_[lk.layer];
  const struct stat& st = lk.st;
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  BeforeCreate(path, false);
  bool ok = true;
  if (S_ISREG(st.st_mode)) {
    int in = OpenBeneath(lfd, path, O_RDONLY | O_NOFOLLOW), out = -1;
    ok = in >= 0 || Sys(errno, "openat2", path);
    ok = ok && ((out = openat(pfd, name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600)) >= 0 ||
                Sys(errno, "openat", path));
    int cr = ok ? CopyData(in, out) : 0;
    ok = ok && (cr == 0 || Sys(-cr, "copy_file_range", path));
    ok = ok && Chown(fchown(out, st.st_uid, st.st_gid), path) &&
         (fchmod(out, st.st_mode & 07777) == 0 || Sys(errno, "fchmod", path)) && CopyXattrs(in, false, out, false, path) &&
         (futimens(out, ts) == 0 || Sys(errno, "futimens", path));
    if (in >= 0) close(in);
    if (out >= 0) close(out);
    return ok;
  }
  if (S_ISLNK(st.st_mode)) {
    ok = symlinkat(lk.target.c_str(), pfd, name.c_str()) == 0 || Sys(errno, "symlinkat", path);
  } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode)) {
    ok = mknodat(pfd, name.c_str(), (st.st_mode & S_IFMT) | 0600, st.st_rdev) == 0 || Sys(errno, "mknodat", path);
  } else {
    return Invalid("hardlink target \"" + path + "\" is a socket");
  }
  ok = ok && Chown(fchownat(pfd, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW), path) &&
       (S_ISLNK(st.st_mode) || fchmodat(pfd, name.c_str(), st.st_mode & 07777, 0) == 0 || Sys(errno, "fchmodat", path));
  int src = -1, dst = -1;
  ok = ok && ((src = OpenBeneath(lfd, path, O_PATH | O_NOFOLLOW)) >= 0 || Sys(errno, "openat2", path));
  ok = ok && ((dst = openat(pfd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC)) >= 0 || Sys(errno, "openat", path));
  ok = ok && CopyXattrs(src, true, dst, true, path) &&
       (utimensat(pfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0 || Sys(errno, "utimensat", path));
  if (src >= 0) close(src);
  if (dst >= 0) close(dst);
  return ok;
}

// ---- whiteouts ------------------------------------------------------------------------

// ".wh.NAME" hides NAME of the layers below; ".wh..wh..opq" hides everything the layers
// below have in its directory. Neither touches what this layer itself wrote, whatever the
// order of the entries (OCI image spec, "Whiteouts"). A whiteout whose directory does not
// exist below does nothing, and creates no directories on the way.
bool Applier::ApplyWhiteout(const std::vector<std::string>& dir, const std::string& base) {
  if (base == ".wh..wh..opq") return ApplyOpaque(dir);
  if (StartsWith(base, ".wh..wh.")) return true;  // AUFS bookkeeping (.wh..wh.plnk...): not content
  std::string name = base.substr(4);
  if (name.empty() || name == "." || name == "..")
    return Unsafe("whiteout \"" + base + "\" does not name a file inside its directory");
  std::string ppath;
  View* pv = nullptr;
  Res r = ResolveDir(dir, false, &ppath, &pv);
  if (r == Res::Fail) return false;
  if (r != Res::Ok) return true;
  return overlay_ ? WhiteoutOverlay(ppath, pv, name) : WhiteoutRemove(ppath, name);
}

bool Applier::WhiteoutOverlay(const std::string& ppath, View* pv, const std::string& name) {
  std::string path = Join(ppath, name);
  bool has;
  if (pv->inUpper) {
    struct stat st;
    int r = LstatBeneath(rootFd_, path, &st);
    if (r == 0 && touched_.count(path)) {
      // This layer wrote it: it stays. In the target dir it already hides a lower
      // non-directory; a directory merges, so what was copied up into it goes and it is
      // made opaque to stop showing what the lowers have there.
      if (!S_ISDIR(st.st_mode)) return true;
      if (!RemoveUntouched(path) || (pv = GetView(ppath)) == nullptr || !LowerHas(*pv, path, false, &has)) return false;
      if (!has) return true;
      if (!SetOpaque(path)) return false;
      Invalidate();
      return true;
    }
    if (r == 0) {
      // Copied up from below (nothing under it was written by this layer): lower content.
      int pfd;
      if (!UpperFd(ppath, &pfd) || !NoteModified(ppath, pfd) || !RemoveExisting(pfd, name, path, st)) return false;
      if ((pv = GetView(ppath)) == nullptr) return false;
    } else if (r != -ENOENT && r != -ENOTDIR) {
      return Sys(-r, "openat2", path);
    }
  }
  if (!LowerHas(*pv, path, false, &has)) return false;
  if (!has) return true;
  int pfd;
  if (!EnsureUpper(ppath, pv) || !UpperFd(ppath, &pfd) || !NoteModified(ppath, pfd)) return false;
  if (mknodat(pfd, name.c_str(), S_IFCHR, makedev(0, 0)) < 0) return Sys(errno, "mknodat", path);
  Invalidate();
  return true;
}

bool Applier::WhiteoutRemove(const std::string& ppath, const std::string& name) {
  std::string path = Join(ppath, name);
  int pfd;
  if (!UpperFd(ppath, &pfd)) return false;
  struct stat st;
  if (fstatat(pfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return errno == ENOENT || Sys(errno, "fstatat", path);
  if (!touched_.count(path)) return NoteModified(ppath, pfd) && RemoveExisting(pfd, name, path, st);
  return S_ISDIR(st.st_mode) ? RemoveUntouched(path) : true;
}

bool Applier::ApplyOpaque(const std::vector<std::string>& dir) {
  std::string dpath;
  View* dv = nullptr;
  Res r = ResolveDir(dir, false, &dpath, &dv);
  if (r == Res::Fail) return false;
  if (r != Res::Ok) return true;
  if (!overlay_) return RemoveUntouched(dpath);
  if (dv->lowers.empty()) return true;  // nothing below shows through
  if (dpath.empty()) return WhiteoutRootChildren();
  // What was copied up into it is lower content too; then the lowers are hidden.
  if (!EnsureUpper(dpath, dv) || !RemoveUntouched(dpath) || !SetOpaque(dpath)) return false;
  Invalidate();
  return true;
}

// overlayfs does not honour the opaque marker on a layer's root directory, so an opaque
// root is written as a whiteout for every name the lower roots show (this layer's own
// entries stay, as for any whiteout).
bool Applier::WhiteoutRootChildren() {
  View* root = GetView("");
  if (root == nullptr) return false;
  std::vector<int> lowers = root->lowers;
  std::unordered_set<std::string> seen;
  std::vector<std::string> visible;
  for (int l : lowers) {
    int fd = OpenBeneath(lowerFds_[l], "", O_RDONLY | O_DIRECTORY);
    if (fd < 0) return Sys(errno, "openat2", "");
    DIR* d = fdopendir(fd);
    if (d == nullptr) {
      int e = errno;
      close(fd);
      return Sys(e, "fdopendir", "");
    }
    bool ok = true;
    for (struct dirent* de; ok && (de = readdir(d)) != nullptr;) {
      std::string n = de->d_name;
      if (n == "." || n == ".." || !seen.insert(n).second) continue;  // the top layer having a name decides
      struct stat st;
      if (fstatat(dirfd(d), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) ok = Sys(errno, "fstatat", n);
      else if (!IsWhiteout(st)) visible.push_back(n);
    }
    closedir(d);
    if (!ok) return false;
  }
  for (const auto& n : visible) {
    root = GetView("");  // each whiteout invalidates the cache
    if (root == nullptr || !WhiteoutOverlay("", root, n)) return false;
  }
  return true;
}

// Deletes everything under directory `path` of the target dir that this layer did not
// write ('remove' mode: the lower content itself; overlay: what was copied up from it).
bool Applier::RemoveUntouched(const std::string& path) {
  int fd = OpenBeneath(rootFd_, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (fd < 0) return Sys(errno, "openat2", path);
  DIR* d = fdopendir(fd);
  if (d == nullptr) {
    int e = errno;
    close(fd);
    return Sys(e, "fdopendir", path);
  }
  std::vector<std::string> names;
  for (struct dirent* de; (de = readdir(d)) != nullptr;)
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) names.emplace_back(de->d_name);
  bool ok = true;
  for (size_t i = 0; ok && i < names.size(); i++) {
    const std::string& n = names[i];
    std::string child = Join(path, n);
    struct stat st;
    if (fstatat(dirfd(d), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
      ok = errno == ENOENT || Sys(errno, "fstatat", child);
      continue;
    }
    if (!touched_.count(child))
      ok = NoteModified(path, dirfd(d)) && RemoveExisting(dirfd(d), n, child, st);
    else if (S_ISDIR(st.st_mode))
      ok = RemoveUntouched(child);
  }
  closedir(d);
  return ok;
}

}  // namespace apply
}  // namespace tslayer
