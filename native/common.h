// Shared plumbing for the addon: argument helpers and a promise-returning worker.
//
// Convention for every call: the native side never throws for a failed syscall.
// It returns (or resolves to) a negative errno, and the TypeScript facade turns
// that into an fs-shaped Error it created *before* the call, so the JS stack of
// the caller is kept. Argument type errors do throw (they are programming bugs).
#pragma once
#include <napi.h>
#include <cerrno>
#include <functional>
#include <string>
#include <vector>

namespace tslayer {

inline std::string Str(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::String>().Utf8Value();
}
inline int Int(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::Number>().Int32Value();
}
inline uint32_t Uint(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::Number>().Uint32Value();
}
inline int64_t Int64(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::Number>().Int64Value();
}
inline bool IsNullish(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() <= i || info[i].IsNull() || info[i].IsUndefined();
}
// -errno of the last failed call, for "return r < 0 ? Neg() : r" style code.
inline long Neg() { return -static_cast<long>(errno); }

// Runs `exec` on the libuv thread pool and resolves with `convert(result)`.
template <typename R>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Exec = std::function<R()>;
  using Convert = std::function<Napi::Value(Napi::Env, R&)>;

  static Napi::Promise Run(Napi::Env env, Exec exec, Convert convert) {
    auto* w = new PromiseWorker(env, std::move(exec), std::move(convert));
    auto promise = w->deferred_.Promise();
    w->Queue();
    return promise;
  }

 protected:
  void Execute() override { result_ = exec_(); }
  void OnOK() override { deferred_.Resolve(convert_(Env(), result_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  PromiseWorker(Napi::Env env, Exec exec, Convert convert)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)),
        exec_(std::move(exec)), convert_(std::move(convert)) {}
  Napi::Promise::Deferred deferred_;
  Exec exec_;
  Convert convert_;
  R result_{};
};

// The common case: a syscall that yields a long (>= 0 ok, < 0 is -errno).
inline Napi::Promise RunLong(Napi::Env env, std::function<long()> exec) {
  return PromiseWorker<long>::Run(env, std::move(exec),
                                  [](Napi::Env e, long& r) { return Napi::Number::New(e, static_cast<double>(r)); });
}

void RegisterMount(Napi::Env env, Napi::Object exports);
void RegisterXattr(Napi::Env env, Napi::Object exports);
void RegisterFsOps(Napi::Env env, Napi::Object exports);
void RegisterBtrfs(Napi::Env env, Napi::Object exports);

}  // namespace tslayer
