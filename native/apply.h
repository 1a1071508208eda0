// The layer applier: writes the entries of one layer tar into a snapshot directory,
// resolving every path against the merged view of that directory and the layers below
// it, and never touching anything outside the directory.
//
// JS parses the tar and sends the entries here in batches (apply.cc decodes them); one
// batch is one hop to the thread pool, so the per-file syscalls cost no Promise each.
//
// Confinement, in layers:
//  - entry names are cleaned lexically first ("../x" and "/x" become "x", as umoci and
//    containerd do);
//  - symlinks met on the way (in this layer or a lower one) are followed by our own
//    resolver with RESOLVE_IN_ROOT semantics: "/" and ".." at the top mean the root;
//  - the resolved (canonical) path of a directory never contains a symlink, and every
//    open of it goes through openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//    RESOLVE_NO_MAGICLINKS): if our view of the tree were ever wrong, the kernel refuses
//    instead of following a link out of the root;
//  - entries are then created with *at() calls on a single name relative to that
//    directory fd, with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW.
#pragma once
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace tslayer {
namespace apply {

enum class FailKind { Unsafe, Invalid, Sys };

struct Failure {
  FailKind kind = FailKind::Invalid;
  int err = 0;          // errno, for Sys
  std::string syscall;  // for Sys
  std::string path;     // canonical path inside the root the syscall was about
  std::string message;
  std::string entry;    // the entry's name as the tar has it
};

struct Times {
  struct timespec atime, mtime;
};

// One decoded tar entry (see the op format in apply.cc).
struct Entry {
  char type = '0';  // '0' file, '1' hardlink, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo
  uint32_t mode = 0, uid = 0, gid = 0, devmajor = 0, devminor = 0;
  Times times{};
  uint64_t size = 0;
  std::string name, link;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

// A directory of the merged view, cached by canonical path ("" is the root).
struct View {
  bool inUpper = false;     // exists as a directory in the target dir
  bool opaque = false;      // the target dir's copy carries the opaque marker
  std::vector<int> lowers;  // lower layers whose directory shows through, top first
};

// What the merged view has at one name in a directory.
struct Lookup {
  enum Kind { Missing, Dir, Symlink, Other } kind = Missing;
  int layer = -1;            // -1: the target dir; >= 0: index into the lowers
  bool upperNonDir = false;  // Missing because the target dir holds a whiteout there
  struct stat st {};
  std::string target;  // Symlink
  View view;           // Dir
};

enum class Res { Ok, Missing, NotDir, Fail };

class Applier {
 public:
  // Takes ownership of the fds (O_PATH directory fds).
  Applier(int rootFd, std::vector<int> lowerFds, bool overlay, bool rootless);
  ~Applier();
  // Applies one batch of encoded ops; false on failure (see failure()).
  bool Run(const uint8_t* data, size_t len);
  // Sets the deferred directory times; call once after the last batch.
  bool Finish();
  void Close();
  const Failure& failure() const { return fail_; }

 private:
  // apply_entry.cc: one tar entry
  bool ApplyEntry(Entry& e);
  bool ApplyRoot(const Entry& e);
  bool CopyUpRootMetadata();
  bool ApplyFile(const std::vector<std::string>& dir, const std::string& base, Entry& e);
  bool ApplyDir(const std::vector<std::string>& dir, const std::string& base, const Entry& e);
  bool ApplySymlink(const std::vector<std::string>& dir, const std::string& base, const Entry& e);
  bool ApplyNode(const std::vector<std::string>& dir, const std::string& base, const Entry& e);
  bool ApplyHardlink(const std::vector<std::string>& dir, const std::string& base, const Entry& e);
  bool ApplyWhiteout(const std::vector<std::string>& dir, const std::string& base);
  bool ApplyOpaque(const std::vector<std::string>& dir);
  bool WhiteoutRootChildren();
  bool WhiteoutOverlay(const std::string& ppath, View* pv, const std::string& name);
  bool WhiteoutRemove(const std::string& ppath, const std::string& name);
  bool RemoveUntouched(const std::string& path);
  bool WriteData(const uint8_t* p, size_t n);
  bool FinishFile();
  bool CopyUp(const std::string& ppath, View* pv, const std::string& name, const Lookup& lk);
  bool PrepareParent(const std::vector<std::string>& dir, std::string* ppath, int* pfd);
  bool RemoveExisting(int pfd, const std::string& name, const std::string& path, const struct stat& st);
  bool SetOpaque(const std::string& path);
  bool Touch(const std::string& path);

  // metadata
  bool Chown(int rc, const std::string& path);
  bool SetXattrs(int fd, bool opath, const Entry& e, const std::string& path);
  bool ClearXattrs(int fd, const std::string& path);
  bool CopyXattrs(int src, bool srcPath, int dst, bool dstPath, const std::string& path);
  bool Private(const std::string& name) const;
  bool Ignored(const std::string& name) const;

  // apply_resolve.cc: the merged view
  Res ResolveDir(const std::vector<std::string>& comps, bool create, std::string* canon, View** view);
  View* GetView(const std::string& canon);
  bool LookupChild(const View& v, const std::string& parent, const std::string& name, Lookup* out);
  bool CollectLowers(const std::vector<int>& from, size_t start, const std::string& path, std::vector<int>* out);
  bool LowerHas(const View& pv, const std::string& path, bool dirOnly, bool* has);
  bool IsOpaque(int layerFd, const std::string& path, bool* opaque);
  bool EnsureUpper(const std::string& path, View* v);
  bool CreateImplied(const std::string& parent, View* pv, const std::string& name, bool overWhiteout);
  bool UpperFd(const std::string& path, int* fd);
  bool NoteModified(const std::string& path, int fd);
  void BeforeCreate(const std::string& path, bool isDir);
  void OnRemoved(const std::string& path, bool structural);
  void Invalidate();

  // failures: all return false so callers can `return Unsafe(...)`
  bool Unsafe(const std::string& msg);
  bool Invalid(const std::string& msg);
  bool Sys(int err, const char* syscall, const std::string& path);

  int rootFd_;
  std::vector<int> lowerFds_;
  bool overlay_, rootless_;
  std::string opaqueXattr_;
  Failure fail_;
  std::string entryName_;
  bool rootExplicit_ = false;  // this layer has an entry for the root itself

  std::unordered_map<std::string, View> views_;        // canonical dir -> view
  std::vector<std::unordered_map<std::string, View>> retired_;  // invalidated views, freed per entry
  std::unordered_map<std::string, std::string> memo_;  // cleaned parent name -> canonical dir
  std::unordered_set<std::string> symlinks_;           // canonical paths of symlinks followed

  // The target-dir fd of the last parent used: entries come grouped by directory.
  std::string slotPath_;
  int slotFd_ = -1;

  // Paths this layer wrote, with their ancestors (umoci's upperPaths): whiteouts and
  // opaque markers hide everything else (in overlay mode copy-ups included), never these.
  std::unordered_set<std::string> touched_;

  // Directory times to set at the end (after their children are written): the tar's for
  // directory entries, the previous ones for directories we only added to or copied up.
  std::map<std::string, Times> dirTimes_;

  struct Current {
    bool active = false;
    int fd = -1;  // -1: content is discarded (a whiteout entry with data)
    uint64_t remaining = 0;
    Entry e;
    std::string path;
  } cur_;
};

// apply_fs.cc: small helpers on fds
int OpenBeneath(int rootFd, const std::string& path, int flags);  // fd or -1/errno
int LstatBeneath(int rootFd, const std::string& path, struct stat* st);  // 0 or -errno
int ReadlinkFd(int fd, std::string* out);  // fd: O_PATH of the link; 0 or -errno
int RemoveAll(int dirFd, const std::string& name);  // 0 or -errno
int CopyData(int in, int out);  // reflink, else copy_file_range, else read/write; 0 or -errno
int WriteAll(int fd, const uint8_t* p, size_t n);  // 0 or -errno
// xattrs through a normal fd, or through an O_PATH fd (via /proc/self/fd) when opath
int XList(int fd, bool opath, std::vector<std::string>* names);  // 0 or -errno
int XGet(int fd, bool opath, const std::string& name, std::string* value);
int XSet(int fd, bool opath, const std::string& name, const std::string& value);
int XRemove(int fd, bool opath, const std::string& name);

inline bool IsWhiteout(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == 0; }
inline std::string Join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "/" + b; }
inline std::string Dirname(const std::string& p) {
  size_t i = p.rfind('/');
  return i == std::string::npos ? std::string() : p.substr(0, i);
}
inline std::string Basename(const std::string& p) {
  size_t i = p.rfind('/');
  return i == std::string::npos ? p : p.substr(i + 1);
}

constexpr size_t kMaxPath = 4095;  // PATH_MAX - 1: longer names could not be opened anyway
constexpr int kMaxLinks = 40;      // the kernel's own limit on symlinks in one lookup

}  // namespace apply
}  // namespace tslayer
