// nfmimo import tudelft FILE.mat --out meas.h5 [--freqs K] [--freq-range LO:HI] [--axes x,z,y]
//        [--frequency-unit Hz] [--position-unit m] [--conjugate] [--grid G] [--force]
// Measured data from other tools into nfmimo's measurement schema, with a /provenance group.
// docs/experimental.md.
#include <cstdio>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "data/atomic_file.hpp"
#include "data/hdf5.hpp"
#include "data/ti_cascade.hpp"
#include "data/tudelft.hpp"
#include "radar/error.hpp"
#include "tools/commands.hpp"

namespace nfmimo {
namespace {

struct TuDelftOptions {
  std::string input, output, freq_range, axes = "x,z,y", frequency_unit = "Hz", position_unit = "m", grid;
  int freqs = 0;
  bool conjugate = false, force = false;
};

void run_tudelft(const TuDelftOptions& o, const CLI::App& c) {
  require_distinct_paths(o.input, o.output);
  TuDelftImportOptions io;
  if (c.count("--freqs")) io.frequencies.count = o.freqs;
  if (!o.freq_range.empty()) io.frequencies.range_hz = parse_frequency_range(o.freq_range, "--freq-range");
  io.axes = parse_axis_map(o.axes);
  io.frequency_unit = o.frequency_unit;
  io.position_unit = o.position_unit;
  io.conjugate = o.conjugate;
  if (!o.grid.empty()) io.grid = parse_grid(o.grid);
  // Refuse an existing output before the (possibly large) input is read.
  if (!o.force) AtomicOutput(o.output, false);
  const ImportResult r = import_tudelft(o.input, io);
  const RadarSystem& s = r.set.system;
  std::printf("%s (%s): %d TX, %d RX, %d of %lld frequencies\n", o.input.c_str(),
              r.provenance.source_format.c_str(), s.transmitters(), s.receivers(), s.frequencies(),
              r.provenance.source_frequency_count);
  for (const auto& [role, name] : r.provenance.fields)
    std::printf("  field %-12s <- %s\n", role.c_str(), name.c_str());
  for (const auto& a : r.provenance.assumptions) std::printf("  %s\n", a.c_str());
  MeasurementWriteOptions wo;
  wo.overwrite = o.force;
  wo.extra = [&](h5::File& f) { write_provenance(f, r.provenance); };
  write_measurements(o.output, r.set, wo);
  std::printf("wrote %s (%s)\n", o.output.c_str(), describe(s).c_str());
}

void print_result(const std::string& input, const ImportResult& r) {
  const RadarSystem& s = r.set.system;
  std::printf("%s (%s): %d TX, %d RX, %d of %lld frequencies\n", input.c_str(),
              r.provenance.source_format.c_str(), s.transmitters(), s.receivers(), s.frequencies(),
              r.provenance.source_frequency_count);
  for (const auto& [role, name] : r.provenance.fields)
    std::printf("  %-12s %s\n", role.c_str(), name.c_str());
  for (const auto& a : r.provenance.assumptions) std::printf("  %s\n", a.c_str());
}

struct TiOptions {
  std::string folder, output, chirp, antennas, capture = "0000", frames, freq_range, calibration, target,
                                               grid;
  int freqs = 0;
  bool calibrate = false, conjugate = false, force = false;
};

void run_ti(const TiOptions& o, const CLI::App& c) {
  TiImportOptions io;
  io.capture_id = o.capture;
  io.chirp_file = o.chirp;
  io.antenna_file = o.antennas;
  if (c.count("--freqs")) io.samples.count = o.freqs;
  if (!o.freq_range.empty()) io.samples.range_hz = parse_frequency_range(o.freq_range, "--freq-range");
  if (!o.frames.empty()) {
    int a = 0, b = 0;
    char colon = 0;
    std::stringstream ss(o.frames);
    if (!(ss >> a >> colon >> b) || colon != ':' || !(ss >> std::ws).eof())
      throw InputError(fmt::format("--frames: '{}' is not FIRST:LAST (0-based, inclusive)", o.frames));
    io.frames = std::pair{a, b};
  }
  io.conjugate = o.conjugate;
  io.calibration_file = o.calibration;
  if (!o.grid.empty()) io.grid = parse_grid(o.grid);
  if (!o.force) AtomicOutput(o.output, false);
  if (o.calibrate) {
    require(c.count("--freqs") == 0 && o.freq_range.empty() && o.calibration.empty(),
            "--calibrate uses every sample and no earlier calibration: leave out --freqs, --freq-range, "
            "--calibration");
    require(!o.target.empty(),
            "--calibrate needs --target x,y,z: the corner reflector's position (m, board axes)");
    std::array<double, 3> t{};
    char c1 = 0, c2 = 0;
    std::stringstream ss(o.target);
    if (!(ss >> t[0] >> c1 >> t[1] >> c2 >> t[2]) || c1 != ',' || c2 != ',' || !(ss >> std::ws).eof())
      throw InputError(fmt::format("--target: '{}' is not x,y,z (metres)", o.target));
    ImportResult r = import_ti_cascade(o.folder, io);
    print_result(o.folder, r);
    r.provenance.assumptions.push_back(
        fmt::format("calibration target (corner reflector) at ({}, {}, {}) m", t[0], t[1], t[2]));
    const TiCalibration cal = estimate_ti_calibration(r, t);
    write_ti_calibration(o.output, cal, r.provenance, o.force);
    std::printf("wrote calibration %s (%d TX x %d RX channels)\n", o.output.c_str(), cal.transmitters,
                cal.receivers);
    return;
  }
  require(o.target.empty(), "--target belongs to --calibrate");
  const ImportResult r = import_ti_cascade(o.folder, io);
  print_result(o.folder, r);
  MeasurementWriteOptions wo;
  wo.overwrite = o.force;
  wo.extra = [&](h5::File& f) { write_provenance(f, r.provenance); };
  write_measurements(o.output, r.set, wo);
  std::printf("wrote %s (%s)\n", o.output.c_str(), describe(r.set.system).c_str());
}

}  // namespace

void add_import_command(CLI::App& app) {
  CLI::App* c =
      app.add_subcommand("import",
                         "Bring data from other tools in: measured data as an nfmimo measurement file "
                         "(docs/experimental.md), a Keras network as nfmimo weights (docs/interop.md)");
  c->require_subcommand(1);

  auto o = std::make_shared<TuDelftOptions>();
  CLI::App* t = c->add_subcommand(
      "tudelft", "TU Delft irregular MIMO array .mat files (v5/v7 or v7.3): EMData, OperateFreq, MIMOArray");
  t->add_option("input", o->input, "The .mat file")->required();
  t->add_option("--out,-o", o->output, "Measurement file to write (HDF5)")->required();
  t->add_option("--freqs,-K", o->freqs,
                "Keep K frequencies evenly spaced over the range, both ends included (default: all)");
  t->add_option("--freq-range", o->freq_range, "Keep frequencies in LO:HI (Hz, or with units: 4GHz:16GHz)");
  t->add_option(
       "--axes", o->axes,
       "For nfmimo's x, y, z, the file's axis (optionally signed); the array must end in x-y with the "
       "scene at +z")
      ->capture_default_str();
  t->add_option("--frequency-unit", o->frequency_unit, "Unit of the file's frequencies: Hz, kHz, MHz, GHz")
      ->capture_default_str();
  t->add_option("--position-unit", o->position_unit, "Unit of the file's antenna positions: m, cm, mm")
      ->capture_default_str();
  t->add_flag("--conjugate", o->conjugate,
              "The file's phases follow exp(+j k R): conjugate them to nfmimo's exp(-j k R)");
  t->add_option(
      "--grid", o->grid,
      "Imaging grid stored with the file 'x0:x1:nx,y0:y1:ny,z0:z1:nz' (m); default: from the aperture");
  t->add_flag("--force,-f", o->force, "Replace an existing output file");
  t->callback([o, t] { run_tudelft(*o, *t); });

  auto ti = std::make_shared<TiOptions>();
  CLI::App* x = c->add_subcommand(
      "ti-cascade",
      "TI MMWCAS 4-chip cascade capture (master/slave1-3 *_data.bin + *_idx.bin) and its chirp JSON");
  x->add_option("folder", ti->folder, "Folder holding the four devices' data and idx files")->required();
  x->add_option("--out,-o", ti->output, "Measurement file to write (with --calibrate: the calibration file)")
      ->required();
  x->add_option("--chirp", ti->chirp, "Chirp configuration (JSON, docs/experimental.md)")->required();
  x->add_option("--capture", ti->capture, "Capture number in the file names (<device>_<capture>_data.bin)")
      ->capture_default_str();
  x->add_option("--antennas", ti->antennas, "Antenna table (JSON); default: the shipped MMWCAS table");
  x->add_option("--frames", ti->frames, "Average frames FIRST:LAST (0-based, inclusive; default all)");
  x->add_option("--freqs,-K", ti->freqs, "Keep K samples, evenly spaced, ends included (default: all)");
  x->add_option("--freq-range", ti->freq_range,
                "Keep samples whose frequency is in LO:HI (Hz or with units)");
  x->add_option("--calibration", ti->calibration, "Apply this calibration (made by --calibrate)");
  x->add_flag(
      "--calibrate", ti->calibrate,
      "Estimate the per-channel calibration from a corner-reflector capture at --target; --out is the "
      "calibration file");
  x->add_option("--target", ti->target, "--calibrate: the reflector's position x,y,z in metres (board axes)");
  x->add_flag("--conjugate", ti->conjugate, "Use I - jQ (the opposite phase convention)");
  x->add_option("--grid", ti->grid, "Imaging grid stored with the file; default: from the aperture");
  x->add_flag("--force,-f", ti->force, "Replace an existing output file");
  x->callback([ti, x] { run_ti(*ti, *x); });
}

}  // namespace nfmimo
