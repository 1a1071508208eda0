// File-system calls Node's fs lacks or only offers in a link-following form:
// mknod, lchown, utimensat(AT_SYMLINK_NOFOLLOW), openat2, renameat2, FICLONE, syncfs, flock.
#include "common.h"
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

namespace tslayer {
namespace {

Napi::Value Mknod(const Napi::CallbackInfo& info) {
  std::string path = Str(info, 0);
  mode_t mode = Uint(info, 1);
  dev_t dev = makedev(Uint(info, 2), Uint(info, 3));
  return RunLong(info.Env(), [=]() -> long { return ::mknod(path.c_str(), mode, dev) < 0 ? Neg() : 0; });
}

Napi::Value Lchown(const Napi::CallbackInfo& info) {
  std::string path = Str(info, 0);
  uid_t uid = Uint(info, 1);
  gid_t gid = Uint(info, 2);
  return RunLong(info.Env(), [=]() -> long { return ::lchown(path.c_str(), uid, gid) < 0 ? Neg() : 0; });
}

// lutimes(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec): nanosecond precision,
// and never through a symlink (a layer's symlink has its own mtime).
Napi::Value Lutimes(const Napi::CallbackInfo& info) {
  std::string path = Str(info, 0);
  struct timespec ts[2];
  ts[0].tv_sec = Int64(info, 1);
  ts[0].tv_nsec = Int64(info, 2);
  ts[1].tv_sec = Int64(info, 3);
  ts[1].tv_nsec = Int64(info, 4);
  return RunLong(info.Env(), [=]() -> long {
    return ::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) < 0 ? Neg() : 0;
  });
}

// openat2(dirfd, path, flags, mode, resolve) -> fd. dirfd -100 is AT_FDCWD.
Napi::Value Openat2(const Napi::CallbackInfo& info) {
  int dirfd = Int(info, 0);
  std::string path = Str(info, 1);
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(Int64(info, 2));
  how.mode = static_cast<uint64_t>(Int64(info, 3));
  how.resolve = static_cast<uint64_t>(Int64(info, 4));
  return RunLong(info.Env(), [=]() -> long {
    struct open_how h = how;
    long r = ::syscall(SYS_openat2, dirfd, path.c_str(), &h, sizeof(h));
    return r < 0 ? Neg() : r;
  });
}

Napi::Value Renameat2(const Napi::CallbackInfo& info) {
  int olddir = Int(info, 0);
  std::string oldpath = Str(info, 1);
  int newdir = Int(info, 2);
  std::string newpath = Str(info, 3);
  unsigned int flags = Uint(info, 4);
  return RunLong(info.Env(), [=]() -> long {
    return ::renameat2(olddir, oldpath.c_str(), newdir, newpath.c_str(), flags) < 0 ? Neg() : 0;
  });
}

// ficlone(destFd, srcFd): share all extents of src with dest (btrfs, xfs reflink).
Napi::Value Ficlone(const Napi::CallbackInfo& info) {
  int dest = Int(info, 0), src = Int(info, 1);
  return RunLong(info.Env(), [=]() -> long { return ::ioctl(dest, FICLONE, src) < 0 ? Neg() : 0; });
}

Napi::Value Syncfs(const Napi::CallbackInfo& info) {
  int fd = Int(info, 0);
  return RunLong(info.Env(), [=]() -> long { return ::syncfs(fd) < 0 ? Neg() : 0; });
}

// flock(fd, op). A blocking LOCK_EX waits in the thread pool, never on the JS thread.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  int fd = Int(info, 0), op = Int(info, 1);
  return RunLong(info.Env(), [=]() -> long {
    int r;
    do { r = ::flock(fd, op); } while (r < 0 && errno == EINTR);
    return r < 0 ? Neg() : 0;
  });
}

Napi::Value Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("AT_FDCWD", AT_FDCWD);
  c.Set("RESOLVE_NO_XDEV", static_cast<double>(RESOLVE_NO_XDEV));
  c.Set("RESOLVE_NO_MAGICLINKS", static_cast<double>(RESOLVE_NO_MAGICLINKS));
  c.Set("RESOLVE_NO_SYMLINKS", static_cast<double>(RESOLVE_NO_SYMLINKS));
  c.Set("RESOLVE_BENEATH", static_cast<double>(RESOLVE_BENEATH));
  c.Set("RESOLVE_IN_ROOT", static_cast<double>(RESOLVE_IN_ROOT));
  c.Set("O_PATH", O_PATH);
  c.Set("O_DIRECTORY", O_DIRECTORY);
  c.Set("O_NOFOLLOW", O_NOFOLLOW);
  c.Set("O_CLOEXEC", O_CLOEXEC);
  c.Set("O_RDONLY", O_RDONLY);
  c.Set("O_WRONLY", O_WRONLY);
  c.Set("O_RDWR", O_RDWR);
  c.Set("O_CREAT", O_CREAT);
  c.Set("O_EXCL", O_EXCL);
  c.Set("O_TRUNC", O_TRUNC);
  c.Set("RENAME_NOREPLACE", RENAME_NOREPLACE);
  c.Set("RENAME_EXCHANGE", RENAME_EXCHANGE);
  c.Set("RENAME_WHITEOUT", RENAME_WHITEOUT);
  c.Set("LOCK_SH", LOCK_SH);
  c.Set("LOCK_EX", LOCK_EX);
  c.Set("LOCK_NB", LOCK_NB);
  c.Set("LOCK_UN", LOCK_UN);
  c.Set("S_IFCHR", S_IFCHR);
  c.Set("S_IFBLK", S_IFBLK);
  c.Set("S_IFIFO", S_IFIFO);
  c.Set("S_IFREG", S_IFREG);
  return c;
}

}  // namespace

void RegisterFsOps(Napi::Env env, Napi::Object exports) {
  exports.Set("mknod", Napi::Function::New(env, Mknod));
  exports.Set("lchown", Napi::Function::New(env, Lchown));
  exports.Set("lutimes", Napi::Function::New(env, Lutimes));
  exports.Set("openat2", Napi::Function::New(env, Openat2));
  exports.Set("renameat2", Napi::Function::New(env, Renameat2));
  exports.Set("ficlone", Napi::Function::New(env, Ficlone));
  exports.Set("syncfs", Napi::Function::New(env, Syncfs));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("fsConstants", Constants(env));
}

}  // namespace tslayer
