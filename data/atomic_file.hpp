// Writing outputs without ever leaving a partial file under the final name: write to a temporary sibling,
// then rename over the target (atomic on POSIX). If the writer fails or is abandoned, the temporary file is
// removed and whatever was at the target before is untouched.
#pragma once

#include <string>

namespace nfmimo {

class AtomicOutput {
 public:
  // Refuses (InputError) an existing target unless `overwrite`, and a target whose folder does not exist.
  explicit AtomicOutput(std::string target, bool overwrite = true);
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;
  ~AtomicOutput();

  const std::string& temporary_path() const { return temporary_; }
  const std::string& target() const { return target_; }
  // Renames the temporary file onto the target.
  void commit();

 private:
  std::string target_, temporary_;
  bool committed_ = false;
};

// Throws InputError if `output` names the same file as `input` (would destroy the input).
void require_distinct_paths(const std::string& input, const std::string& output);

}  // namespace nfmimo
