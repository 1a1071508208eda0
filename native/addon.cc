#include "common.h"

namespace tslayer {
void RegisterScan(Napi::Env env, Napi::Object exports);  // scan.cc
void RegisterReadFiles(Napi::Env env, Napi::Object exports);  // readfiles.cc
void RegisterApply(Napi::Env env, Napi::Object exports);  // apply.cc
void RegisterBtrfsInfo(Napi::Env env, Napi::Object exports);  // btrfs_info.cc
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  tslayer::RegisterMount(env, exports);
  tslayer::RegisterXattr(env, exports);
  tslayer::RegisterFsOps(env, exports);
  tslayer::RegisterBtrfs(env, exports);
  tslayer::RegisterScan(env, exports);
  tslayer::RegisterReadFiles(env, exports);
  tslayer::RegisterApply(env, exports);
  tslayer::RegisterBtrfsInfo(env, exports);
  return exports;
}

NODE_API_MODULE(tslayer, Init)
