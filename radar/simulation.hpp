// Simulated measurements: point scatterers through the exact Born model, and measurement noise at a target
// SNR.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "radar/complex.hpp"
#include "radar/system.hpp"

namespace nfmimo {

struct PointScatterer {
  Vec3 position;
  double amplitude = 1;
};

// Parses "x,y,z,amplitude;x,y,z,amplitude;..." (metres); InputError with the offending entry otherwise.
std::vector<PointScatterer> parse_points(const std::string& text);

// y[k,t,r] = sum_p a_p exp(-j kappa_k (Rt + Rr)) / (4 pi Rt Rr) at the points' exact positions (double
// precision).
std::vector<cfloat> point_measurements(const RadarSystem& system, const std::vector<PointScatterer>& points);

// Adds complex white Gaussian noise with variance mean|y|^2 / 10^(snr_db / 10) to one frame, drawn from the
// counter-based stream (seed, stream). Returns the noise variance used.
double add_noise(std::span<cfloat> frame, double snr_db, std::uint64_t seed, std::uint64_t stream);

}  // namespace nfmimo
