// Measurement files and volume files (schema: docs/formats.md).
//
// Measurement file: root attributes nfmimo_format = "measurements", nfmimo_version = 1;
//   /system/frequencies float64 [K] Hz, /system/tx_positions float64 [T,3] m, /system/rx_positions float64
//   [R,3] m, /measurements complex {r,i} float32 [N,K,T,R] (or [K,T,R] for one frame); optional /grid/x,y,z
//   float64 m, /targets complex [N,nx,ny,nz], /snr_db float32 [N].
// Volume file: nfmimo_format = "volumes"; /grid/x,y,z; /volumes float32 [N,nx,ny,nz] (magnitude) or complex;
//   attributes method, source, device.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "radar/complex.hpp"
#include "radar/system.hpp"

namespace nfmimo {

inline constexpr int kFormatVersion = 1;

struct MeasurementSet {
  RadarSystem system;
  std::optional<ImagingGrid> grid;
  int frames = 0;                    // N
  bool single_frame = false;         // stored as [K,T,R]
  std::vector<cfloat> measurements;  // [N,K,T,R]
  std::vector<cfloat> targets;       // [N,nx,ny,nz] or empty
  std::vector<float> snr_db;         // [N] or empty
};

struct MeasurementReadOptions {
  bool load_targets = true;  // /targets is checked (shape, complex) either way; loaded only if asked
  int max_frames = 0;        // > 0: read only the first max_frames frames (the others are never allocated)
};

// Reads and validates a measurement file. Every problem is an InputError naming the file, the dataset and
// what is wrong: missing or misnamed datasets, wrong rank or shape, K/T/R disagreeing with /system,
// non-finite values, non-positive frequencies, a grid point on an antenna.
MeasurementSet read_measurements(const std::string& path, const MeasurementReadOptions& options = {});

// Reads only /system and /grid (and N) for quick checks and `info`.
struct MeasurementHeader {
  RadarSystem system;
  std::optional<ImagingGrid> grid;
  int frames = 0;
  bool has_targets = false;
  bool has_snr = false;
};
MeasurementHeader read_measurement_header(const std::string& path);

namespace h5 {
class File;
}
struct MeasurementWriteOptions {
  bool overwrite = false;
  int gzip_level = 0;
  // Writes more groups (for example an importer's /provenance) into the temporary file before it is renamed.
  std::function<void(h5::File&)> extra = nullptr;
};
// Writes atomically (temporary name, then rename).
void write_measurements(const std::string& path, const MeasurementSet& set,
                        const MeasurementWriteOptions& options = {});

struct VolumeSet {
  ImagingGrid grid;
  int frames = 0;
  std::vector<float> magnitude;  // [N,nx,ny,nz], used when `complex` is empty
  std::vector<cfloat> complex;   // [N,nx,ny,nz] when complex output was asked for
  std::string method, source, device;
  std::string extra_json;  // free-form JSON attribute (for example timings or metrics)
};

void write_volumes(const std::string& path, const VolumeSet& set, bool overwrite = false);
VolumeSet read_volumes(const std::string& path);

// The /system and /grid groups shared by every nfmimo file.
namespace h5 {
class File;
}
void write_grid(h5::File& file, const ImagingGrid& grid);
std::optional<ImagingGrid> read_grid(const h5::File& file);
void write_system(h5::File& file, const RadarSystem& system);
RadarSystem read_system(const h5::File& file);

}  // namespace nfmimo
