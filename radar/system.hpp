// The radar system (antennas and frequencies) and the imaging grid.
//
// Index order everywhere is the paper's: measurements [N, K, T, R] (frequency, transmitter, receiver),
// volumes [N, x, y, z] with z (range) varying fastest. Units: metres and hertz.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace nfmimo {

struct Vec3 {
  double x = 0, y = 0, z = 0;
};

// Arbitrary transmitter and receiver positions (metres).
class ArrayGeometry {
 public:
  ArrayGeometry() = default;
  ArrayGeometry(std::vector<Vec3> tx, std::vector<Vec3> rx);

  // The paper's cross array: T transmitters at (a, -a, 0) and R receivers at (a, a, 0),
  // a = linspace(-half_aperture, half_aperture).
  static ArrayGeometry paper_cross(int transmitters = 12, int receivers = 13, double half_aperture = 0.15);

  const std::vector<Vec3>& tx() const { return tx_; }
  const std::vector<Vec3>& rx() const { return rx_; }
  int transmitters() const { return static_cast<int>(tx_.size()); }
  int receivers() const { return static_cast<int>(rx_.size()); }

 private:
  std::vector<Vec3> tx_, rx_;
};

// Arbitrary frequencies (Hz); detects uniform steps (needed by the fast FFT adjoint).
class FrequencySweep {
 public:
  FrequencySweep() = default;
  explicit FrequencySweep(std::vector<double> frequencies_hz);
  static FrequencySweep linspace(double first_hz, double last_hz, int count);

  const std::vector<double>& frequencies() const { return f_; }
  int size() const { return static_cast<int>(f_.size()); }
  double operator[](int k) const { return f_[static_cast<std::size_t>(k)]; }
  // True when f[k] = f[0] + k * step within 1e-9 relative (always true for K <= 2).
  bool uniform() const { return uniform_; }
  double step() const { return step_; }

 private:
  std::vector<double> f_;
  bool uniform_ = false;
  double step_ = 0;
};

// One uniform axis: value(i) = start + i * step, i in [0, size).
struct Axis {
  double start = 0;
  double step = 0;
  int size = 0;

  static Axis linspace(double first, double last, int count);
  // Builds an axis from sampled values; throws InputError (naming `what`) if they are not uniform.
  static Axis from_values(const std::vector<double>& values, const std::string& what);
  double operator[](int i) const { return start + step * i; }
  double last() const { return (*this)[size - 1]; }
  std::vector<double> values() const;
};

class ImagingGrid {
 public:
  ImagingGrid() = default;
  ImagingGrid(Axis x, Axis y, Axis z);
  // The paper's grid: x, y = linspace(-0.15, 0.15, 25), z = linspace(0.35, 0.65, 49) metres.
  static ImagingGrid paper();

  const Axis& x() const { return x_; }
  const Axis& y() const { return y_; }
  const Axis& z() const { return z_; }
  std::size_t voxels() const { return std::size_t(x_.size) * y_.size * z_.size; }
  // Flat index, z fastest.
  std::size_t index(int ix, int iy, int iz) const { return (std::size_t(ix) * y_.size + iy) * z_.size + iz; }

 private:
  Axis x_, y_, z_;
};

struct RadarSystem {
  ArrayGeometry array;
  FrequencySweep sweep;

  int frequencies() const { return sweep.size(); }
  int transmitters() const { return array.transmitters(); }
  int receivers() const { return array.receivers(); }
  // K * T * R complex samples per frame.
  std::size_t samples_per_frame() const { return std::size_t(frequencies()) * transmitters() * receivers(); }
};

// Named systems sweep at most this many frequencies (a sweep is a few hundred points at most in practice;
// the cap keeps a typo such as 2000000000 from allocating gigabytes).
inline constexpr int kMaxNamedFrequencies = 65536;
// The paper's system by name: 12 x 13 cross array, K frequencies linspace(4 GHz, 16 GHz, K).
RadarSystem paper_system(int frequencies = 15);
// Named systems: "paper" (K from `frequencies`). Throws InputError for unknown names.
RadarSystem named_system(const std::string& name, int frequencies);

// Checks a system for use: at least one antenna on each side and one frequency, finite positions,
// positive finite frequencies. `source` prefixes the message (for example a file name).
void validate_system(const RadarSystem& system, const std::string& source);
// Checks that no grid point lies on an antenna (the Green's function is singular there), axes have
// positive sizes and finite values.
void validate_grid(const ImagingGrid& grid, const RadarSystem& system, const std::string& source);

// Compares two systems / grids with a relative tolerance (scaled by the largest magnitude involved).
// Returns a description of the first difference, or nothing when they agree.
std::optional<std::string> describe_difference(const RadarSystem& a, const RadarSystem& b,
                                               double rel_tol = 1e-6);
std::optional<std::string> describe_difference(const ImagingGrid& a, const ImagingGrid& b,
                                               double rel_tol = 1e-6);

std::string describe(const RadarSystem& system);
std::string describe(const ImagingGrid& grid);

}  // namespace nfmimo
