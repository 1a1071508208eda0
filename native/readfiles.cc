// readFiles: the whole content of many small files in ONE thread-pool job.
//
// Why: the differ puts thousands of small files into a layer. Reading each with fs calls
// costs open+read+close hand-offs per file (or blocks the event loop when done
// synchronously, badly so when the page cache is cold). One job per batch reads them
// back to back off the main thread, and several batches can be in flight.
// Each file must hold at least its expected size: a file that shrank since it was
// scanned is an error (the caller names it), one that grew is read up to that size.
#include "common.h"
#include <fcntl.h>
#include <unistd.h>

namespace tslayer {
namespace {

struct Batch {
  long err = 0;
  long failedIndex = -1;
  std::string syscall;
  std::vector<char> data;
};

Batch DoRead(const std::vector<std::string>& paths, const std::vector<size_t>& sizes) {
  Batch b;
  size_t total = 0;
  for (size_t s : sizes) total += s;
  b.data.resize(total);
  size_t off = 0;
  for (size_t i = 0; i < paths.size(); i++) {
    int fd = ::open(paths[i].c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
      b.err = Neg();
      b.failedIndex = static_cast<long>(i);
      b.syscall = "open";
      return b;
    }
    size_t got = 0;
    while (got < sizes[i]) {
      ssize_t n = ::pread(fd, b.data.data() + off + got, sizes[i] - got, static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        b.err = Neg();
        break;
      }
      if (n == 0) {
        b.err = -ENODATA;  // shorter than scanned
        break;
      }
      got += static_cast<size_t>(n);
    }
    ::close(fd);
    if (b.err < 0) {
      b.failedIndex = static_cast<long>(i);
      b.syscall = "read";
      return b;
    }
    off += sizes[i];
  }
  return b;
}

// readFiles(paths: string[], sizes: number[]) -> Promise<Buffer | {errno, syscall, index}>
Napi::Value ReadFiles(const Napi::CallbackInfo& info) {
  Napi::Array jsPaths = info[0].As<Napi::Array>();
  Napi::Array jsSizes = info[1].As<Napi::Array>();
  std::vector<std::string> paths(jsPaths.Length());
  std::vector<size_t> sizes(jsPaths.Length());
  for (uint32_t i = 0; i < jsPaths.Length(); i++) {
    paths[i] = jsPaths.Get(i).As<Napi::String>().Utf8Value();
    sizes[i] = static_cast<size_t>(jsSizes.Get(i).As<Napi::Number>().Int64Value());
  }
  return PromiseWorker<Batch>::Run(
      info.Env(), [paths = std::move(paths), sizes = std::move(sizes)]() { return DoRead(paths, sizes); },
      [](Napi::Env env, Batch& b) -> Napi::Value {
        if (b.err < 0) {
          Napi::Object o = Napi::Object::New(env);
          o.Set("errno", Napi::Number::New(env, static_cast<double>(b.err)));
          o.Set("syscall", Napi::String::New(env, b.syscall));
          o.Set("index", Napi::Number::New(env, static_cast<double>(b.failedIndex)));
          return o;
        }
        return Napi::Buffer<char>::Copy(env, b.data.data(), b.data.size());
      });
}

}  // namespace

void RegisterReadFiles(Napi::Env env, Napi::Object exports) {
  exports.Set("readFiles", Napi::Function::New(env, ReadFiles, "readFiles"));
}

}  // namespace tslayer
