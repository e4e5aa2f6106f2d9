// `nfmimo synthesize` and `nfmimo merge` as a user runs them: bad input (exit code 2, one clear message,
// nothing written), existing outputs, a full disk, interruption by SIGINT and --resume, --stop-after, shards
// + merge,
// --system-file, and h5py reading a dataset.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "data/measurement_file.hpp"
#include "kernels/device.hpp"
#include "synthesizer/dataset.hpp"

extern char** environ;

namespace nfmimo {
namespace {

namespace fs = std::filesystem;

struct Result {
  int code;
  std::string output;
};

// Runs a shell command line, capturing stdout and stderr together.
Result shell(const std::string& command) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  const int status = p ? pclose(p) : -1;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

Result nfmimo(const std::string& args) { return shell(std::string(NFMIMO_BINARY_PATH) + " " + args); }

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            fmt::format("nfmimo-cli-{}-{}", ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                        getpid());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// Small and quick: K = 5 and a coarse grid over the paper's volume.
const std::string kSmall = "--freqs 5 --grid -0.15:0.15:13,-0.15:0.15:13,0.35:0.65:25 --device cpu";

void expect_same_contents(const std::string& a, const std::string& b) {
  const MeasurementSet x = read_measurements(a), y = read_measurements(b);
  ASSERT_EQ(x.frames, y.frames);
  EXPECT_TRUE(x.targets == y.targets);
  EXPECT_TRUE(x.measurements == y.measurements);
  EXPECT_TRUE(x.snr_db == y.snr_db);
}

TEST(SynthesizeCli, BadInputIsExitCode2WithOneClearMessageAndNoFile) {
  const TempDir dir;
  {
    std::ofstream(dir / "sphere.json") << R"({"types": {"ellipsoid": 1, "sphere": 2}})";
    std::ofstream(dir / "typo.json") << R"({"object": 3})";
  }
  const std::string out = dir / "out.h5";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--count 0", "--count must be in 1..1099511627776 (got 0)"},
      {"--count -5", "--count must be in 1..1099511627776 (got -5)"},
      {"--count abc", "--count"},
      {"", "--count is required"},
      {"--count 4 --snr abc", "--snr: 'abc' is not a number of dB"},
      {"--count 4 --snr 30:x", "is not a number of dB"},
      {"--count 4 --snr 40:10", "MIN <= MAX"},
      {"--count 4 --shard 3/2", "out of range"},
      {"--count 4 --shard 1", "is not i/n"},
      {"--count 4 --shard 0/8", "would leave shards empty"},
      {"--count 4 --config " + dir / "sphere.json", "unknown object type 'sphere'"},
      {"--count 4 --config " + dir / "typo.json", "unknown key 'object'"},
      {"--count 4 --config " + dir / "missing.json", "missing.json: no such file"},
      {"--count 4 --types ellipsoid,cube", "unknown object type 'cube'"},
      {"--count 4 --objects 0:3", "objects per scene"},
      {"--count 4 --phase wild", "--phase"},
      {"--count 4 --smooth 2", "smooth_magnitude"},
      {"--count 4 --seed -1", "--seed must be a non-negative integer"},
      {"--count 4 --gzip 12", "--gzip"},
      {"--resume", "--count is required"},
      {"--count 4 --resume --force", "exclude each other"},
      {"--count 4 --system nosuch", "unknown system 'nosuch'"},
  };
  for (const auto& [args, message] : cases) {
    const Result r = nfmimo(fmt::format("synthesize --out {} {} {}", out, kSmall, args));
    EXPECT_EQ(r.code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << args << ": expected '" << message << "' in\n"
                                                         << r.output;
    EXPECT_FALSE(fs::exists(out)) << args;
    EXPECT_FALSE(fs::exists(out + ".partial")) << args;
  }
  Result r = nfmimo(fmt::format("synthesize --out {} --count 4 {}", dir / "no/such/folder/x.h5", kSmall));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
  r = nfmimo(fmt::format("synthesize --out {} --count 4 --system-file {}", out, dir / "missing.h5"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("no such file"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
}

TEST(SynthesizeCli, GpuRequestWithoutGpuIsAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present";
  const TempDir dir;
  const Result r = nfmimo(fmt::format("synthesize --out {} --count 2 --freqs 5 --device cuda", dir / "x.h5"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("cuda"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "x.h5"));
}

TEST(SynthesizeCli, ExistingOutputNeedsForceOrResume) {
  const TempDir dir;
  const std::string out = dir / "a.h5";
  ASSERT_EQ(nfmimo(fmt::format("synthesize --out {} --count 3 {}", out, kSmall)).code, 0);
  const auto size = fs::file_size(out);
  const auto time = fs::last_write_time(out);
  Result r = nfmimo(fmt::format("synthesize --out {} --count 3 --seed 2 {}", out, kSmall));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("already exists"), std::string::npos) << r.output;
  EXPECT_EQ(fs::file_size(out), size);
  EXPECT_EQ(fs::last_write_time(out), time);
  r = nfmimo(fmt::format("synthesize --out {} --resume", out));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("already complete"), std::string::npos) << r.output;
  r = nfmimo(fmt::format("synthesize --out {} --count 3 --seed 2 --force {}", out, kSmall));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(read_dataset_info(out).spec.seed, 2u);
}

// A full disk (the file-size limit stands in for it: the same checks and the same write(2) failure) is exit
// code 2 with a message that says what happened; OUT never appears. Uncompressed runs that cannot fit fail
// before they start; a run that fills the disk on the way stops cleanly before the batch that would not fit,
// and its partial file resumes once there is room.
TEST(SynthesizeCli, FullDiskIsAnErrorAndNothingIsPresentedAsComplete) {
  const TempDir dir;
  const std::string out = dir / "full.h5";
  auto limited = [&](const std::string& args) {
    return shell(fmt::format("bash -c 'ulimit -f 1500; trap \"\" XFSZ; exec {} synthesize --out {} {} {}'",
                             NFMIMO_BINARY_PATH, out, kSmall, args));
  };
  Result r = limited("--count 200 --batch 4");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("the disk is too full for this run"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".partial"));

  r = limited("--count 300 --batch 4 --gzip 1");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("the disk is full"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--resume"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
  const DatasetInfo info = read_dataset_info(out + ".partial");
  EXPECT_GT(info.rows, 0);
  EXPECT_LT(info.rows, 300);
  r = nfmimo(fmt::format("synthesize --out {} --resume", out));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(read_dataset_info(out).rows, 300);
}

// --stop-after leaves a valid partial file; --resume without the generation options continues it from the
// stored settings, to the same contents as an uninterrupted run.
TEST(SynthesizeCli, StopAfterThenResume) {
  const TempDir dir;
  const std::string args = fmt::format("--count 7 --seed 5 --snr 10:20 --batch 2 {}", kSmall);
  ASSERT_EQ(nfmimo(fmt::format("synthesize --out {} {}", dir / "whole.h5", args)).code, 0);
  Result r = nfmimo(fmt::format("synthesize --out {} {} --stop-after 3", dir / "part.h5", args));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("--resume"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "part.h5"));
  EXPECT_EQ(read_measurements(dir / "part.h5.partial").frames, 3);
  r = nfmimo(fmt::format("synthesize --out {} --seed 6 --resume", dir / "part.h5"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("seed differs"), std::string::npos) << r.output;
  r = nfmimo(fmt::format("synthesize --out {} --resume --device cpu", dir / "part.h5"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_FALSE(fs::exists(dir / "part.h5.partial"));
  expect_same_contents(dir / "whole.h5", dir / "part.h5");
}

// SIGINT stops a run after the batch in progress with exit code 130 and a resumable partial file (or, if the
// run was already done, it completes normally); --resume then gives the uninterrupted run's contents.
TEST(SynthesizeCli, InterruptedBySigintResumes) {
  const TempDir dir;
  const std::string out = dir / "run.h5";
  const std::vector<std::string> args = {NFMIMO_BINARY_PATH,
                                         "--threads",
                                         "1",
                                         "synthesize",
                                         "--out",
                                         out,
                                         "--count",
                                         "400",
                                         "--batch",
                                         "4",
                                         "--freqs",
                                         "15",
                                         "--grid",
                                         "-0.15:0.15:13,-0.15:0.15:13,0.35:0.65:25",
                                         "--device",
                                         "cpu"};
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  ASSERT_EQ(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ), 0);
  // Wait until the partial file has some samples, then interrupt.
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
    std::error_code ec;
    if (fs::exists(out) || (fs::exists(out + ".partial") && fs::file_size(out + ".partial", ec) > 200000))
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  const int code = WEXITSTATUS(status);
  if (code == 130) {
    EXPECT_FALSE(fs::exists(out));
    const DatasetInfo info = read_dataset_info(out + ".partial");
    EXPECT_FALSE(info.complete);
    EXPECT_GT(info.rows, 0);
    EXPECT_LT(info.rows, 400);
    std::printf("[ interrupted ] after %lld of 400 samples\n", static_cast<long long>(info.rows));
  } else {
    EXPECT_EQ(code, 0) << "the run finished before the signal";
  }
  const Result r = nfmimo(fmt::format("synthesize --out {} --resume --device cpu", out));
  EXPECT_EQ(r.code, 0) << r.output;
  ASSERT_TRUE(fs::exists(out));
  EXPECT_TRUE(read_dataset_info(out).complete);
  // The reference: the same run uninterrupted.
  ASSERT_EQ(nfmimo(fmt::format("synthesize --out {} --count 400 --freqs 15 --grid "
                               "-0.15:0.15:13,-0.15:0.15:13,0.35:0.65:25 --device cpu",
                               dir / "ref.h5"))
                .code,
            0);
  expect_same_contents(dir / "ref.h5", out);
}

TEST(SynthesizeCli, ShardsAndMerge) {
  const TempDir dir;
  const std::string args = fmt::format("--count 9 --seed 3 --gzip 1 {}", kSmall);
  ASSERT_EQ(nfmimo(fmt::format("synthesize --out {} {}", dir / "all.h5", args)).code, 0);
  for (int i = 0; i < 2; ++i)
    ASSERT_EQ(
        nfmimo(fmt::format("synthesize --out {} --shard {}/2 {}", dir / fmt::format("s{}.h5", i), i, args))
            .code,
        0);
  Result r = nfmimo(fmt::format("merge --out {} {}", dir / "merged.h5", dir / "s0.h5"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("missing"), std::string::npos) << r.output;
  r = nfmimo(fmt::format("merge --out {} {} {}", dir / "merged.h5", dir / "s1.h5", dir / "s0.h5"));
  EXPECT_EQ(r.code, 0) << r.output;
  expect_same_contents(dir / "all.h5", dir / "merged.h5");
  r = nfmimo(fmt::format("merge --out {} {} {}", dir / "s0.h5", dir / "s1.h5", dir / "s0.h5"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("would overwrite the input"), std::string::npos) << r.output;
}

// The system from a file (positions and frequencies); the dataset is then usable by the rest of the tools.
TEST(SynthesizeCli, SystemFromFileAndReconstruct) {
  const TempDir dir;
  ASSERT_EQ(
      nfmimo(
          fmt::format("simulate --points 0,0,0.5,1 --freqs 7 --grid -0.15:0.15:11,-0.15:0.15:11,0.35:0.65:21 "
                      "--out {}",
                      dir / "sys.h5"))
          .code,
      0);
  Result r = nfmimo(fmt::format("synthesize --out {} --count 3 --system-file {} --device cpu", dir / "d.h5",
                                dir / "sys.h5"));
  ASSERT_EQ(r.code, 0) << r.output;
  const DatasetInfo info = read_dataset_info(dir / "d.h5");
  EXPECT_EQ(info.spec.system.frequencies(), 7);
  EXPECT_EQ(info.spec.grid.x().size, 11);
  r = nfmimo(fmt::format("reconstruct {} --out {} --device cpu", dir / "d.h5", dir / "r.h5"));
  EXPECT_EQ(r.code, 0) << r.output;
  r = nfmimo(fmt::format("info {}", dir / "d.h5"));
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("complete      1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"snr_db\""), std::string::npos) << r.output;
}

// Python's h5py (Debian's /usr/bin/python3) reads a dataset: shapes, complex dtype, attributes, the stored
// JSON configuration, targets scaled to a unit peak.
TEST(SynthesizeCli, H5pyReadsDataset) {
  if (shell("/usr/bin/python3 -c 'import h5py, numpy'").code != 0)
    GTEST_SKIP() << "python3-h5py is not installed";
  const TempDir dir;
  ASSERT_EQ(
      nfmimo(fmt::format("synthesize --out {} --count 5 --snr 20:30 --gzip 2 {}", dir / "d.h5", kSmall)).code,
      0);
  std::ofstream(dir / "check.py") << R"(
import json, sys
import h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f.attrs["nfmimo_format"] == "measurements", f.attrs["nfmimo_format"]
assert f.attrs["complete"] == 1 and f.attrs["count"] == 5 and f.attrs["shard"] == "0/1"
config = json.loads(f.attrs["synthesizer_config"])
assert config["snr_db"] == {"min": 20.0, "max": 30.0}, config
m, t, s = f["measurements"][()], f["targets"][()], f["snr_db"][()]
assert m.dtype == np.complex64 and t.dtype == np.complex64, (m.dtype, t.dtype)
assert m.shape == (5, 5, 12, 13) and t.shape == (5, 13, 13, 25) and s.shape == (5,), (m.shape, t.shape, s.shape)
assert np.allclose(np.abs(t).reshape(5, -1).max(axis=1), 1, atol=1e-6)
assert ((s >= 20) & (s <= 30)).all(), s
assert f["system/tx_positions"].shape == (12, 3) and f["grid/z"].shape == (25,)
print("h5py ok")
)";
  const Result r = shell(fmt::format("/usr/bin/python3 {} {}", dir / "check.py", dir / "d.h5"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("h5py ok"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace nfmimo
