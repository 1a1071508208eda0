// N-API side of the layer applier (see apply.h): an `Applier` object whose run(batch)
// applies a batch of encoded tar entries on the thread pool, and whose finish() sets the
// deferred directory times.
//
// Batch format (little-endian), written by src/archive/apply-batch.ts:
//   op 1 ENTRY: u8 type, u32 mode, u32 uid, u32 gid, u32 devmajor, u32 devminor,
//               f64 mtimeSec, u32 mtimeNsec, f64 atimeSec, u32 atimeNsec, f64 size,
//               u32 nameLen, name, u32 linkLen, link,
//               u32 xattrCount, then per xattr: u32 keyLen, key, u32 valueLen, value
//   op 2 DATA:  u32 len, bytes   (content of the current regular file; may span batches)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <memory>

#include "apply.h"
#include "common.h"

namespace tslayer {
namespace apply {

namespace {

struct Reader {
  const uint8_t* p;
  size_t n;
  bool ok = true;
  bool Take(void* out, size_t k) {
    if (!ok || k > n) return ok = false;
    memcpy(out, p, k);
    p += k;
    n -= k;
    return true;
  }
  uint8_t U8() {
    uint8_t v = 0;
    Take(&v, 1);
    return v;
  }
  uint32_t U32() {
    uint32_t v = 0;
    Take(&v, 4);
    return v;
  }
  double F64() {
    double v = 0;
    Take(&v, 8);
    return v;
  }
  std::string Str() {
    uint32_t k = U32();
    if (!ok || k > n) {
      ok = false;
      return std::string();
    }
    std::string s(reinterpret_cast<const char*>(p), k);
    p += k;
    n -= k;
    return s;
  }
};

struct timespec Ts(double sec, uint32_t nsec) {
  struct timespec t;
  t.tv_sec = static_cast<time_t>(std::floor(sec));
  t.tv_nsec = nsec < 1000000000u ? static_cast<long>(nsec) : 0;
  return t;
}

bool DecodeEntry(Reader& r, Entry* e) {
  e->type = static_cast<char>(r.U8());
  e->mode = r.U32();
  e->uid = r.U32();
  e->gid = r.U32();
  e->devmajor = r.U32();
  e->devminor = r.U32();
  double ms = r.F64();
  uint32_t mn = r.U32();
  double as = r.F64();
  uint32_t an = r.U32();
  e->times.mtime = Ts(ms, mn);
  e->times.atime = Ts(as, an);
  double size = r.F64();
  e->size = size > 0 ? static_cast<uint64_t>(size) : 0;
  e->name = r.Str();
  e->link = r.Str();
  uint32_t nx = r.U32();
  for (uint32_t i = 0; r.ok && i < nx; i++) {
    std::string k = r.Str();
    std::string v = r.Str();
    e->xattrs.emplace_back(std::move(k), std::move(v));
  }
  return r.ok;
}

}  // namespace

bool Applier::Run(const uint8_t* data, size_t len) {
  Reader r{data, len};
  while (r.n > 0) {
    uint8_t op = r.U8();
    if (op == 1) {
      Entry e;
      if (!DecodeEntry(r, &e)) return Invalid("internal: malformed batch");
      if (cur_.active) return Invalid("internal: entry before the previous file's data ended");
      if (views_.size() > 100000) Invalidate();  // bound the cache on huge layers
      retired_.clear();                           // no View* outlives the entry that took it
      if (!ApplyEntry(e)) return false;
    } else if (op == 2) {
      uint32_t k = r.U32();
      if (!r.ok || k > r.n) return Invalid("internal: malformed batch");
      const uint8_t* p = r.p;
      r.p += k;
      r.n -= k;
      if (!WriteData(p, k)) return false;
    } else {
      return Invalid("internal: malformed batch");
    }
  }
  return true;
}

bool Applier::Finish() {
  if (cur_.active) return Invalid("internal: the last file's data is incomplete");
  entryName_.clear();
  if (!CopyUpRootMetadata()) return false;
  for (const auto& kv : dirTimes_) {
    int fd = OpenBeneath(rootFd_, kv.first, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0) {
      if (errno == ENOENT || errno == ENOTDIR) continue;
      return Sys(errno, "openat2", kv.first);
    }
    struct timespec ts[2] = {kv.second.atime, kv.second.mtime};
    int rc = futimens(fd, ts);
    int e = errno;
    close(fd);
    if (rc < 0) return Sys(e, "futimens", kv.first);
  }
  return true;
}

}  // namespace apply

namespace {

class ApplierWrap : public Napi::ObjectWrap<ApplierWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Applier",
                       {InstanceMethod("run", &ApplierWrap::Run), InstanceMethod("finish", &ApplierWrap::Finish),
                        InstanceMethod("close", &ApplierWrap::Close)});
  }

  // new Applier(rootFd, lowerFds[], overlay, rootless): takes ownership of the fds.
  explicit ApplierWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ApplierWrap>(info) {
    int root = Int(info, 0);
    Napi::Array arr = info[1].As<Napi::Array>();
    std::vector<int> lowers;
    for (uint32_t i = 0; i < arr.Length(); i++) lowers.push_back(arr.Get(i).As<Napi::Number>().Int32Value());
    bool overlay = info[2].As<Napi::Boolean>().Value();
    bool rootless = info[3].As<Napi::Boolean>().Value();
    applier_ = std::make_unique<apply::Applier>(root, std::move(lowers), overlay, rootless);
  }

  apply::Applier* applier() { return applier_.get(); }
  void Done() {
    busy_ = false;
    Unref();
  }

 private:
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value Finish(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (busy_) {
      Napi::Error::New(info.Env(), "Applier.close() while a batch is running").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    applier_.reset();  // closes the fds
    return info.Env().Undefined();
  }
  bool Usable(Napi::Env env) {
    if (busy_ || !applier_) {
      Napi::Error::New(env, busy_ ? "Applier is busy" : "Applier is closed").ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  std::unique_ptr<apply::Applier> applier_;
  bool busy_ = false;
};

Napi::Value FailureObject(Napi::Env env, const apply::Failure& f) {
  Napi::Object o = Napi::Object::New(env);
  const char* kind = f.kind == apply::FailKind::Unsafe ? "unsafe" : f.kind == apply::FailKind::Invalid ? "invalid" : "sys";
  o.Set("kind", kind);
  o.Set("entry", Napi::Buffer<char>::Copy(env, f.entry.data(), f.entry.size()));
  o.Set("message", Napi::String::New(env, f.message));
  o.Set("errno", Napi::Number::New(env, f.err));
  o.Set("syscall", Napi::String::New(env, f.syscall));
  o.Set("path", Napi::Buffer<char>::Copy(env, f.path.data(), f.path.size()));
  return o;
}

// Runs one batch (or the finish step) on the thread pool; resolves with null or a failure.
class ApplyWorker : public Napi::AsyncWorker {
 public:
  ApplyWorker(Napi::Env env, ApplierWrap* wrap) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), wrap_(wrap) {}
  void SetBatch(Napi::Buffer<uint8_t> buf, size_t len) {
    buf_ = Napi::Persistent(buf);  // keeps the bytes alive while the thread reads them
    data_ = buf.Data();
    len_ = len;
    finish_ = false;
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override { ok_ = finish_ ? wrap_->applier()->Finish() : wrap_->applier()->Run(data_, len_); }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Value result = ok_ ? env.Null() : FailureObject(env, wrap_->applier()->failure());
    wrap_->Done();
    deferred_.Resolve(result);
  }
  void OnError(const Napi::Error& e) override {
    wrap_->Done();
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  ApplierWrap* wrap_;
  Napi::Reference<Napi::Buffer<uint8_t>> buf_;
  const uint8_t* data_ = nullptr;
  size_t len_ = 0;
  bool finish_ = true;
  bool ok_ = false;
};

Napi::Value ApplierWrap::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(env)) return env.Undefined();
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  size_t len = info[1].As<Napi::Number>().Int64Value();
  if (len > buf.Length()) len = buf.Length();
  auto* w = new ApplyWorker(env, this);
  w->SetBatch(buf, len);
  busy_ = true;
  Ref();  // the JS object (and so the applier) lives until the worker is done
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value ApplierWrap::Finish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(env)) return env.Undefined();
  auto* w = new ApplyWorker(env, this);
  busy_ = true;
  Ref();
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void RegisterApply(Napi::Env env, Napi::Object exports) { exports.Set("Applier", ApplierWrap::Define(env)); }

}  // namespace tslayer
