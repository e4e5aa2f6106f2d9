// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11) shared by the CPU and CUDA code.
//
// A stream is identified by (seed, stream id) and each draw by a counter, so sample i of a dataset depends
// only on (seed, i) and is the same on every device, thread count and shard split.
#pragma once

#include <cmath>
#include <cstdint>

#include "radar/physics.hpp"

namespace nfmimo {

struct Philox4 {
  std::uint32_t v[4];
};

NFMIMO_HD std::uint32_t mulhilo32(std::uint32_t a, std::uint32_t b, std::uint32_t* hi) {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  *hi = static_cast<std::uint32_t>(p >> 32);
  return static_cast<std::uint32_t>(p);
}

// Philox4x32 with 10 rounds: counter (4 words), key (2 words) -> 4 random words.
NFMIMO_HD Philox4 philox4x32(Philox4 c, std::uint32_t k0, std::uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, hi1;
    const std::uint32_t lo0 = mulhilo32(0xD2511F53u, c.v[0], &hi0);
    const std::uint32_t lo1 = mulhilo32(0xCD9E8D57u, c.v[2], &hi1);
    c = Philox4{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c;
}

// A stream of random numbers for (seed, stream); draw i is a pure function of (seed, stream, i).
class RandomStream {
 public:
  NFMIMO_HD RandomStream(std::uint64_t seed, std::uint64_t stream)
      : k0_(static_cast<std::uint32_t>(seed)),
        k1_(static_cast<std::uint32_t>(seed >> 32)),
        s0_(static_cast<std::uint32_t>(stream)),
        s1_(static_cast<std::uint32_t>(stream >> 32)) {}

  // Four independent 32-bit words for block `i`.
  NFMIMO_HD Philox4 block(std::uint64_t i) const {
    return philox4x32(Philox4{{static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(i >> 32), s0_, s1_}},
                      k0_, k1_);
  }
  // Uniform double in [0, 1) from draw i (53 random bits).
  NFMIMO_HD double uniform(std::uint64_t i) const {
    const Philox4 b = block(i);
    const std::uint64_t bits = (static_cast<std::uint64_t>(b.v[0]) << 21) ^ (b.v[1] >> 11);
    return static_cast<double>(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
  }
  // Two independent standard normals from draw i (Box-Muller in double precision).
  NFMIMO_HD void normal2(std::uint64_t i, double* a, double* b) const {
    const Philox4 w = block(i);
    const double u1 = (static_cast<double>(w.v[0]) + 1.0) * (1.0 / 4294967296.0);  // (0, 1]
    const double u2 = static_cast<double>(w.v[1]) * (1.0 / 4294967296.0);
    const double r = sqrt(-2.0 * log(u1));
    *a = r * cos(kTwoPi * u2);
    *b = r * sin(kTwoPi * u2);
  }

 private:
  std::uint32_t k0_, k1_, s0_, s1_;
};

}  // namespace nfmimo
