// File formats: HDF5 round trips, interop with h5py both ways, viewer exports.
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/atomic_file.hpp"
#include "data/canvas.hpp"
#include "data/hdf5.hpp"
#include "data/measurement_file.hpp"
#include "data/viewer.hpp"
#include "radar/error.hpp"
#include "tests/cli_util.hpp"
#include "tests/test_util.hpp"

namespace nfmimo {
namespace {

using test::ScratchDir;

MeasurementSet sample_set(int frames) {
  MeasurementSet m;
  m.system = test::small_system(false);
  m.grid = test::small_grid();
  m.frames = frames;
  m.measurements = test::random_complex<float>(m.system.samples_per_frame() * frames, 1);
  m.targets = test::random_complex<float>(m.grid->voxels() * frames, 2);
  for (int i = 0; i < frames; ++i) m.snr_db.push_back(20.0f + i);
  return m;
}

TEST(MeasurementFile, RoundTrip) {
  ScratchDir dir;
  const MeasurementSet m = sample_set(3);
  write_measurements(dir / "m.h5", m);
  const MeasurementSet r = read_measurements(dir / "m.h5");
  EXPECT_EQ(r.frames, 3);
  EXPECT_FALSE(r.single_frame);
  EXPECT_EQ(r.measurements, m.measurements);
  EXPECT_EQ(r.targets, m.targets);
  EXPECT_EQ(r.snr_db, m.snr_db);
  EXPECT_FALSE(describe_difference(r.system, m.system, 1e-15).has_value());
  ASSERT_TRUE(r.grid.has_value());
  EXPECT_FALSE(describe_difference(*r.grid, *m.grid, 1e-12).has_value());
  EXPECT_EQ(r.system.sweep.frequencies(), m.system.sweep.frequencies());  // float64 kept bit-exact
  const MeasurementHeader h = read_measurement_header(dir / "m.h5");
  EXPECT_EQ(h.frames, 3);
  EXPECT_TRUE(h.has_targets);
}

// Replaces a root attribute of an existing file by an array of `count` copies (fixed-length string or int64).
void replace_with_array_attribute(const std::string& path, const char* name, bool string, hsize_t count) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  ASSERT_GE(H5Adelete(file, name), 0);
  const hid_t space = H5Screate_simple(1, &count, nullptr);
  const hid_t type = string ? H5Tcopy(H5T_C_S1) : H5Tcopy(H5T_NATIVE_INT64);
  std::vector<char> text(count * 12);
  std::vector<std::int64_t> numbers(count, kFormatVersion);
  if (string) {
    H5Tset_size(type, 12);
    for (hsize_t i = 0; i < count; ++i) std::memcpy(text.data() + i * 12, "measurements", 12);
  }
  const hid_t a = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(a, 0);
  ASSERT_GE(H5Awrite(a, type, string ? static_cast<const void*>(text.data()) : numbers.data()), 0);
  H5Aclose(a);
  H5Tclose(type);
  H5Sclose(space);
  H5Fclose(file);
}

// Found by tests/fuzz/fuzz_measurements: an attribute holding an array where one value belongs was read whole
// into that one value (a stack or heap overflow). It is refused, naming the attribute and the count.
TEST(MeasurementFile, RefusesArrayAttributes) {
  ScratchDir dir;
  for (const bool string : {true, false}) {
    const std::string path = dir / (string ? "format.h5" : "version.h5");
    write_measurements(path, sample_set(1));
    replace_with_array_attribute(path, string ? "nfmimo_format" : "nfmimo_version", string, 64);
    try {
      read_measurements(path);
      ADD_FAILURE() << "an array attribute was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("holds 64 values"), std::string::npos) << e.what();
    }
  }
}

TEST(MeasurementFile, SingleFrameAndGzip) {
  ScratchDir dir;
  MeasurementSet m = sample_set(1);
  m.single_frame = true;
  m.targets.clear();
  m.snr_db.clear();
  write_measurements(dir / "one.h5", m, {.overwrite = false, .gzip_level = 4});
  h5::File f(dir / "one.h5", h5::File::Mode::Read);
  EXPECT_EQ(f.shape("/measurements").size(), 3u);
  const MeasurementSet r = read_measurements(dir / "one.h5");
  EXPECT_TRUE(r.single_frame);
  EXPECT_EQ(r.frames, 1);
  EXPECT_EQ(r.measurements, m.measurements);
}

TEST(MeasurementFile, RefusesToOverwriteUnlessAsked) {
  ScratchDir dir;
  const MeasurementSet m = sample_set(1);
  write_measurements(dir / "m.h5", m);
  EXPECT_THROW(write_measurements(dir / "m.h5", m), InputError);
  EXPECT_NO_THROW(write_measurements(dir / "m.h5", m, {.overwrite = true}));
  EXPECT_EQ(dir.file_count(), 1u);  // no temporaries left behind
}

TEST(VolumeFile, RoundTripMagnitudeAndComplex) {
  ScratchDir dir;
  VolumeSet v;
  v.grid = test::small_grid();
  v.frames = 2;
  v.complex = test::random_complex<float>(v.grid.voxels() * 2, 5);
  v.method = "adjoint (exact)";
  v.device = "cpu";
  v.source = "/x.h5";
  write_volumes(dir / "c.h5", v);
  const VolumeSet c = read_volumes(dir / "c.h5");
  EXPECT_EQ(c.complex, v.complex);
  EXPECT_EQ(c.method, v.method);
  v.magnitude.resize(v.complex.size());
  for (std::size_t i = 0; i < v.complex.size(); ++i) v.magnitude[i] = std::abs(v.complex[i]);
  v.complex.clear();
  write_volumes(dir / "m.h5", v);
  const VolumeSet m = read_volumes(dir / "m.h5");
  EXPECT_EQ(m.magnitude, v.magnitude);
  EXPECT_TRUE(m.complex.empty());
  EXPECT_THROW(read_measurements(dir / "m.h5"), InputError);  // a volume file is not a measurement file
}

TEST(Interop, ReadsFileWrittenByH5py) {
  ScratchDir dir;
  const auto r = test::run_command(test::python() + " " +
                                   NFMIMO_SOURCE_DIR "/tests/interop/h5py_interop.py write-measurements " +
                                   (dir / "py.h5"));
  ASSERT_EQ(r.exit_code, 0) << "python3-h5py is required (tools/scripts/setup.sh installs it): " << r.output;
  const MeasurementSet m = read_measurements(dir / "py.h5");
  ASSERT_EQ(m.frames, 2);
  EXPECT_FALSE(describe_difference(m.system, paper_system(5)).has_value());
  const int K = 5, T = 12, R = 13;
  for (int n = 0; n < 2; ++n)
    for (int k = 0; k < K; ++k)
      for (int t = 0; t < T; ++t)
        for (int rr = 0; rr < R; ++rr) {
          const cfloat v = m.measurements[((std::size_t(n) * K + k) * T + t) * R + rr];
          ASSERT_EQ(v, cfloat(n + 0.25f * k, t - 0.5f * rr)) << n << " " << k << " " << t << " " << rr;
        }
  EXPECT_FALSE(describe_difference(*m.grid, ImagingGrid::paper()).has_value());
}

TEST(Interop, H5pyReadsOurFiles) {
  ScratchDir dir;
  const MeasurementSet m = sample_set(2);
  write_measurements(dir / "m.h5", m);
  const auto r = test::run_command(
      test::python() + " " NFMIMO_SOURCE_DIR "/tests/interop/h5py_interop.py describe " + (dir / "m.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["attrs"]["nfmimo_format"], "measurements");
  EXPECT_EQ(j["attrs"]["nfmimo_version"], 1);
  EXPECT_EQ(j["measurements"]["dtype"], "complex64");
  EXPECT_EQ(j["measurements"]["shape"], (std::vector<int>{2, 4, 3, 4}));
  double sr = 0, si = 0;
  for (const cfloat& v : m.measurements) sr += v.real(), si += v.imag();
  EXPECT_NEAR(j["measurements"]["sum_real"].get<double>(), sr, 1e-9 * m.measurements.size());
  EXPECT_NEAR(j["measurements"]["sum_imag"].get<double>(), si, 1e-9 * m.measurements.size());
  EXPECT_EQ(j["targets"]["shape"], (std::vector<int>{2, 5, 4, 6}));
  EXPECT_EQ(j["snr_db"]["dtype"], "float32");
}

// A glyph is drawn whole whatever the string's length: "0" alone has the same pixels as the first "0" of "00"
// (the quad buffer was once sized per average character and cut short labels).
TEST(Viewer, ShortLabelsAreDrawnWhole) {
  for (const char* glyph : {"0", "8", "M", "%"}) {
    Canvas one(20, 12), two(20, 12);
    one.text(1, 1, glyph, {0, 0, 0});
    two.text(1, 1, std::string(2, glyph[0]), {0, 0, 0});
    const int w = Canvas::text_width(glyph);
    int inked = 0;
    for (int y = 0; y < 12; ++y)
      for (int x = 0; x < w; ++x) {
        const Rgb a = one.get(x, y), b = two.get(x, y);
        EXPECT_EQ(a.r, b.r) << glyph << " at " << x << "," << y;
        inked += a.r == 0;
      }
    EXPECT_GT(inked, 5) << glyph;
  }
}

TEST(Viewer, ProjectionsAreMaxima) {
  const ImagingGrid g = test::small_grid();
  std::vector<float> v(g.voxels(), 0.1f);
  v[g.index(1, 2, 3)] = 5.0f;
  const Projections p = max_intensity_projections(g, v.data());
  EXPECT_EQ(p.top[1 * g.y().size + 2], 5.0f);
  EXPECT_EQ(p.side[2 * g.z().size + 3], 5.0f);
  EXPECT_EQ(p.top[0], 0.1f);
}

TEST(Viewer, WritesPngAndVti) {
  ScratchDir dir;
  const ImagingGrid g = ImagingGrid::paper();
  std::vector<float> v(g.voxels());
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = 1.0f / (1.0f + float(i % 97));
  write_projection_png(dir / "p.png", g, {{{"a", v.data()}, {"b", v.data()}}}, {.title = "t"});
  std::ifstream png(dir / "p.png", std::ios::binary);
  char magic[8];
  png.read(magic, 8);
  EXPECT_EQ(std::string(magic + 1, 3), "PNG");

  write_vti(dir / "v.vti", g, {v.data()}, "magnitude");
  std::ifstream vti(dir / "v.vti", std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(vti)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("WholeExtent=\"0 24 0 24 0 48\""), std::string::npos);
  EXPECT_NE(text.find("Origin=\"-0.14999999999999999 -0.14999999999999999 0.34999999999999998\""),
            std::string::npos);
  // Appended raw data: 8-byte length, then x-fastest floats. Point (ix=1, iy=0, iz=0) is the 2nd value.
  const std::size_t start = text.find("encoding=\"raw\">\n   _") + 20;
  std::uint64_t bytes = 0;
  std::memcpy(&bytes, text.data() + start, 8);
  EXPECT_EQ(bytes, g.voxels() * 4);
  float second = 0;
  std::memcpy(&second, text.data() + start + 8 + 4, 4);
  EXPECT_EQ(second, v[g.index(1, 0, 0)]);
}

TEST(AtomicOutput, RemovesTemporaryWhenAbandoned) {
  ScratchDir dir;
  {
    AtomicOutput out(dir / "x.bin");
    std::ofstream(out.temporary_path()) << "partial";
    EXPECT_EQ(dir.file_count(), 2u);  // the temporary and the output's lock file (data/atomic_file.hpp)
  }
  EXPECT_EQ(dir.file_count(), 0u);
  EXPECT_THROW(AtomicOutput(dir / "no/such/folder/x.bin"), InputError);
}

}  // namespace
}  // namespace nfmimo
