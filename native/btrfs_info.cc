// btrfs identity of a path: which filesystem (fsid) and which subvolume (tree id) it is
// in. Together they name the subvolume's qgroup in sysfs,
// /sys/fs/btrfs/<fsid>/qgroups/0_<id>/exclusive, which is how the btrfs snapshot driver
// reads exclusive bytes without the `btrfs` binary.
#include "common.h"
#include <fcntl.h>
#include <linux/btrfs.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <cstdio>
#include <cstring>

namespace tslayer {
namespace {

struct SubvolInfo {
  long err = 0;
  uint64_t id = 0;
  unsigned char fsid[BTRFS_FSID_SIZE] = {};
};

// subvolInfo(path) -> { id, fsid } | -errno
Napi::Value SubvolInfoCall(const Napi::CallbackInfo& info) {
  std::string path = Str(info, 0);
  return PromiseWorker<SubvolInfo>::Run(
      info.Env(),
      [=]() -> SubvolInfo {
        SubvolInfo r;
        int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
          r.err = Neg();
          return r;
        }
        // INO_LOOKUP with tree 0 resolves in the fd's own subvolume and reports its id.
        struct btrfs_ioctl_ino_lookup_args lookup = {};
        lookup.treeid = 0;
        lookup.objectid = 256;  // BTRFS_FIRST_FREE_OBJECTID (in btrfs_tree.h)
        struct btrfs_ioctl_fs_info_args fs = {};
        if (::ioctl(fd, BTRFS_IOC_INO_LOOKUP, &lookup) < 0 || ::ioctl(fd, BTRFS_IOC_FS_INFO, &fs) < 0) {
          r.err = Neg();
        } else {
          r.id = lookup.treeid;
          std::memcpy(r.fsid, fs.fsid, BTRFS_FSID_SIZE);
        }
        int saved = errno;
        ::close(fd);
        errno = saved;
        return r;
      },
      [](Napi::Env env, SubvolInfo& r) -> Napi::Value {
        if (r.err < 0) return Napi::Number::New(env, static_cast<double>(r.err));
        // The uuid as sysfs spells it: 8-4-4-4-12 lowercase hex.
        char uuid[37];
        const unsigned char* u = r.fsid;
        std::snprintf(uuid, sizeof uuid, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
                      u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
        Napi::Object o = Napi::Object::New(env);
        o.Set("id", Napi::Number::New(env, static_cast<double>(r.id)));
        o.Set("fsid", Napi::String::New(env, uuid));
        return o;
      });
}

}  // namespace

void RegisterBtrfsInfo(Napi::Env env, Napi::Object exports) {
  exports.Set("subvolInfo", Napi::Function::New(env, SubvolInfoCall, "subvolInfo"));
}

}  // namespace tslayer
