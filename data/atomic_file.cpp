#include "data/atomic_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>

#include <fmt/format.h>

#include "radar/error.hpp"

namespace nfmimo {

namespace fs = std::filesystem;

namespace {

// The longest file name (one path component) of the file systems we write to.
constexpr std::size_t kNameMax = 255;

std::string errno_text(int err) { return std::strerror(err); }

fs::path folder_of(const fs::path& p) { return p.has_parent_path() ? p.parent_path() : fs::path("."); }

// A short stable tag for a file name that is too long to be extended (FNV-1a, 64 bits).
std::string name_hash(const std::string& name) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return fmt::format("{:016x}", h);
}

// Hidden sibling names derived from the target's name: ".NAME<suffix>", or ".nfmimo-HASH<suffix>" when that
// would pass the file-name limit (a legal 250-byte output name must still work).
std::string sibling_name(const std::string& base, const std::string& suffix, std::size_t reserve) {
  std::string name = "." + base + suffix;
  if (name.size() + reserve <= kNameMax) return name;
  return ".nfmimo-" + name_hash(base) + suffix;
}

// Temporaries are ".NAME.tmp-PID-N" (or the hashed form): the prefix identifies the target, PID the writer.
constexpr std::size_t kTempReserve = 32;  // room for "PID-N"
std::string temporary_prefix(const std::string& base) { return sibling_name(base, ".tmp-", kTempReserve); }

// Identity of a path for comparisons: absolute, symbolic links of existing parts resolved.
std::string path_key(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  if (ec) p = fs::absolute(path).lexically_normal();
  return p.string();
}

struct HeldLock {
  int fd = -1;
  int count = 0;
  std::string lock_path;
};

std::mutex& lock_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, HeldLock>& held_locks() {
  static std::map<std::string, HeldLock> locks;
  return locks;
}

// Lock files must not outlive a command stopped by Ctrl-C or `kill`: the paths of the held locks are also
// kept in fixed storage that a signal handler can read, and a handler for SIGINT/SIGTERM (installed only
// where the program left the default action, so commands with their own graceful stop keep theirs) unlinks
// them and then dies of the signal as before. unlink is async-signal-safe; the std::map above is not, hence
// the copy.
constexpr int kSignalSlots = 32;
constexpr std::size_t kSignalPath = 4096;
char g_signal_paths[kSignalSlots][kSignalPath];
volatile std::sig_atomic_t g_signal_used[kSignalSlots];

extern "C" void remove_locks_and_die(int signal) {
  for (int i = 0; i < kSignalSlots; ++i)
    if (g_signal_used[i]) ::unlink(g_signal_paths[i]);
  std::signal(signal, SIG_DFL);
  std::raise(signal);
}

void install_lock_cleanup() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int s : {SIGINT, SIGTERM}) {
      struct sigaction current {};
      if (::sigaction(s, nullptr, &current) == 0 && current.sa_handler == SIG_DFL)
        std::signal(s, remove_locks_and_die);
    }
  });
}

void remember_for_signals(const std::string& path, bool held) {
  for (int i = 0; i < kSignalSlots; ++i) {
    if (held && !g_signal_used[i] && path.size() < kSignalPath) {
      std::memcpy(g_signal_paths[i], path.c_str(), path.size() + 1);
      g_signal_used[i] = 1;
      return;
    }
    if (!held && g_signal_used[i] && path == g_signal_paths[i]) {
      g_signal_used[i] = 0;
      return;
    }
  }
}

int read_pid(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  return n > 0 ? std::atoi(buf) : 0;
}

bool process_alive(long pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH; }

// Removes temporaries of `target` whose writer is gone (called with the target's lock held).
void remove_stale_temporaries(const fs::path& target) {
  const std::string prefix = temporary_prefix(target.filename().string());
  std::error_code ec;
  for (fs::directory_iterator it(folder_of(target), ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string rest = name.substr(prefix.size());
    long pid = 0, n = 0;
    int used = 0;
    if (std::sscanf(rest.c_str(), "%ld-%ld%n", &pid, &n, &used) != 2 || used != int(rest.size())) continue;
    if (pid == ::getpid() || pid <= 0 || process_alive(pid)) continue;
    std::error_code rec;
    fs::remove(it->path(), rec);
  }
}

void sync_folder(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);  // some file systems refuse fsync on folders (EINVAL); the rename itself has happened
  ::close(fd);
}

thread_local OutputSet* tl_active_set = nullptr;

// Checks a target's folder and the overwrite rule; returns the folder.
fs::path check_target(const std::string& target, bool overwrite) {
  require(!target.empty(), "an output path is empty");
  const fs::path p(target);
  std::error_code ec;
  const fs::path dir = folder_of(p);
  require(fs::is_directory(dir, ec), fmt::format("{}: the folder '{}' does not exist", target, dir.string()));
  require(!p.filename().empty() && p.filename() != "." && p.filename() != "..",
          fmt::format("{}: names a folder; give a file name", target));
  require(p.filename().string().size() <= kNameMax,
          fmt::format("{}: the file name is longer than {} bytes", target, kNameMax));
  const auto st = fs::status(p, ec);
  require(!fs::is_directory(st), fmt::format("{}: is a folder; give a file name", target));
  if (fs::exists(st)) {
    require(overwrite, fmt::format("{}: already exists; pass --force to replace it", target));
    require(
        fs::is_regular_file(st),
        fmt::format("{}: exists and is not a regular file (a device, FIFO or socket); it is never replaced",
                    target));
  }
  return dir;
}

}  // namespace

std::string temporary_name_for(const std::string& target) {
  static std::atomic<int> counter{0};
  const fs::path p(target);
  return (folder_of(p) /
          fmt::format("{}{}-{}", temporary_prefix(p.filename().string()), ::getpid(), counter++))
      .string();
}

void require_regular_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) throw InputError(fmt::format("{}: no such file", path));
    throw InputError(fmt::format("{}: cannot be read: {}", path, errno_text(err)));
  }
  const char* kind = S_ISDIR(st.st_mode)                          ? "a folder"
                     : S_ISFIFO(st.st_mode)                       ? "a FIFO (named pipe)"
                     : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                     : S_ISSOCK(st.st_mode)                       ? "a socket"
                     : S_ISREG(st.st_mode)                        ? nullptr
                                                                  : "a special file";
  if (kind) throw InputError(fmt::format("{}: is {}, not a regular file; give a file", path, kind));
}

// ---- OutputLock ----

OutputLock::OutputLock(const std::string& target) {
  const fs::path p(target);
  const fs::path dir = folder_of(p);
  const std::string lock_path = (dir / sibling_name(p.filename().string(), ".lock", 0)).string();
  key_ = path_key(lock_path);
  std::lock_guard<std::mutex> guard(lock_mutex());
  auto& locks = held_locks();
  if (auto it = locks.find(key_); it != locks.end()) {
    ++it->second.count;
    return;
  }
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
      throw InputError(
          fmt::format("{}: cannot create its lock file in the folder '{}': {} (is the folder "
                      "writable?)",
                      target, dir.string(), errno_text(errno)));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      const int pid = read_pid(fd);
      ::close(fd);
      if (err == EWOULDBLOCK)
        throw InputError(fmt::format(
            "{}: another nfmimo process{} is writing this file; wait for it to finish, or choose another "
            "output",
            target, pid > 0 ? fmt::format(" (pid {})", pid) : ""));
      throw InputError(fmt::format("{}: cannot lock it: {}", target, errno_text(err)));
    }
    // The previous holder may have removed the lock file between our open and flock: then it is not the file
    // that others lock, so start again.
    struct stat held {
    }, now{};
    if (::fstat(fd, &held) != 0 || ::stat(lock_path.c_str(), &now) != 0 || held.st_ino != now.st_ino ||
        held.st_dev != now.st_dev) {
      ::close(fd);
      continue;
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
      // Only the pid shown to a second writer is lost; the lock holds.
    }
    locks[key_] = HeldLock{fd, 1, lock_path};
    install_lock_cleanup();
    remember_for_signals(lock_path, true);
    remove_stale_temporaries(p);
    return;
  }
  throw InputError(fmt::format("{}: cannot lock it (its lock file keeps changing)", target));
}

OutputLock::~OutputLock() {
  std::lock_guard<std::mutex> guard(lock_mutex());
  auto& locks = held_locks();
  auto it = locks.find(key_);
  if (it == locks.end() || --it->second.count > 0) return;
  remember_for_signals(it->second.lock_path, false);
  ::unlink(it->second.lock_path.c_str());  // while still locked, so nobody else can hold this inode
  ::close(it->second.fd);
  locks.erase(it);
}

// ---- OutputSet ----

struct OutputSet::Entry {
  std::string target, key, option, temporary;
  std::unique_ptr<OutputLock> lock;
  bool written = false;
};

OutputSet::OutputSet(bool overwrite) : overwrite_(overwrite), previous_(tl_active_set) {
  tl_active_set = this;
}

OutputSet::~OutputSet() {
  tl_active_set = previous_;
  if (committed_) return;
  for (const auto& e : entries_) {
    std::error_code ec;
    fs::remove(e->temporary, ec);
  }
}

OutputSet* OutputSet::active() { return tl_active_set; }

void OutputSet::add(const std::string& target, const std::string& option,
                    const std::vector<std::string>& inputs) {
  if (target.empty()) return;
  const std::string shown = option.empty() ? target : option + " " + target;
  for (const std::string& input : inputs) {
    if (input.empty()) continue;
    std::error_code ec;
    const bool same = path_key(input) == path_key(target) ||
                      (fs::exists(target, ec) && fs::exists(input, ec) && fs::equivalent(input, target, ec));
    if (same) throw InputError(fmt::format("{}: the output would overwrite the input file", shown));
  }
  const std::string key = path_key(target);
  for (const auto& e : entries_)
    if (e->key == key)
      throw InputError(fmt::format("{}: names the same file as {}; give each output its own name", shown,
                                   e->option.empty() ? e->target : e->option + " " + e->target));
  check_target(target, overwrite_);
  auto e = std::make_unique<Entry>();
  e->target = target;
  e->key = key;
  e->option = option;
  e->lock = std::make_unique<OutputLock>(target);
  e->temporary = temporary_name_for(target);
  entries_.push_back(std::move(e));
}

std::string OutputSet::temporary(const std::string& target) const {
  for (const auto& e : entries_)
    if (e->target == target) return e->temporary;
  return {};
}

void OutputSet::commit() {
  for (const auto& e : entries_)
    if (e->written) sync_file(e->temporary, e->target);
  for (const auto& e : entries_) {
    if (!e->written) continue;
    std::error_code ec;
    fs::rename(e->temporary, e->target, ec);
    if (ec)
      throw InputError(
          fmt::format("{}: cannot move the finished file into place: {}", e->target, ec.message()));
  }
  for (const auto& e : entries_)
    if (e->written) sync_folder(folder_of(e->target));
  committed_ = true;
}

// ---- AtomicOutput ----

AtomicOutput::AtomicOutput(std::string target, bool overwrite) : target_(std::move(target)) {
  if (OutputSet* set = OutputSet::active())
    for (const auto& e : set->entries_)
      if (e->target == target_) {
        staged_ = e.get();
        temporary_ = e->temporary;
        return;
      }
  check_target(target_, overwrite);
  lock_ = std::make_unique<OutputLock>(target_);
  temporary_ = temporary_name_for(target_);
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    std::error_code ec;
    fs::remove(temporary_, ec);
  }
}

void AtomicOutput::commit() {
  if (staged_) {
    staged_->written = true;
    committed_ = true;
    return;
  }
  sync_file(temporary_, target_);
  std::error_code ec;
  fs::rename(temporary_, target_, ec);
  if (ec)
    throw InputError(fmt::format("{}: cannot move the finished file into place: {}", target_, ec.message()));
  committed_ = true;
  sync_folder(folder_of(target_));
}

void require_distinct_paths(const std::string& input, const std::string& output) {
  std::error_code ec;
  if (path_key(input) == path_key(output) || (fs::exists(output, ec) && fs::equivalent(input, output, ec)))
    throw InputError(fmt::format("{}: the output would overwrite the input file", output));
}

void write_file_checked(const std::string& path, const std::string& text, const std::string& shown) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw InputError(fmt::format("{}: cannot create the file: {}", shown, errno_text(errno)));
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      ::close(fd);
      throw InputError(fmt::format("{}: cannot write: {}", shown, errno_text(err)));
    }
    done += std::size_t(n);
  }
  if (::fsync(fd) != 0 && errno != EINVAL) {
    const int err = errno;
    ::close(fd);
    throw InputError(fmt::format("{}: cannot write: {}", shown, errno_text(err)));
  }
  if (::close(fd) != 0) throw InputError(fmt::format("{}: cannot write: {}", shown, errno_text(errno)));
}

void sync_file(const std::string& path, const std::string& shown) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(fmt::format("{}: the written file has gone: {}", shown, errno_text(errno)));
  if (::fsync(fd) != 0 && errno != EINVAL) {
    const int err = errno;
    ::close(fd);
    throw InputError(fmt::format("{}: cannot write: {}", shown, errno_text(err)));
  }
  ::close(fd);
}

std::string write_failure_reason(const char* fallback) {
  const int err = errno;
  return err != 0 ? std::strerror(err) : fallback;
}

void require_companion_name_fits(const std::string& output, const std::string& companion) {
  const fs::path c(companion);
  const std::string folder = folder_of(c).string();
  const long limit_or_error = ::pathconf(folder.c_str(), _PC_NAME_MAX);
  const std::size_t limit = limit_or_error > 0 ? std::size_t(limit_or_error) : 255;
  const std::size_t name = c.filename().string().size(),
                    extra = name - fs::path(output).filename().string().size();
  require(name <= limit,
          fmt::format(
              "{}: this command also writes {} beside it, a name of {} bytes, over the folder's limit of {}; "
              "use an output name of at most {} bytes",
              output, c.filename().string(), name, limit, limit - std::min(limit, extra)));
}

}  // namespace nfmimo
