#include "radar/simulation.hpp"

#include <cmath>
#include <sstream>

#include <fmt/format.h>

#include "radar/error.hpp"
#include "radar/physics.hpp"
#include "radar/random.hpp"

namespace nfmimo {

std::vector<PointScatterer> parse_points(const std::string& text) {
  std::vector<PointScatterer> points;
  std::stringstream entries(text);
  std::string entry;
  while (std::getline(entries, entry, ';')) {
    if (entry.find_first_not_of(" \t") == std::string::npos) continue;
    std::vector<double> v;
    std::stringstream fields(entry);
    std::string field;
    while (std::getline(fields, field, ',')) {
      try {
        std::size_t used = 0;
        v.push_back(std::stod(field, &used));
        if (field.find_first_not_of(" \t", used) != std::string::npos) throw std::invalid_argument(field);
      } catch (const std::exception&) {
        throw InputError(fmt::format("--points: '{}' in '{}' is not a number", field, entry));
      }
    }
    require(v.size() == 4, fmt::format("--points: '{}' needs four numbers x,y,z,amplitude (metres)", entry));
    for (double x : v)
      require(std::isfinite(x), fmt::format("--points: '{}' holds a non-finite value", entry));
    points.push_back({{v[0], v[1], v[2]}, v[3]});
  }
  require(!points.empty(), "--points: no points given (format: \"x,y,z,amplitude;...\")");
  return points;
}

std::vector<cfloat> point_measurements(const RadarSystem& s, const std::vector<PointScatterer>& points) {
  const int K = s.frequencies(), T = s.transmitters(), R = s.receivers();
  std::vector<cfloat> y(s.samples_per_frame());
  auto dist = [](const Vec3& a, const Vec3& b) { return std::hypot(a.x - b.x, a.y - b.y, a.z - b.z); };
  for (int k = 0; k < K; ++k) {
    const double kappa = wavenumber(s.sweep[k]);
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < R; ++r) {
        cdouble acc = 0;
        for (const PointScatterer& p : points) {
          const double rt = dist(p.position, s.array.tx()[t]), rr = dist(p.position, s.array.rx()[r]);
          require(rt > 1e-6 && rr > 1e-6, "a point scatterer lies on an antenna");
          acc += p.amplitude * std::polar(1.0, -kappa * (rt + rr)) / (4.0 * kPi * rt * rr);
        }
        y[(std::size_t(k) * T + t) * R + r] = cfloat(acc);
      }
  }
  return y;
}

double add_noise(std::span<cfloat> frame, double snr_db, std::uint64_t seed, std::uint64_t stream) {
  require(std::isfinite(snr_db), "the SNR must be a finite number of dB");
  double power = 0;
  for (const cfloat& v : frame) power += std::norm(cdouble(v));
  power /= static_cast<double>(frame.size());
  const double variance = power / std::pow(10.0, snr_db / 10.0);
  const double sigma = std::sqrt(variance / 2.0);  // per real component
  const RandomStream rng(seed, stream);
  for (std::size_t i = 0; i < frame.size(); ++i) {
    double a, b;
    rng.normal2(i, &a, &b);
    frame[i] += cfloat(static_cast<float>(sigma * a), static_cast<float>(sigma * b));
  }
  return variance;
}

}  // namespace nfmimo
