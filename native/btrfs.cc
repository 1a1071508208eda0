// btrfs subvolume ioctls: create, snapshot, destroy, and the read-only flag.
#include "common.h"
#include <fcntl.h>
#include <linux/btrfs.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <cstring>

namespace tslayer {
namespace {

// Runs fn(fd) on an O_DIRECTORY fd of `dir`, closing it afterwards.
long WithDir(const std::string& dir, const std::function<long(int)>& fn) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Neg();
  long r = fn(fd);
  int saved = errno;
  ::close(fd);
  errno = saved;
  return r;
}

bool NameFits(const std::string& name) { return !name.empty() && name.size() < BTRFS_SUBVOL_NAME_MAX; }

// subvolCreate(parentDir, name)
Napi::Value SubvolCreate(const Napi::CallbackInfo& info) {
  std::string parent = Str(info, 0), name = Str(info, 1);
  return RunLong(info.Env(), [=]() -> long {
    if (!NameFits(name)) return -ENAMETOOLONG;
    return WithDir(parent, [&](int fd) -> long {
      struct btrfs_ioctl_vol_args args = {};
      std::strncpy(args.name, name.c_str(), BTRFS_PATH_NAME_MAX);
      return ::ioctl(fd, BTRFS_IOC_SUBVOL_CREATE, &args) < 0 ? Neg() : 0;
    });
  });
}

// subvolSnapshot(source, destParentDir, name, readonly)
Napi::Value SubvolSnapshot(const Napi::CallbackInfo& info) {
  std::string source = Str(info, 0), parent = Str(info, 1), name = Str(info, 2);
  bool readonly = info[3].As<Napi::Boolean>().Value();
  return RunLong(info.Env(), [=]() -> long {
    if (!NameFits(name)) return -ENAMETOOLONG;
    return WithDir(source, [&](int srcfd) -> long {
      return WithDir(parent, [&](int dstfd) -> long {
        struct btrfs_ioctl_vol_args_v2 args = {};
        args.fd = srcfd;
        args.flags = readonly ? BTRFS_SUBVOL_RDONLY : 0;
        std::strncpy(args.name, name.c_str(), BTRFS_SUBVOL_NAME_MAX);
        return ::ioctl(dstfd, BTRFS_IOC_SNAP_CREATE_V2, &args) < 0 ? Neg() : 0;
      });
    });
  });
}

// subvolDestroy(parentDir, name)
Napi::Value SubvolDestroy(const Napi::CallbackInfo& info) {
  std::string parent = Str(info, 0), name = Str(info, 1);
  return RunLong(info.Env(), [=]() -> long {
    if (!NameFits(name)) return -ENAMETOOLONG;
    return WithDir(parent, [&](int fd) -> long {
      struct btrfs_ioctl_vol_args args = {};
      std::strncpy(args.name, name.c_str(), BTRFS_PATH_NAME_MAX);
      return ::ioctl(fd, BTRFS_IOC_SNAP_DESTROY, &args) < 0 ? Neg() : 0;
    });
  });
}

// subvolGetReadonly(path) -> 0 | 1 | -errno
Napi::Value SubvolGetReadonly(const Napi::CallbackInfo& info) {
  std::string path = Str(info, 0);
  return RunLong(info.Env(), [=]() -> long {
    return WithDir(path, [&](int fd) -> long {
      uint64_t flags = 0;
      if (::ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, &flags) < 0) return Neg();
      return (flags & BTRFS_SUBVOL_RDONLY) ? 1 : 0;
    });
  });
}

// subvolSetReadonly(path, readonly)
Napi::Value SubvolSetReadonly(const Napi::CallbackInfo& info) {
  std::string path = Str(info, 0);
  bool readonly = info[1].As<Napi::Boolean>().Value();
  return RunLong(info.Env(), [=]() -> long {
    return WithDir(path, [&](int fd) -> long {
      uint64_t flags = 0;
      if (::ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, &flags) < 0) return Neg();
      flags = readonly ? (flags | BTRFS_SUBVOL_RDONLY) : (flags & ~static_cast<uint64_t>(BTRFS_SUBVOL_RDONLY));
      return ::ioctl(fd, BTRFS_IOC_SUBVOL_SETFLAGS, &flags) < 0 ? Neg() : 0;
    });
  });
}

}  // namespace

void RegisterBtrfs(Napi::Env env, Napi::Object exports) {
  exports.Set("subvolCreate", Napi::Function::New(env, SubvolCreate));
  exports.Set("subvolSnapshot", Napi::Function::New(env, SubvolSnapshot));
  exports.Set("subvolDestroy", Napi::Function::New(env, SubvolDestroy));
  exports.Set("subvolGetReadonly", Napi::Function::New(env, SubvolGetReadonly));
  exports.Set("subvolSetReadonly", Napi::Function::New(env, SubvolSetReadonly));
}

}  // namespace tslayer
