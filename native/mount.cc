// mount(2), umount2(2) and the new mount API (fsopen/fsconfig/fsmount/move_mount/open_tree).
#include "common.h"
#include <sys/mount.h>
#include <unistd.h>

namespace tslayer {
namespace {

Napi::Value Mount(const Napi::CallbackInfo& info) {
  std::string source = Str(info, 0), target = Str(info, 1), fstype = Str(info, 2);
  unsigned long flags = static_cast<unsigned long>(Int64(info, 3));
  std::string data = IsNullish(info, 4) ? "" : Str(info, 4);
  bool hasData = !IsNullish(info, 4);
  return RunLong(info.Env(), [=]() -> long {
    int r = ::mount(source.c_str(), target.c_str(), fstype.empty() ? nullptr : fstype.c_str(), flags,
                    hasData ? data.c_str() : nullptr);
    return r < 0 ? Neg() : 0;
  });
}

Napi::Value Umount2(const Napi::CallbackInfo& info) {
  std::string target = Str(info, 0);
  int flags = Int(info, 1);
  return RunLong(info.Env(), [=]() -> long { return ::umount2(target.c_str(), flags) < 0 ? Neg() : 0; });
}

// fsopen is cheap (no disk I/O): synchronous.
Napi::Value FsOpen(const Napi::CallbackInfo& info) {
  std::string fs = Str(info, 0);
  int r = ::fsopen(fs.c_str(), Uint(info, 1));
  return Napi::Number::New(info.Env(), r < 0 ? Neg() : r);
}

// fsconfig(fd, cmd, key, value, aux). value: string | null. FSCONFIG_CMD_CREATE
// does the real work (it may read the layers' directories), so it runs off-thread.
Napi::Value FsConfig(const Napi::CallbackInfo& info) {
  int fd = Int(info, 0);
  unsigned int cmd = Uint(info, 1);
  bool hasKey = !IsNullish(info, 2), hasValue = !IsNullish(info, 3);
  std::string key = hasKey ? Str(info, 2) : "", value = hasValue ? Str(info, 3) : "";
  int aux = IsNullish(info, 4) ? 0 : Int(info, 4);
  return RunLong(info.Env(), [=]() -> long {
    int r = ::fsconfig(fd, cmd, hasKey ? key.c_str() : nullptr, hasValue ? value.c_str() : nullptr, aux);
    return r < 0 ? Neg() : 0;
  });
}

Napi::Value FsMount(const Napi::CallbackInfo& info) {
  int fd = Int(info, 0);
  unsigned int flags = Uint(info, 1), attrs = Uint(info, 2);
  return RunLong(info.Env(), [=]() -> long {
    int r = ::fsmount(fd, flags, attrs);
    return r < 0 ? Neg() : r;
  });
}

Napi::Value MoveMount(const Napi::CallbackInfo& info) {
  int fromDfd = Int(info, 0);
  std::string fromPath = Str(info, 1);
  int toDfd = Int(info, 2);
  std::string toPath = Str(info, 3);
  unsigned int flags = Uint(info, 4);
  return RunLong(info.Env(), [=]() -> long {
    int r = ::move_mount(fromDfd, fromPath.c_str(), toDfd, toPath.c_str(), flags);
    return r < 0 ? Neg() : 0;
  });
}

Napi::Value OpenTree(const Napi::CallbackInfo& info) {
  int dfd = Int(info, 0);
  std::string path = Str(info, 1);
  unsigned int flags = Uint(info, 2);
  return RunLong(info.Env(), [=]() -> long {
    int r = ::open_tree(dfd, path.c_str(), flags);
    return r < 0 ? Neg() : r;
  });
}

}  // namespace

void RegisterMount(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, Mount));
  exports.Set("umount2", Napi::Function::New(env, Umount2));
  exports.Set("fsopen", Napi::Function::New(env, FsOpen));
  exports.Set("fsconfig", Napi::Function::New(env, FsConfig));
  exports.Set("fsmount", Napi::Function::New(env, FsMount));
  exports.Set("moveMount", Napi::Function::New(env, MoveMount));
  exports.Set("openTree", Napi::Function::New(env, OpenTree));
}

}  // namespace tslayer
