// TU Delft irregular-array measurements (Wang, Aubry, Yarovoy, "EM data acquired with irregular planar MIMO
// arrays", IEEE Dataport, doi 10.21227/src2-0y50) into nfmimo's measurement schema. docs/experimental.md.
//
// Both spellings of the group's files are read:
//   experimental (Exp_GunData4ImagingFD.mat): EMData.Values, OperateFreq,
//   MIMOArray.{Transmitter,Receiver}.{X,Y,Z} synthetic:  EMData, OperatingFreq,
//   MIMOArray.Transmitter.{TX,TY,TZ}, MIMOArray.Receiver.{RX,RY,RZ}
// with the measurements RX x TX x frequency (MATLAB order), as .mat v5/v7 or v7.3 (data/mat_file.hpp).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "data/measurement_file.hpp"
#include "data/provenance.hpp"

namespace nfmimo {

struct FrequencySelection {
  std::optional<int> count;                           // K evenly spaced, ends included; all when absent
  std::optional<std::pair<double, double>> range_hz;  // [lo, hi] inclusive; the whole axis when absent
};

// The chosen 0-based indices into `frequencies_hz` (strictly increasing, Hz). Within the range the M
// candidate indices c[0..M-1] are kept, and the j-th of K is c[round((j (M - 1)) / (K - 1))], rounding halves
// up, computed in integers as floor((2 j (M - 1) + K - 1) / (2 (K - 1))); so both ends are always included. K
// = 1 takes c[0]. InputError (naming `source`) when the range holds no frequency or fewer than K.
std::vector<int> select_frequencies(const std::vector<double>& frequencies_hz,
                                    const FrequencySelection& selection, const std::string& source);

// "LO:HI" with optional units on each side: 4e9:16e9, 4GHz:16GHz, 4000MHz:16GHz. Plain numbers are Hz.
std::pair<double, double> parse_frequency_range(const std::string& text, const std::string& option);
// "Hz", "kHz", "MHz", "GHz" -> factor to Hz; "m", "cm", "mm" -> factor to metres. InputError otherwise.
double frequency_unit_factor(const std::string& unit, const std::string& option);
double length_unit_factor(const std::string& unit, const std::string& option);

struct TuDelftImportOptions {
  FrequencySelection frequencies;
  AxisMap axes;                       // default x,z,y: the file's array lies in x-z, range along y
  std::string frequency_unit = "Hz";  // what the file's numbers are in
  std::string position_unit = "m";
  bool conjugate = false;           // the file uses exp(+j k R): conjugate to nfmimo's exp(-j k R)
  std::optional<ImagingGrid> grid;  // default: default_grid_for(array)
};

struct ImportResult {
  MeasurementSet set;
  ImportProvenance provenance;
};

ImportResult import_tudelft(const std::string& path, const TuDelftImportOptions& options);

// A grid that suits an array when the user gives none: x and y over the antennas' bounding box (at least
// +-0.15 m around its centre), 25 points each; z from 0.35 to 0.65 m in front of the array's mean z, 49
// points (the paper's sampling and depth). Returned with the sentence that describes it.
std::pair<ImagingGrid, std::string> default_grid_for(const ArrayGeometry& array);

}  // namespace nfmimo
