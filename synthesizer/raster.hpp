// The rasteriser's per-voxel formulas, shared by the CPU (scene.cpp) and the GPU (gpu_synthesizer.cu).
//
// Bit-identical targets on both devices: every floating-point operation here is an explicitly rounded
// IEEE operation in a fixed order. On the GPU the __f*_rn / __d*_rn intrinsics are never fused into FMAs; on
// the host this header may only be compiled with -ffp-contract=off (the synthesizer library sets it and the
// macro below checks it), because GCC fuses a * b + c into an FMA by default even in ISO C++ mode. No
// transcendental functions are used (phases come from a table), and every parameter arrives precomputed from
// the host.
#pragma once

#if !defined(__CUDACC__) && !defined(NFMIMO_SYNTH_NO_FP_CONTRACT)
#error "synthesizer/raster.hpp is internal to nfmimo_synth (compiled with -ffp-contract=off)"
#endif

#include <cstdint>

#include "radar/physics.hpp"
#include "radar/random.hpp"
#include "synthesizer/scene.hpp"

namespace nfmimo::raster {

NFMIMO_HD float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
NFMIMO_HD float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
NFMIMO_HD float div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
NFMIMO_HD double dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
NFMIMO_HD double dadd(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
NFMIMO_HD float fabs_(float a) { return a < 0.f ? -a : a; }

// The grid as the rasteriser sees it.
struct Grid {
  double x0, y0, z0, dx, dy, dz;
  float fdx, fdy, fdz;  // steps in float (supersample offsets)
  int nx, ny, nz;
  int supersampling;
  float inv_samples;   // 1 / S^3
  float smooth_depth;  // 0: constant magnitude per object
};

inline Grid make_grid(const ImagingGrid& g, const SceneConfig& c) {
  Grid r{};
  r.x0 = g.x().start, r.y0 = g.y().start, r.z0 = g.z().start;
  r.dx = g.x().step, r.dy = g.y().step, r.dz = g.z().step;
  r.fdx = static_cast<float>(r.dx), r.fdy = static_cast<float>(r.dy), r.fdz = static_cast<float>(r.dz);
  r.nx = g.x().size, r.ny = g.y().size, r.nz = g.z().size;
  r.supersampling = c.supersampling;
  r.inv_samples = 1.0f / static_cast<float>(c.supersampling * c.supersampling * c.supersampling);
  r.smooth_depth = static_cast<float>(c.smooth_depth);
  return r;
}

// Is the point with local coordinates u inside the object (half extents h, inverse 1/h)?
NFMIMO_HD bool inside(std::int32_t kind, const float u[3], const float h[3], const float ih[3]) {
  switch (static_cast<ObjectKind>(kind)) {
    case ObjectKind::Ellipsoid: {
      const float w0 = mul(u[0], ih[0]), w1 = mul(u[1], ih[1]), w2 = mul(u[2], ih[2]);
      return add(add(mul(w0, w0), mul(w1, w1)), mul(w2, w2)) <= 1.f;
    }
    case ObjectKind::Cylinder: {  // elliptic cross-section in local (0, 1), axis along local 2
      const float w0 = mul(u[0], ih[0]), w1 = mul(u[1], ih[1]);
      return add(mul(w0, w0), mul(w1, w1)) <= 1.f && fabs_(u[2]) <= h[2];
    }
    case ObjectKind::Cuboid:
    case ObjectKind::Plate:
    default:
      return fabs_(u[0]) <= h[0] && fabs_(u[1]) <= h[1] && fabs_(u[2]) <= h[2];
  }
}

// Fraction of voxel (ix, iy, iz) inside object o (k / S^3), and the local coordinates of the voxel centre.
// Every shape is convex, so a voxel whose eight corners are inside is fully covered; other voxels near the
// surface are supersampled at S^3 points ((a + 1/2) / S - 1/2 of a step from the centre along each axis).
NFMIMO_HD float coverage(const SceneObject& o, const Grid& g, int ix, int iy, int iz, float centre_local[3]) {
  if (ix < o.lo[0] || ix > o.hi[0] || iy < o.lo[1] || iy > o.hi[1] || iz < o.lo[2] || iz > o.hi[2])
    return 0.f;
  if (o.kind == static_cast<std::int32_t>(ObjectKind::Point)) {
    centre_local[0] = centre_local[1] = centre_local[2] = 0.f;
    return 1.f;
  }
  const float rx = static_cast<float>(dadd(dadd(g.x0, dmul(static_cast<double>(ix), g.dx)), -o.centre[0]));
  const float ry = static_cast<float>(dadd(dadd(g.y0, dmul(static_cast<double>(iy), g.dy)), -o.centre[1]));
  const float rz = static_cast<float>(dadd(dadd(g.z0, dmul(static_cast<double>(iz), g.dz)), -o.centre[2]));
  if (add(add(mul(rx, rx), mul(ry, ry)), mul(rz, rz)) > o.reject_radius2) return 0.f;
  const float* R = o.rot;
  float L[3], Cx[3], Cy[3], Cz[3];
  for (int i = 0; i < 3; ++i) {
    L[i] = add(add(mul(R[3 * i], rx), mul(R[3 * i + 1], ry)), mul(R[3 * i + 2], rz));
    Cx[i] = mul(R[3 * i], g.fdx);  // one grid step along world x, in local coordinates
    Cy[i] = mul(R[3 * i + 1], g.fdy);
    Cz[i] = mul(R[3 * i + 2], g.fdz);
    centre_local[i] = L[i];
  }
  // u = ((L + a Cx) + b Cy) + c Cz for offsets a, b, c in steps.
  bool all_corners = true;
  for (int corner = 0; corner < 8 && all_corners; ++corner) {
    const float a = (corner & 1) ? 0.5f : -0.5f, b = (corner & 2) ? 0.5f : -0.5f,
                c = (corner & 4) ? 0.5f : -0.5f;
    float u[3];
    for (int i = 0; i < 3; ++i) u[i] = add(add(add(L[i], mul(a, Cx[i])), mul(b, Cy[i])), mul(c, Cz[i]));
    all_corners = inside(o.kind, u, o.half, o.inv_half);
  }
  if (all_corners) return 1.f;
  const int S = g.supersampling;
  const float inv2S = div(1.f, static_cast<float>(2 * S));
  int count = 0;
  for (int a = 0; a < S; ++a) {
    const float oa = mul(static_cast<float>(2 * a + 1 - S), inv2S);
    float A[3];
    for (int i = 0; i < 3; ++i) A[i] = add(L[i], mul(oa, Cx[i]));
    for (int b = 0; b < S; ++b) {
      const float ob = mul(static_cast<float>(2 * b + 1 - S), inv2S);
      float B[3];
      for (int i = 0; i < 3; ++i) B[i] = add(A[i], mul(ob, Cy[i]));
      for (int c = 0; c < S; ++c) {
        const float oc = mul(static_cast<float>(2 * c + 1 - S), inv2S);
        float u[3];
        for (int i = 0; i < 3; ++i) u[i] = add(B[i], mul(oc, Cz[i]));
        count += inside(o.kind, u, o.half, o.inv_half) ? 1 : 0;
      }
    }
  }
  return mul(static_cast<float>(count), g.inv_samples);
}

// Magnitude of object o at local point u (constant, or the smooth field clamped to [0, 1]).
NFMIMO_HD float object_magnitude(const SceneObject& o, const Grid& g, const float u[3]) {
  if (g.smooth_depth <= 0.f || o.kind == static_cast<std::int32_t>(ObjectKind::Point)) return o.magnitude;
  const float w0 = mul(u[0], o.inv_half[0]), w1 = mul(u[1], o.inv_half[1]), w2 = mul(u[2], o.inv_half[2]);
  const float lin = add(add(mul(o.smooth_lin[0], w0), mul(o.smooth_lin[1], w1)), mul(o.smooth_lin[2], w2));
  const float ww = add(add(mul(w0, w0), mul(w1, w1)), mul(w2, w2));
  float s = add(add(0.5f, mul(0.5f, lin)), mul(o.smooth_quad, add(ww, -0.5f)));
  s = s < 0.f ? 0.f : (s > 1.f ? 1.f : s);
  return mul(o.magnitude, add(1.f, -mul(g.smooth_depth, s)));
}

// Per voxel: the maximum over objects of coverage x magnitude (first object wins ties), and that object's
// index
// (-1 when the voxel is empty).
NFMIMO_HD float voxel_value(const SceneObject* objects, int count, const Grid& g, int ix, int iy, int iz,
                            std::int32_t* winner) {
  float best = 0.f;
  std::int32_t w = -1;
  for (int i = 0; i < count; ++i) {
    float u[3];
    const float c = coverage(objects[i], g, ix, iy, iz, u);
    if (c <= 0.f) continue;
    const float v = mul(c, object_magnitude(objects[i], g, u));
    if (v > best) {
      best = v;
      w = i;
    }
  }
  *winner = w;
  return best;
}

// Phase level of voxel v under the random-per-voxel model: 16 bits of one of the four Philox words of block v
// / 4.
NFMIMO_HD std::int32_t voxel_phase_index(const RandomStream& phase_stream, std::uint64_t v) {
  return static_cast<std::int32_t>(phase_stream.block(v >> 2).v[v & 3] >> 16);
}

}  // namespace nfmimo::raster
