// The merged view of [target dir, lower layers...] that every entry is resolved against,
// as overlayfs would show it (and, in 'remove' mode, just the target dir):
//  - a name is looked up in the target dir first, then in the lowers top-first, in the
//    directories of the layers that make up its parent;
//  - a whiteout (char 0/0) hides the name in all layers below it; an opaque directory
//    hides the same directory in all layers below it; a non-directory ends the stack;
//  - symlinks are followed here, confined: an absolute target and ".." at the top both
//    mean the root of the view (openat2's RESOLVE_IN_ROOT rule, over several layers);
//  - missing directories on the way are created (implied parents), and directories that
//    exist only in a lower layer are copied up into the target dir with their mode, owner,
//    xattrs and times when something is written into them.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <deque>

#include "apply.h"

namespace tslayer {
namespace apply {

static bool Missing(int r) { return r == -ENOENT || r == -ENOTDIR; }

static void Split(const std::string& p, std::vector<std::string>* out) {
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    if (j > i) out->push_back(p.substr(i, j - i));
    i = j + 1;
  }
}

bool Applier::IsOpaque(int layerFd, const std::string& path, bool* opaque) {
  *opaque = false;
  int fd = OpenBeneath(layerFd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (fd < 0) return Sys(errno, "openat2", path);
  char v[2];
  ssize_t n = fgetxattr(fd, opaqueXattr_.c_str(), v, sizeof v);
  int e = errno;
  close(fd);
  if (n < 0 && e != ENODATA && e != ENOTSUP && e != ERANGE) return Sys(e, "fgetxattr", path);
  *opaque = n == 1 && v[0] == 'y';
  return true;
}

// The lowers (from `from`, starting at index `start`) in which `path` is a directory that
// shows through: stop at a whiteout or non-directory, stop after an opaque directory.
bool Applier::CollectLowers(const std::vector<int>& from, size_t start, const std::string& path,
                            std::vector<int>* out) {
  for (size_t i = start; i < from.size(); i++) {
    int l = from[i];
    struct stat st;
    int r = LstatBeneath(lowerFds_[l], path, &st);
    if (Missing(r)) continue;
    if (r < 0) return Sys(-r, "openat2", path);
    if (!S_ISDIR(st.st_mode)) break;
    out->push_back(l);
    bool op;
    if (!IsOpaque(lowerFds_[l], path, &op)) return false;
    if (op) break;
  }
  return true;
}

bool Applier::LookupChild(const View& v, const std::string& parent, const std::string& name, Lookup* out) {
  std::string path = Join(parent, name);
  struct stat st;
  if (v.inUpper) {
    int r = LstatBeneath(rootFd_, path, &st);
    if (r == 0) {
      out->layer = -1;
      out->st = st;
      if (overlay_ && IsWhiteout(st)) {
        out->kind = Lookup::Missing;
        out->upperNonDir = true;
        return true;
      }
      if (S_ISDIR(st.st_mode)) {
        out->kind = Lookup::Dir;
        out->view.inUpper = true;
        if (overlay_ && !IsOpaque(rootFd_, path, &out->view.opaque)) return false;
        return out->view.opaque || CollectLowers(v.lowers, 0, path, &out->view.lowers);
      }
      if (S_ISLNK(st.st_mode)) {
        out->kind = Lookup::Symlink;
        int fd = OpenBeneath(rootFd_, path, O_PATH | O_NOFOLLOW);
        if (fd < 0) return Sys(errno, "openat2", path);
        int rr = ReadlinkFd(fd, &out->target);
        close(fd);
        return rr < 0 ? Sys(-rr, "readlinkat", path) : true;
      }
      out->kind = Lookup::Other;
      return true;
    }
    if (!Missing(r)) return Sys(-r, "openat2", path);
  }
  for (size_t i = 0; i < v.lowers.size(); i++) {
    int l = v.lowers[i];
    int r = LstatBeneath(lowerFds_[l], path, &st);
    if (Missing(r)) continue;
    if (r < 0) return Sys(-r, "openat2", path);
    out->layer = l;
    out->st = st;
    if (IsWhiteout(st)) {
      out->kind = Lookup::Missing;
      return true;
    }
    if (S_ISDIR(st.st_mode)) {
      out->kind = Lookup::Dir;
      out->view.lowers.push_back(l);
      bool op;
      if (!IsOpaque(lowerFds_[l], path, &op)) return false;
      return op || CollectLowers(v.lowers, i + 1, path, &out->view.lowers);
    }
    if (S_ISLNK(st.st_mode)) {
      out->kind = Lookup::Symlink;
      int fd = OpenBeneath(lowerFds_[l], path, O_PATH | O_NOFOLLOW);
      if (fd < 0) return Sys(errno, "openat2", path);
      int rr = ReadlinkFd(fd, &out->target);
      close(fd);
      return rr < 0 ? Sys(-rr, "readlinkat", path) : true;
    }
    out->kind = Lookup::Other;
    return true;
  }
  out->kind = Lookup::Missing;
  return true;
}

// Whether the lowers of directory view `pv` show something (or a directory, dirOnly) at `path`.
bool Applier::LowerHas(const View& pv, const std::string& path, bool dirOnly, bool* has) {
  *has = false;
  for (int l : pv.lowers) {
    struct stat st;
    int r = LstatBeneath(lowerFds_[l], path, &st);
    if (Missing(r)) continue;
    if (r < 0) return Sys(-r, "openat2", path);
    if (IsWhiteout(st)) return true;
    *has = !dirOnly || S_ISDIR(st.st_mode);
    return true;
  }
  return true;
}

// The view of a canonical directory path, from the cache or by walking it again (a
// canonical path has no symlinks, so every step must be a directory).
View* Applier::GetView(const std::string& canon) {
  auto it = views_.find(canon);
  if (it != views_.end()) return &it->second;
  if (canon.empty()) {
    // overlayfs ignores an opaque marker on a layer's root directory: every lower root
    // shows (an opaque root is written as whiteouts instead, see ApplyOpaque).
    View root;
    root.inUpper = true;
    for (size_t i = 0; i < lowerFds_.size(); i++) root.lowers.push_back(static_cast<int>(i));
    return &views_.emplace(canon, std::move(root)).first->second;
  }
  std::string parent = Dirname(canon);
  View* pv = GetView(parent);
  if (pv == nullptr) return nullptr;
  Lookup lk;
  if (!LookupChild(*pv, parent, Basename(canon), &lk)) return nullptr;
  if (lk.kind != Lookup::Dir) {
    Invalid("\"" + canon + "\" is no longer a directory");
    return nullptr;
  }
  return &views_.emplace(canon, std::move(lk.view)).first->second;
}

Res Applier::ResolveDir(const std::vector<std::string>& comps, bool create, std::string* canon, View** view) {
  std::string key;
  for (const auto& c : comps) key = Join(key, c);
  auto m = memo_.find(key);
  if (m != memo_.end()) {
    View* v = GetView(m->second);
    if (v == nullptr) return Res::Fail;
    *canon = m->second;
    *view = v;
    return Res::Ok;
  }
  std::deque<std::string> todo(comps.begin(), comps.end());
  std::string cur;
  View* v = GetView(cur);
  if (v == nullptr) return Res::Fail;
  int links = 0;
  while (!todo.empty()) {
    std::string c = std::move(todo.front());
    todo.pop_front();
    if (c.empty() || c == ".") continue;
    if (c == "..") {  // only from symlink targets: entry names were cleaned lexically
      if (!cur.empty()) {
        cur = Dirname(cur);
        if ((v = GetView(cur)) == nullptr) return Res::Fail;
      }
      continue;
    }
    std::string next = Join(cur, c);
    if (next.size() > kMaxPath) {
      Invalid("path is longer than 4095 bytes once symlinks are followed");
      return Res::Fail;
    }
    auto it = views_.find(next);
    if (it != views_.end()) {
      cur = std::move(next);
      v = &it->second;
      continue;
    }
    Lookup lk;
    if (!LookupChild(*v, cur, c, &lk)) return Res::Fail;
    switch (lk.kind) {
      case Lookup::Dir:
        v = &views_.emplace(next, std::move(lk.view)).first->second;
        cur = std::move(next);
        break;
      case Lookup::Symlink: {
        if (++links > kMaxLinks) {
          Unsafe("too many levels of symbolic links in its path");
          return Res::Fail;
        }
        symlinks_.insert(next);
        std::vector<std::string> tc;
        Split(lk.target, &tc);
        if (!lk.target.empty() && lk.target[0] == '/') {
          cur.clear();
          if ((v = GetView(cur)) == nullptr) return Res::Fail;
        }
        todo.insert(todo.begin(), tc.begin(), tc.end());
        break;
      }
      case Lookup::Missing:
        if (!create) return Res::Missing;
        if (!CreateImplied(cur, v, c, lk.upperNonDir)) return Res::Fail;
        cur = std::move(next);
        v = &views_[cur];
        break;
      case Lookup::Other:
        return Res::NotDir;
    }
  }
  memo_[key] = cur;
  *canon = cur;
  *view = v;
  return Res::Ok;
}

// A directory the tar implies but never lists: mode 0755, owned by us (umoci's MkdirAll).
bool Applier::CreateImplied(const std::string& parent, View* pv, const std::string& name, bool overWhiteout) {
  if (!EnsureUpper(parent, pv)) return false;
  int pfd;
  if (!UpperFd(parent, &pfd) || !NoteModified(parent, pfd)) return false;
  std::string path = Join(parent, name);
  if (overWhiteout && unlinkat(pfd, name.c_str(), 0) < 0) return Sys(errno, "unlinkat", path);
  if (mkdirat(pfd, name.c_str(), 0755) < 0) return Sys(errno, "mkdirat", path);
  if (fchmodat(pfd, name.c_str(), 0755, 0) < 0) return Sys(errno, "fchmodat", path);  // whatever the umask
  View nv;
  nv.inUpper = true;
  if (overWhiteout) {
    // The whiteout hid a lower directory; the new one must keep hiding its contents.
    bool has;
    if (!LowerHas(*pv, path, true, &has)) return false;
    if (has) {
      if (!SetOpaque(path)) return false;  // nothing is cached below a path that was missing
      nv.opaque = true;
    }
  }
  views_[path] = std::move(nv);
  return true;
}

// Makes sure directory `path` exists in the target dir: copies it (and its missing
// ancestors) up from the top lower layer that has it, keeping mode, owner, xattrs and
// times, so that what the merged view shows for it does not change.
bool Applier::EnsureUpper(const std::string& path, View* v) {
  if (v->inUpper) return true;
  if (v->lowers.empty()) return Invalid("internal: directory \"" + path + "\" is in no layer");
  std::string parent = Dirname(path);
  View* pv = GetView(parent);
  if (pv == nullptr || !EnsureUpper(parent, pv)) return false;
  int src = OpenBeneath(lowerFds_[v->lowers[0]], path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (src < 0) return Sys(errno, "openat2", path);
  struct stat st;
  bool ok = fstat(src, &st) == 0 || Sys(errno, "fstat", path);
  int pfd = -1, dst = -1;
  std::string name = Basename(path);
  ok = ok && UpperFd(parent, &pfd) && NoteModified(parent, pfd);
  ok = ok && (mkdirat(pfd, name.c_str(), 0700) == 0 || Sys(errno, "mkdirat", path));
  ok = ok && ((dst = openat(pfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) >= 0 ||
              Sys(errno, "openat", path));
  ok = ok && Chown(fchown(dst, st.st_uid, st.st_gid), path);
  ok = ok && (fchmod(dst, st.st_mode & 07777) == 0 || Sys(errno, "fchmod", path));
  ok = ok && CopyXattrs(src, false, dst, false, path);
  if (ok) {
    dirTimes_[path] = Times{st.st_atim, st.st_mtim};
    v->inUpper = true;
  }
  close(src);
  if (dst >= 0) close(dst);
  return ok;
}

bool Applier::UpperFd(const std::string& path, int* fd) {
  if (slotFd_ >= 0 && slotPath_ == path) {
    *fd = slotFd_;
    return true;
  }
  int nfd = OpenBeneath(rootFd_, path, O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (nfd < 0) return Sys(errno, "openat2", path);
  if (slotFd_ >= 0) close(slotFd_);
  slotFd_ = nfd;
  slotPath_ = path;
  *fd = nfd;
  return true;
}

// Before the first change inside a directory, remember its times to put them back at the
// end (umoci restores a parent's metadata after writing into it, likewise).
bool Applier::NoteModified(const std::string& path, int fd) {
  if (dirTimes_.count(path)) return true;
  struct stat st;
  if (fstat(fd, &st) < 0) return Sys(errno, "fstat", path);
  dirTimes_[path] = Times{st.st_atim, st.st_mtim};
  return true;
}

// Keeps the caches true when something is about to appear at `path`.
void Applier::BeforeCreate(const std::string& path, bool isDir) {
  if (symlinks_.count(path)) return Invalidate();  // a symlink we resolved through is being shadowed
  auto it = views_.find(path);
  if (it == views_.end()) return;
  if (!isDir) return Invalidate();  // a directory of the view is being shadowed
  it->second.inUpper = true;
}

void Applier::OnRemoved(const std::string& path, bool structural) {
  if (structural) Invalidate();
  dirTimes_.erase(path);
  std::string prefix = path + "/";
  for (auto it = dirTimes_.lower_bound(prefix); it != dirTimes_.end() && it->first.compare(0, prefix.size(), prefix) == 0;)
    it = dirTimes_.erase(it);
  if (slotFd_ >= 0 && (slotPath_ == path || slotPath_.compare(0, prefix.size(), prefix) == 0)) {
    close(slotFd_);
    slotFd_ = -1;
  }
}

// Views are dropped, not freed: a View* taken earlier in the same entry stays valid memory
// (moving a node-based map keeps its elements where they are) until the next entry starts.
void Applier::Invalidate() {
  retired_.push_back(std::move(views_));
  views_.clear();
  memo_.clear();
  symlinks_.clear();
}

}  // namespace apply
}  // namespace tslayer
