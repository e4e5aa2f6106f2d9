// Running the real `nfmimo` binary from tests, and scratch folders that clean up after themselves.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include <gtest/gtest.h>

namespace nfmimo::test {

struct CliResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

inline CliResult run_command(const std::string& command) {
  CliResult r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  while (std::fgets(buf.data(), buf.size(), p)) r.output += buf.data();
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Where the `nfmimo` CLI is. The path CMake bakes in (NFMIMO_BINARY_PATH) is right only in the build tree
// that made the test; on the GPU machine the binaries travel in a bundle (tools/scripts/device_bundle.sh) and
// land elsewhere. In order: $NFMIMO_BINARY (the device script sets it), `nfmimo` beside the test binary (the
// bundle's bin/), `nfmimo` one folder up (build/tests/test_x -> build/nfmimo), then the baked path.
inline std::string resolve_cli_binary(const char* env, const std::filesystem::path& self,
                                      const std::string& baked) {
  if (env && *env) return env;
  const auto dir = self.parent_path();
  for (const auto& candidate : {dir / "nfmimo", dir.parent_path() / "nfmimo"}) {
    std::error_code ec;
    if (!dir.empty() && std::filesystem::is_regular_file(candidate, ec)) return candidate.string();
  }
  return baked;
}

inline std::string cli_binary() {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return resolve_cli_binary(std::getenv("NFMIMO_BINARY"), ec ? std::filesystem::path() : self,
                            NFMIMO_BINARY_PATH);
}

inline CliResult run_cli(const std::string& args) { return run_command(cli_binary() + " " + args); }

inline std::string python() { return "/usr/bin/python3"; }

// A fresh folder under the system temp dir, removed at the end of the test.
class ScratchDir {
 public:
  ScratchDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("nfmimo-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }
  // Files in the folder (to check that failures leave nothing behind, temporaries included).
  std::size_t file_count() const {
    std::size_t n = 0;
    for (auto& e : std::filesystem::directory_iterator(path_)) n += e.is_regular_file();
    return n;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace nfmimo::test
