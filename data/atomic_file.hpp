// Writing outputs so that nothing the user had is lost and no partial file is ever left under a final name.
//
// - Every output is written to a temporary sibling, synced to the disk (fsync) and renamed over the target
//   (atomic on POSIX). If the writer fails or is abandoned, the temporary file is removed and whatever was at
//   the target before is untouched.
// - A command with several outputs (a volume file, its PNG and its VTK file) stages them in one OutputSet:
//   every check (folder, overwrite rule, collisions between outputs and with inputs, lock) happens before any
//   work, every file is written and synced to its temporary, and only when all of them succeeded are they
//   renamed, so the outputs of one command appear together or not at all.
// - Each output is locked (an exclusive flock on a hidden lock file next to it, removed when released) for as
//   long as it is being written, so two nfmimo processes never write the same file: the second one stops at
//   once with a message naming the first one's process id. While a process holds the lock no live nfmimo can
//   own a temporary of that output, so temporaries left by a killed run (SIGKILL, a second Ctrl-C) are
//   removed then.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace nfmimo {

// Refuses (InputError) an input path that is missing or is not a regular file (a FIFO would block forever, a
// device or folder never ends or makes no sense): "PATH: is a FIFO, not a regular file".
void require_regular_file(const std::string& path);

// The exclusive lock on one output (see above). Re-entrant within a process: a second lock on the same output
// in the same process shares the first. Throws InputError when another process holds it, or when no lock file
// can be made next to the output (a read-only or missing folder).
class OutputLock {
 public:
  explicit OutputLock(const std::string& target);
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;
  ~OutputLock();

 private:
  std::string key_;
};

// The outputs of one command, committed together (see above). While an OutputSet is alive it is the thread's
// active set: an AtomicOutput made (by any writer) for a target staged here writes to the staged temporary
// and leaves the rename to OutputSet::commit, so the writers need not know about the set.
class OutputSet {
 public:
  // overwrite: existing targets may be replaced (--force).
  explicit OutputSet(bool overwrite);
  OutputSet(const OutputSet&) = delete;
  OutputSet& operator=(const OutputSet&) = delete;
  ~OutputSet();  // an uncommitted set removes its temporaries; existing targets stay untouched

  // Stages a target: refuses a missing folder, a folder as target, an existing file without overwrite, a
  // target that is one of `inputs` or that another output of the set already names (`option` names the
  // option that gave it, for messages), and locks it. Empty targets are ignored.
  void add(const std::string& target, const std::string& option = "",
           const std::vector<std::string>& inputs = {});
  // The temporary file for a staged target (empty if not staged).
  std::string temporary(const std::string& target) const;
  // Syncs every temporary that was written, then renames them all onto their targets and syncs the folders.
  // Throws InputError (temporaries removed) when a file is missing or cannot be synced.
  void commit();

  static OutputSet* active();

 private:
  struct Entry;
  bool overwrite_;
  bool committed_ = false;
  std::vector<std::unique_ptr<Entry>> entries_;
  OutputSet* previous_ = nullptr;
  friend class AtomicOutput;
};

class AtomicOutput {
 public:
  // Refuses (InputError) an existing target unless `overwrite`, and a target whose folder does not exist.
  // Locks the target until destroyed.
  explicit AtomicOutput(std::string target, bool overwrite = true);
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;
  ~AtomicOutput();

  const std::string& temporary_path() const { return temporary_; }
  const std::string& target() const { return target_; }
  // Syncs the temporary file and renames it onto the target (for a target staged in the active OutputSet:
  // marks it finished; the set renames it).
  void commit();

 private:
  std::string target_, temporary_;
  bool committed_ = false;
  std::unique_ptr<OutputLock> lock_;
  OutputSet::Entry* staged_ = nullptr;
};

// The temporary-file name AtomicOutput uses for a target (a hidden sibling; short enough for any legal name).
std::string temporary_name_for(const std::string& target);

// Throws InputError if `output` names the same file as `input` (would destroy the input).
void require_distinct_paths(const std::string& input, const std::string& output);

// Writes `text` to `path` (a temporary of an AtomicOutput) checking every write and the close, so a full disk
// is an InputError "PATH: cannot write: No space left on device" rather than a short file. `shown` is the
// name used in messages (the final target, not the temporary).
void write_file_checked(const std::string& path, const std::string& text, const std::string& shown);

// Syncs a written file to the disk; InputError naming `shown` with the reason on failure (for example "No
// space left on device" from a file system that allocates late).
void sync_file(const std::string& path, const std::string& shown);

// The operating system's reason for the last failed write ("No space left on device") from errno, or the
// fallback when errno says nothing. Call it right after the failure, before anything else can change errno.
std::string write_failure_reason(const char* fallback = "is the disk full?");

// A command that keeps a named companion of its output (OUT.partial, OUT.log.csv) checks before any work that
// the companion's name fits the folder's file-name limit (255 bytes on most file systems); otherwise an
// InputError says how long --out may be.
void require_companion_name_fits(const std::string& output, const std::string& companion);

}  // namespace nfmimo
