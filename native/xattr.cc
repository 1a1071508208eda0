// l{get,set,list,remove}xattr: never follow a symlink (layers carry xattrs on links too).
#include "common.h"
#include <sys/xattr.h>

namespace tslayer {
namespace {

struct Bytes {
  long err = 0;
  std::vector<char> data;
};

Napi::Value Lgetxattr(const Napi::CallbackInfo& info) {
  std::string path = Str(info, 0), name = Str(info, 1);
  return PromiseWorker<Bytes>::Run(
      info.Env(),
      [=]() {
        Bytes b;
        for (;;) {  // the value may grow between the size probe and the read: retry on ERANGE
          ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
          if (n < 0) { b.err = Neg(); return b; }
          b.data.resize(static_cast<size_t>(n));
          ssize_t m = n == 0 ? 0 : ::lgetxattr(path.c_str(), name.c_str(), b.data.data(), b.data.size());
          if (m < 0 && errno == ERANGE) continue;
          if (m < 0) { b.err = Neg(); return b; }
          b.data.resize(static_cast<size_t>(m));
          return b;
        }
      },
      [](Napi::Env env, Bytes& b) -> Napi::Value {
        if (b.err < 0) return Napi::Number::New(env, static_cast<double>(b.err));
        return Napi::Buffer<char>::Copy(env, b.data.data(), b.data.size());
      });
}

Napi::Value Lsetxattr(const Napi::CallbackInfo& info) {
  std::string path = Str(info, 0), name = Str(info, 1);
  auto buf = info[2].As<Napi::Buffer<char>>();
  std::vector<char> value(buf.Data(), buf.Data() + buf.Length());
  int flags = IsNullish(info, 3) ? 0 : Int(info, 3);
  return RunLong(info.Env(), [=]() -> long {
    return ::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), flags) < 0 ? Neg() : 0;
  });
}

Napi::Value Llistxattr(const Napi::CallbackInfo& info) {
  std::string path = Str(info, 0);
  return PromiseWorker<Bytes>::Run(
      info.Env(),
      [=]() {
        Bytes b;
        for (;;) {
          ssize_t n = ::llistxattr(path.c_str(), nullptr, 0);
          if (n < 0) { b.err = Neg(); return b; }
          b.data.resize(static_cast<size_t>(n));
          ssize_t m = n == 0 ? 0 : ::llistxattr(path.c_str(), b.data.data(), b.data.size());
          if (m < 0 && errno == ERANGE) continue;
          if (m < 0) { b.err = Neg(); return b; }
          b.data.resize(static_cast<size_t>(m));
          return b;
        }
      },
      [](Napi::Env env, Bytes& b) -> Napi::Value {
        if (b.err < 0) return Napi::Number::New(env, static_cast<double>(b.err));
        Napi::Array names = Napi::Array::New(env);
        uint32_t idx = 0;
        size_t start = 0;
        for (size_t i = 0; i < b.data.size(); i++) {
          if (b.data[i] == '\0') {
            if (i > start) names.Set(idx++, Napi::String::New(env, b.data.data() + start, i - start));
            start = i + 1;
          }
        }
        return names;
      });
}

Napi::Value Lremovexattr(const Napi::CallbackInfo& info) {
  std::string path = Str(info, 0), name = Str(info, 1);
  return RunLong(info.Env(), [=]() -> long { return ::lremovexattr(path.c_str(), name.c_str()) < 0 ? Neg() : 0; });
}

}  // namespace

void RegisterXattr(Napi::Env env, Napi::Object exports) {
  exports.Set("lgetxattr", Napi::Function::New(env, Lgetxattr));
  exports.Set("lsetxattr", Napi::Function::New(env, Lsetxattr));
  exports.Set("llistxattr", Napi::Function::New(env, Llistxattr));
  exports.Set("lremovexattr", Napi::Function::New(env, Lremovexattr));
}

}  // namespace tslayer
