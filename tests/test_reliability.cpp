// Hostile input, concurrent runs and resource limits (issue 11, "Defects found" 1-12), end to end through the
// real binary: every case exits 2 with one message saying what to change, and leaves no file behind.
//
// Full-disk and read-only cases mount a small tmpfs (a real file system that runs out of space or refuses
// writes; root only): they are skipped, and say so, where mounting is not allowed.
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <hdf5.h>

#include "data/hdf5.hpp"
#include "data/measurement_file.hpp"
#include "radar/simulation.hpp"
#include "tests/cli_util.hpp"

namespace nfmimo {
namespace {

namespace fs = std::filesystem;
using test::run_cli;
using test::ScratchDir;

const std::string kSmallGrid = "\"-0.1:0.1:5,-0.1:0.1:5,0.4:0.6:5\"";

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Every file in a folder, hidden ones included (temporaries, lock files).
std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + " ";
  return s;
}

std::string simulate(const ScratchDir& dir, const std::string& name = "p.h5") {
  const auto r =
      run_cli("simulate --points \"0,0,0.5,1\" --freqs 5 --grid " + kSmallGrid + " --out " + (dir / name));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return dir / name;
}

// A tmpfs of `kib` KiB mounted on a fresh folder for the test's lifetime.
class SmallFileSystem {
 public:
  SmallFileSystem(const ScratchDir& dir, int kib, bool read_only = false) : path_(dir / "mnt") {
    fs::create_directories(path_);
    const std::string options = "size=" + std::to_string(kib) + "k";
    mounted_ = ::mount("tmpfs", path_.c_str(), "tmpfs", read_only ? MS_RDONLY : 0, options.c_str()) == 0;
  }
  ~SmallFileSystem() {
    if (mounted_) ::umount(path_.c_str());
  }
  bool mounted() const { return mounted_; }
  std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool mounted_ = false;
};

// 1. Two writers of one output: the second stops at once, naming the first's pid; --force never removes the
// first one's partial file; the first run is still interruptible and resumable.
TEST(Reliability, SecondWriterOfAnOutputIsRefused) {
  ScratchDir dir;
  const std::string out = dir / "s.h5";
  const std::string first = std::string(NFMIMO_BINARY_PATH) + " --threads 1 synthesize --out " + out +
                            " --count 1000000 --batch 1 --freqs 5 --grid " + kSmallGrid + " > " +
                            (dir / "first.log") + " 2>&1 & echo $!";
  const auto started = test::run_command(first);
  const int pid = std::stoi(started.output);
  // Wait until the first run holds its lock and has made its partial file.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!(fs::exists(dir / ".s.h5.lock") && fs::exists(out + ".partial")) &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(fs::exists(out + ".partial"));
  auto r = run_cli("synthesize --out " + out + " --count 10 --freqs 5 --grid " + kSmallGrid);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "another nfmimo process (pid " + std::to_string(pid) + ")")) << r.output;
  r = run_cli("synthesize --force --out " + out + " --count 10 --freqs 5 --grid " + kSmallGrid);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "another nfmimo process")) << r.output;
  EXPECT_TRUE(fs::exists(out + ".partial")) << "--force must not remove a live writer's file";
  ::kill(pid, SIGINT);
  for (int i = 0; i < 600 && ::kill(pid, 0) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(fs::exists(out + ".partial"));
  EXPECT_FALSE(fs::exists(dir / ".s.h5.lock")) << "the lock file goes with its holder";
  // The interrupted run resumes (with fewer samples it is refused: the settings must match, so just stop
  // again at once).
  r = run_cli("synthesize --resume --out " + out + " --stop-after 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// 2, 8, 9. A full disk: every writer reports the reason, exits 2 and leaves nothing (merge used to exit 0
// with a corrupt file; reconstruct left its first outputs; bench wrote 0 bytes with exit 0).
TEST(Reliability, FullDiskFailsCleanly) {
  ScratchDir dir;
  SmallFileSystem disk(dir, 48);
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (not root?): the full-disk cases need one";
  const std::string p = simulate(dir);
  for (const char* shard : {"0/2", "1/2"}) {
    const auto r = run_cli(std::string("synthesize --count 8 --freqs 5 --grid ") + kSmallGrid + " --shard " +
                           shard + " --out " + (dir / (std::string("s") + shard[0] + ".h5")));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  // Fill most of the disk so that every writer below runs out of space mid-way.
  { std::ofstream(disk / "filler", std::ios::binary) << std::string(40 * 1024, 'x'); }
  const std::vector<std::string> before = listing(disk.path());
  auto r = run_cli("merge " + (dir / "s0.h5") + " " + (dir / "s1.h5") + " --out " + (disk / "m.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "No space left on device")) << r.output;
  EXPECT_EQ(listing(disk.path()), before) << joined(listing(disk.path()));

  r = run_cli("reconstruct " + p + " --out " + (disk / "v.h5") + " --png " + (disk / "v.png") + " --vti " +
              (disk / "v.vti"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "No space left on device")) << r.output;
  EXPECT_EQ(listing(disk.path()), before) << joined(listing(disk.path()));

  fs::remove(disk / "filler");
  { std::ofstream(disk / "filler", std::ios::binary) << std::string(47 * 1024, 'x'); }
  r = run_cli("bench --quick --methods adjoint --modes exact --batch 1 --device cpu --freqs 5 --grid " +
              kSmallGrid + " --json " + (disk / "b.json"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "No space left on device")) << r.output;
  EXPECT_FALSE(fs::exists(disk / "b.json"));
}

// 3.
TEST(Reliability, ThreadsAreCapped) {
  ScratchDir dir;
  const std::string p = simulate(dir);
  for (const char* n : {"65536", "10000", "-1"}) {
    const auto r = run_cli(std::string("--threads ") + n + " info " + p);
    EXPECT_EQ(r.exit_code, 2) << n << ": " << r.output;
    EXPECT_TRUE(contains(r.output, "--threads")) << r.output;
  }
  EXPECT_EQ(run_cli("--threads 1 info " + p).exit_code, 0);
}

// 4. Declared sizes are believed only once they fit: a small file declaring 1e9 frequencies is refused by
// name, a huge --freqs too, and evaluate --frames 1 reads one frame of a file declaring 1e8.
TEST(Reliability, HugeDeclaredSizesAreRefusedOrNotRead) {
  ScratchDir dir;
  const std::string p = simulate(dir);
  const std::string big = dir / "big.h5";
  fs::copy_file(p, big);
  {
    h5::File f(big, h5::File::Mode::ReadWrite);
    H5Ldelete(f.id(), "/system/frequencies", H5P_DEFAULT);
    const hsize_t dims[1] = {1000000000}, chunk[1] = {1024};
    const hid_t space = H5Screate_simple(1, dims, nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, chunk);
    const hid_t d =
        H5Dcreate2(f.id(), "/system/frequencies", H5T_NATIVE_DOUBLE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
  }
  ASSERT_LT(fs::file_size(big), 1u << 20);
  auto r = run_cli("reconstruct " + big + " --out " + (dir / "v.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "/system/frequencies")) << r.output;
  EXPECT_TRUE(contains(r.output, "1000000000")) << r.output;

  r = run_cli("simulate --points \"0,0,0.5,1\" --freqs 2000000000 --out " + (dir / "q.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--freqs")) << r.output;

  // 1e8 frames declared (624 GB), one written: evaluate --frames 1 must read only that one.
  const std::string many = dir / "many.h5";
  {
    MeasurementSet m;
    m.system = paper_system(5);
    m.grid =
        ImagingGrid(Axis::linspace(-0.1, 0.1, 5), Axis::linspace(-0.1, 0.1, 5), Axis::linspace(0.4, 0.6, 5));
    m.frames = 1;
    m.measurements = point_measurements(m.system, {{{0, 0, 0.5}, 1.0}});
    m.targets.assign(m.grid->voxels(), cfloat(0));
    m.targets[m.grid->index(2, 2, 2)] = 1;
    h5::File f(many, h5::File::Mode::Create);
    f.set_attribute("/", "nfmimo_format", std::string("measurements"));
    f.set_attribute("/", "nfmimo_version", 1LL);
    write_system(f, m.system);
    write_grid(f, *m.grid);
    h5::WriteOptions wo;
    wo.extendable = true;
    f.write<cfloat>("/measurements", {1, 5, 12, 13}, m.measurements.data(), wo);
    f.write<cfloat>("/targets", {1, 5, 5, 5}, m.targets.data(), wo);
    f.resize_rows("/measurements", 100000000);
    f.resize_rows("/targets", 100000000);
  }
  r = run_cli("evaluate --data " + many + " --frames 1 --methods adjoint");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "on 1 frame")) << r.output;
}

// 5. Integer options are whole numbers that fit: no clamping, no 1e18, no wrap-around.
TEST(Reliability, IntegerOptionsAreStrict) {
  ScratchDir dir;
  for (const char* count : {"99999999999999999999", "1e18", "12.5", "0x10"}) {
    const auto r = run_cli(std::string("synthesize --count ") + count + " --out " + (dir / "s.h5"));
    EXPECT_EQ(r.exit_code, 2) << count << ": " << r.output;
    EXPECT_TRUE(contains(r.output, "--count")) << r.output;
  }
  auto r = run_cli("synthesize --count 1000000000000000000 --out " + (dir / "s.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--count must be in")) << r.output;
  r = run_cli("train --arch unet3d --synthesize --epochs 1 --epoch-size 1000000000000 --out " +
              (dir / "w.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--epoch-size")) << r.output;
  EXPECT_EQ(dir.file_count(), 0u);
}

// 6. Noise that would overflow, or NaN meaning "no noise", is refused before any work.
TEST(Reliability, UnusableSnrIsRefused) {
  ScratchDir dir;
  for (const char* snr : {"-800", "nan", "inf", "1e300"}) {
    auto r =
        run_cli(std::string("simulate --points \"0,0,0.5,1\" --snr ") + snr + " --out " + (dir / "q.h5"));
    EXPECT_EQ(r.exit_code, 2) << snr << ": " << r.output;
    EXPECT_TRUE(contains(r.output, "SNR")) << r.output;
    r = run_cli(std::string("synthesize --count 2 --snr ") + snr + " --out " + (dir / "s.h5"));
    EXPECT_EQ(r.exit_code, 2) << snr << ": " << r.output;
  }
  EXPECT_EQ(dir.file_count(), 0u);
  EXPECT_EQ(run_cli("simulate --points \"0,0,0.5,1\" --snr -20 --out " + (dir / "q.h5")).exit_code, 0);
}

// 7.
TEST(Reliability, CollidingOutputPathsAreRefused) {
  ScratchDir dir;
  const std::string p = simulate(dir);
  const std::size_t files = dir.file_count();
  auto r = run_cli("reconstruct " + p + " --out " + (dir / "v.h5") + " --png " + (dir / "v.h5") + " --force");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "names the same file")) << r.output;
  r = run_cli("reconstruct " + p + " --out " + (dir / "v.h5") + " --png " + (dir / "x") + " --vti " +
              (dir / "./x"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "names the same file")) << r.output;
  r = run_cli("evaluate --data " + p + " --json " + (dir / "r") + " --csv " + (dir / "r"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "names the same file")) << r.output;
  EXPECT_EQ(dir.file_count(), files);
}

// 8. The outputs of one command appear together or not at all; temporaries of killed runs are cleaned up.
TEST(Reliability, FailedCommandsLeaveNoFiles) {
  ScratchDir dir;
  const std::string p = simulate(dir);
  SmallFileSystem read_only(dir, 64, true);
  if (read_only.mounted()) {
    const auto r = run_cli("reconstruct " + p + " --out " + (dir / "v.h5") + " --png " + (dir / "v.png") +
                           " --vti " + (read_only / "x.vti"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "x.vti")) << r.output;
    EXPECT_FALSE(fs::exists(dir / "v.h5"));
    EXPECT_FALSE(fs::exists(dir / "v.png"));
    // train refuses a read-only output folder before it makes its validation set (it used to after an epoch).
    const auto t = run_cli("train --arch unet3d --synthesize --epochs 1 --out " + (read_only / "w.h5"));
    EXPECT_EQ(t.exit_code, 2) << t.output;
    EXPECT_TRUE(contains(t.output, "Read-only file system")) << t.output;
    EXPECT_FALSE(contains(t.output, "making the validation set")) << t.output;
  } else {
    std::printf("[ note ] read-only case skipped: cannot mount a tmpfs here\n");
  }
  auto r = run_cli("synthesize --count 4 --batch 1000000000 --out " + (dir / "s.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--batch")) << r.output;
  EXPECT_FALSE(fs::exists(dir / "s.h5.partial"));
  // A temporary left by a killed writer (a second Ctrl-C in train, SIGKILL) is removed by the next writer of
  // that output; pid 999999999 is above any pid_max.
  const std::string stale = dir / ".w.h5.tmp-999999999-0";
  std::ofstream(stale) << "half a file";
  r = run_cli("simulate --points \"0,0,0.5,1\" --freqs 5 --out " + (dir / "w.h5"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_EQ(joined(listing(dir.path())).find(".tmp-"), std::string::npos) << joined(listing(dir.path()));
}

// 9.
TEST(Reliability, BenchJsonNeedsForce) {
  ScratchDir dir;
  std::ofstream(dir / "b.json") << "{\"mine\": 1}\n";
  const std::string args =
      "bench --quick --methods adjoint --modes exact --batch 1 --device cpu --freqs 5 --grid " + kSmallGrid +
      " --json " + (dir / "b.json");
  auto r = run_cli(args);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "already exists")) << r.output;
  EXPECT_FALSE(contains(r.output, "bench: measuring")) << "refused before any work: " << r.output;
  std::ifstream in(dir / "b.json");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "{\"mine\": 1}\n");
  EXPECT_EQ(run_cli(args + " --force").exit_code, 0);
}

// 10. Valid input that used to be refused.
TEST(Reliability, NullPaddedAttributesAndLongNamesWork) {
  ScratchDir dir;
  const std::string p = simulate(dir);
  {
    // A fixed-length NULLPAD string exactly as long as its text (MATLAB, some h5py writers).
    h5::File f(p, h5::File::Mode::ReadWrite);
    H5Adelete(f.id(), "nfmimo_format");
    const std::string text = "measurements";
    const hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, text.size());
    H5Tset_strpad(type, H5T_STR_NULLPAD);
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t a = H5Acreate2(f.id(), "nfmimo_format", type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, type, text.data());
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
  }
  auto r = run_cli("info " + p);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // A legal 250-byte name (the temporary name must not pass 255 bytes).
  const std::string name = std::string(247, 'n') + ".h5";
  r = run_cli("reconstruct " + p + " --out " + (dir / name));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir / name));
}

// 11. Inputs that are not regular files are refused at once (a FIFO used to block for ever).
TEST(Reliability, NonRegularInputsAreRefused) {
  ScratchDir dir;
  const std::string fifo = dir / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string timeout = "timeout 20 ";
  for (const std::string& input :
       {fifo, std::string("/dev/zero"), std::string("/dev/null"), dir.path().string()}) {
    auto r = test::run_command(timeout + NFMIMO_BINARY_PATH + " reconstruct " + input + " --out " +
                               (dir / "v.h5"));
    EXPECT_EQ(r.exit_code, 2) << input << ": " << r.output;
    EXPECT_TRUE(contains(r.output, "not a regular file")) << r.output;
  }
  auto r = test::run_command(timeout + NFMIMO_BINARY_PATH + " synthesize --count 1 --config " + fifo +
                             " --out " + (dir / "s.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "FIFO")) << r.output;
  r = test::run_command(timeout + NFMIMO_BINARY_PATH + " info " + fifo);
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

// 12. Smaller ones: every value is checked before any work, and nothing is silently ignored.
TEST(Reliability, InvalidValuesAreRefusedBeforeWork) {
  ScratchDir dir;
  const std::string p = simulate(dir);
  // A bad /targets is refused by reconstruct too (formats.md: "/targets matching N and the grid").
  {
    h5::File f(p, h5::File::Mode::ReadWrite);
    std::vector<cfloat> wrong(7);
    f.write<cfloat>("/targets", h5::Dims{7}, wrong.data());
  }
  const std::size_t files = dir.file_count();
  auto r = run_cli("reconstruct " + p + " --out " + (dir / "v.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "/targets")) << r.output;
  const std::string good = simulate(dir, "good.h5");
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {"synthesize --count 2 --batch 0 --out " + (dir / "s.h5"), "--batch"},
      {"synthesize --count 2 --stop-after -1 --out " + (dir / "s.h5"), "--stop-after"},
      {"train --arch unet3d --synthesize --epochs 1 --val-count 0 --out " + (dir / "w.h5"), "--val-count"},
      {"train --arch unet3d --synthesize --epochs 1 --lr nan --out " + (dir / "w.h5"), "--lr"},
      {"train --arch unet3d --synthesize --epochs 1 --width 100000 --out " + (dir / "w.h5"), "--width"},
      {"bench --seconds nan", "--seconds"},
      {"reconstruct " + good + " --param lambda=1 --out " + (dir / "v.h5"), "has no parameter"},
      {"reconstruct " + good + " --method l1 --param lambda=1 --param lambda=2 --out " + (dir / "v.h5"),
       "given twice"},
      {"reconstruct " + good + " --model " + good + " --out " + (dir / "v.h5"), "uses no weights"},
      {"reconstruct " + good + " --grid 0:1:1,0:0:1,0.5:0.5:1 --out " + (dir / "v.h5"), "--grid"},
  };
  for (const auto& c : cases) {
    r = run_cli(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << ": " << r.output;
    EXPECT_TRUE(contains(r.output, c.expect)) << c.args << ": " << r.output;
    EXPECT_FALSE(contains(r.output, "making the validation set")) << c.args << ": " << r.output;
    EXPECT_FALSE(contains(r.output, ".tmp-")) << "messages never name temporaries: " << r.output;
  }
  EXPECT_EQ(dir.file_count(), files + 1);  // good.h5 only
  // evaluate prints no table header when it fails before its first result.
  r = run_cli("evaluate --data " + good + " --methods deep2s --model " + good);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_FALSE(contains(r.output, "PSNR dB")) << r.output;
}

// What a second probe found after the defect branches met the rest (each line failed before its fix).
TEST(Reliability, SecondProbeFindingsAreRefused) {
  ScratchDir dir;
  const std::string good = simulate(dir, "good.h5");
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {"reconstruct " + good + " --precision fp16 --out " + (dir / "v.h5"), "runs no network"},
      {"reconstruct " + good + " --method deep2s --precision fp8 --out " + (dir / "v.h5"), "--precision"},
      {"evaluate --data " + good + " --methods adjoint --param lambda=nan", "no method of --methods"},
      {"evaluate --data " + good + " --methods adjoint --freqs 5", "--freqs goes with --system"},
      {"evaluate --data " + good + " --methods adjoint --system paper --freqs -1", "--freqs"},
      {"bench --width -1", "--width"},
      {"simulate --points \"0,0,0.5,1\" --snr '' --out " + (dir / "e.h5"), "not a number"},
      {"synthesize --count 2 --out " + (dir / std::string(250, 'y')), "bytes"},
  };
  for (const auto& c : cases) {
    const auto r = run_cli(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << ": " << r.output;
    EXPECT_TRUE(contains(r.output, c.expect)) << c.args << ": " << r.output;
  }
  EXPECT_EQ(listing(dir.path()), std::vector<std::string>{"good.h5"}) << joined(listing(dir.path()));

  // A frequency of 1e300 Hz makes the reconstruction overflow: refused, not written as inf/nan volumes.
  const std::string huge = simulate(dir, "huge.h5");
  {
    hid_t f = H5Fopen(huge.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/system/frequencies", H5P_DEFAULT);
    hid_t space = H5Dget_space(d);
    std::vector<double> v(H5Sget_simple_extent_npoints(space), 1e300);
    EXPECT_GE(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), 0);
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
  }
  auto r = run_cli("reconstruct " + huge + " --out " + (dir / "v.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "non-finite")) << r.output;
  EXPECT_FALSE(fs::exists(dir / "v.h5"));

  // A command killed by SIGTERM (or Ctrl-C) leaves no lock file beside its outputs.
  r = test::run_command(test::cli_binary() + " reconstruct " + good +
                        " --method tv --grid paper --param iterations=1000 --out " + (dir / "t.h5") +
                        " >/dev/null 2>&1 & pid=$!; sleep 2; kill -TERM $pid; wait $pid; echo rc=$?");
  EXPECT_TRUE(contains(r.output, "rc=143")) << r.output;
  for (const auto& name : listing(dir.path())) EXPECT_FALSE(contains(name, ".lock")) << name;
  EXPECT_FALSE(fs::exists(dir / "t.h5"));
}

}  // namespace
}  // namespace nfmimo
