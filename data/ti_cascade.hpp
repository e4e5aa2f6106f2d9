// TI 4-chip cascade captures (MMWCAS-RF-EVM with the TDA2 capture card) into nfmimo's measurement schema.
// docs/experimental.md, "TI 4-chip cascade", lists every fact used here and where it comes from.
//
// A capture is four device files (master, slave1, slave2, slave3: <device>_<id>_data.bin), each with an index
// <device>_<id>_idx.bin: a 24-byte header {uint32 tag, version, flags, numIdx; uint64 dataFileSize} and
// numIdx packed 48-byte records {uint16 tag, version; uint32 flags; uint16 width, height; uint32
// pitchOrMetaSize[4]; uint32 size; uint64 timestamp_ns; uint64 offset}, little-endian. A frame of a device is
// int16 (I, Q) pairs in the C order [loops][chirps per loop = TX slots][samples][4 RX][I, Q].
#pragma once

#include <array>
#include <complex>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/provenance.hpp"
#include "data/tudelft.hpp"

namespace nfmimo {

struct TiIndexRecord {
  std::uint32_t size = 0;
  std::uint64_t timestamp_ns = 0, offset = 0;
};
struct TiIndex {
  std::uint32_t tag = 0, version = 0, flags = 0;
  std::uint64_t data_file_size = 0;
  std::vector<TiIndexRecord> frames;
};
// Reads and checks an idx file (its length must be 24 + 48 numIdx). InputError naming the file otherwise.
TiIndex read_ti_index(const std::string& path);

// The chirp configuration (JSON, docs/experimental.md): start frequency, slope, ADC sample rate, samples per
// chirp, ADC start time, TX order (1-based TX numbers per chirp slot, the TDM order), loops per frame.
struct TiChirp {
  double start_frequency_hz = 0, slope_hz_per_s = 0, adc_sample_rate_hz = 0, adc_start_time_s = 0;
  int samples = 0, loops = 0;
  std::vector<int> tx_order;
  // f_k = f_start + slope (t_adc_start + k / f_s): the frequency of dechirped sample k in the
  // stepped-frequency model (the residual video phase is neglected).
  double sample_frequency(int k) const;
};
TiChirp read_ti_chirp(const std::string& path);

// Antenna positions in half-wavelength units at the design frequency; rx[c] is device channel c (master 0-3,
// slave1 4-7, slave2 8-11, slave3 12-15); rx_order[j] (1-based) is the device channel of output receiver j.
struct TiAntennas {
  double design_frequency_hz = 0;
  std::vector<std::array<double, 2>> tx, rx;  // (azimuth -> x, elevation -> y)
  std::vector<int> rx_order;
  std::string source;
};
TiAntennas read_ti_antennas(const std::string& path);
// The shipped MMWCAS table (data/ti_mmwcas_antennas.json, compiled in).
TiAntennas mmwcas_antennas();

struct TiCalibration {
  int transmitters = 0, receivers = 0, samples = 0;
  std::vector<std::complex<double>> gain;  // [T, R]: amplitude and phase of each virtual channel
  std::vector<double> phase_slope;         // [T, R]: radians per sample (the frequency offset term)
};

struct TiImportOptions {
  std::string capture_id = "0000";
  std::string chirp_file, antenna_file;       // antenna_file empty: the shipped table
  std::optional<std::pair<int, int>> frames;  // [first, last] inclusive, 0-based; all when absent
  FrequencySelection samples;                 // K of the chirp's samples (by their frequencies)
  bool conjugate = false;
  std::optional<ImagingGrid> grid;
  std::string calibration_file;  // applied when given
};

// Reads a capture: averaged over loops and the selected frames, RX mapped, TX in TDM order, calibrated if a
// calibration file is given. ImportResult.set is one frame [K, T, R].
ImportResult import_ti_cascade(const std::string& folder, const TiImportOptions& options);

// From a capture of a corner reflector at `target` (metres, nfmimo axes of the board): per virtual channel
// the complex gain and phase slope that turn the model's response into the measured one.
TiCalibration estimate_ti_calibration(const ImportResult& capture, const std::array<double, 3>& target);
void write_ti_calibration(const std::string& path, const TiCalibration& c, const ImportProvenance& provenance,
                          bool overwrite);
TiCalibration read_ti_calibration(const std::string& path);

}  // namespace nfmimo
