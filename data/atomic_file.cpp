#include "data/atomic_file.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

#include "radar/error.hpp"

namespace nfmimo {

namespace fs = std::filesystem;

AtomicOutput::AtomicOutput(std::string target, bool overwrite) : target_(std::move(target)) {
  require(!target_.empty(), "an output path is empty");
  const fs::path p(target_);
  std::error_code ec;
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  require(fs::is_directory(dir, ec),
          fmt::format("{}: the folder '{}' does not exist", target_, dir.string()));
  require(!fs::is_directory(p, ec), fmt::format("{}: is a folder; give a file name", target_));
  require(overwrite || !fs::exists(p, ec),
          fmt::format("{}: already exists; pass --force to replace it", target_));
  static std::atomic<int> counter{0};
  temporary_ = (dir / fmt::format(".{}.tmp-{}-{}", p.filename().string(), ::getpid(), counter++)).string();
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    std::error_code ec;
    fs::remove(temporary_, ec);
  }
}

void AtomicOutput::commit() {
  std::error_code ec;
  fs::rename(temporary_, target_, ec);
  if (ec)
    throw InputError(fmt::format("{}: cannot move the finished file into place: {}", target_, ec.message()));
  committed_ = true;
}

void require_distinct_paths(const std::string& input, const std::string& output) {
  std::error_code ec;
  if (fs::exists(output, ec) && fs::equivalent(input, output, ec))
    throw InputError(fmt::format("{}: the output would overwrite the input file", output));
}

}  // namespace nfmimo
