#include "data/viewer.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>

#include <fmt/format.h>

#include "data/atomic_file.hpp"
#include "data/canvas.hpp"
#include "radar/error.hpp"

namespace nfmimo {
namespace {

constexpr Rgb kBlack{0, 0, 0};
constexpr Rgb kGrey{90, 90, 90};

// The extent an axis covers when each sample is the centre of a cell.
struct Span {
  double lo, hi;
};
Span span_of(const Axis& a) {
  const double half = a.size > 1 ? 0.5 * a.step : 0.005;
  return {a.start - half, a.last() + half};
}

double nice_tick(double extent) {
  for (double t : {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0})
    if (extent / t <= 5) return t;
  return 10.0;
}

std::string tick_label(double v) {
  if (std::abs(v) < 1e-12) v = 0;
  return fmt::format("{:g}", v);
}

// Draws a 2-D map [nh][nv] (h index slow) with h increasing to the right and v increasing upwards.
void draw_map(Canvas& c, int x0, int y0, int w, int h, const std::vector<float>& map, int nh, int nv,
              float peak, double range_db) {
  for (int py = 0; py < h; ++py)
    for (int px = 0; px < w; ++px) {
      const int ih = std::min(nh - 1, px * nh / w);
      const int iv = std::min(nv - 1, (h - 1 - py) * nv / h);
      const float m = map[std::size_t(ih) * nv + iv];
      const double db = peak > 0 && m > 0 ? 20.0 * std::log10(m / peak) : -range_db;
      c.set(x0 + px, y0 + py, colormap(1.0 + std::max(db, -range_db) / range_db));
    }
  c.frame_rect(x0 - 1, y0 - 1, w + 2, h + 2, kBlack);
}

void draw_axis_h(Canvas& c, int x0, int y, int w, Span s, const std::string& name) {
  const double tick = nice_tick(s.hi - s.lo);
  for (double v = std::ceil(s.lo / tick - 1e-9) * tick; v <= s.hi + 1e-12; v += tick) {
    const int px = x0 + static_cast<int>(std::lround((v - s.lo) / (s.hi - s.lo) * (w - 1)));
    c.fill_rect(px, y, 1, 4, kBlack);
    const std::string l = tick_label(v);
    c.text(px - Canvas::text_width(l) / 2, y + 6, l, kGrey);
  }
  c.text(x0 + w / 2 - Canvas::text_width(name) / 2, y + 18, name, kBlack);
}

void draw_axis_v(Canvas& c, int x, int y0, int h, Span s, const std::string& name) {
  const double tick = nice_tick(s.hi - s.lo);
  for (double v = std::ceil(s.lo / tick - 1e-9) * tick; v <= s.hi + 1e-12; v += tick) {
    const int py = y0 + h - 1 - static_cast<int>(std::lround((v - s.lo) / (s.hi - s.lo) * (h - 1)));
    c.fill_rect(x - 4, py, 4, 1, kBlack);
    const std::string l = tick_label(v);
    c.text(x - 6 - Canvas::text_width(l), py - 3, l, kGrey);
  }
  c.text(x - 6 - Canvas::text_width(name), y0 - 12, name, kBlack);
}

}  // namespace

Projections max_intensity_projections(const ImagingGrid& g, const float* v) {
  const int nx = g.x().size, ny = g.y().size, nz = g.z().size;
  Projections p{std::vector<float>(std::size_t(nx) * ny, 0.0f),
                std::vector<float>(std::size_t(ny) * nz, 0.0f)};
  for (int ix = 0; ix < nx; ++ix)
    for (int iy = 0; iy < ny; ++iy)
      for (int iz = 0; iz < nz; ++iz) {
        const float m = std::abs(v[g.index(ix, iy, iz)]);
        float& t = p.top[std::size_t(ix) * ny + iy];
        float& s = p.side[std::size_t(iy) * nz + iz];
        t = std::max(t, m);
        s = std::max(s, m);
      }
  return p;
}

void write_projection_png(const std::string& path, const ImagingGrid& g,
                          const std::vector<std::vector<FigureCell>>& rows, const FigureOptions& o,
                          bool overwrite) {
  require(!rows.empty() && !rows.front().empty(), "a projection figure needs at least one volume");
  require(o.dynamic_range_db > 0, "the dynamic range of a projection figure must be positive");
  const Span sx = span_of(g.x()), sy = span_of(g.y()), sz = span_of(g.z());
  const double largest = std::max({sx.hi - sx.lo, sy.hi - sy.lo, sz.hi - sz.lo});
  const double ppm = o.panel_pixels / largest;
  const int wx = std::max(8, int(std::lround((sx.hi - sx.lo) * ppm)));
  const int wy = std::max(8, int(std::lround((sy.hi - sy.lo) * ppm)));
  const int wz = std::max(8, int(std::lround((sz.hi - sz.lo) * ppm)));

  const int margin_left = 48, gap = 56, margin_right = 16, title_h = 34, axis_h = 36;
  const int cell_w = margin_left + wx + gap + wz + margin_right;
  const int cell_h = title_h + wy + axis_h;
  std::size_t columns = 0;
  for (const auto& r : rows) columns = std::max(columns, r.size());
  const int header = o.title.empty() ? 8 : 28;
  const int colorbar_w = 80;
  Canvas c(static_cast<int>(columns) * cell_w + colorbar_w, header + static_cast<int>(rows.size()) * cell_h);
  if (!o.title.empty()) c.text(10, 8, o.title, kBlack, 2);

  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t col = 0; col < rows[r].size(); ++col) {
      const FigureCell& cell = rows[r][col];
      const int x0 = static_cast<int>(col) * cell_w + margin_left,
                y0 = header + static_cast<int>(r) * cell_h + title_h;
      const Projections p = max_intensity_projections(g, cell.volume);
      const float peak = *std::max_element(p.top.begin(), p.top.end());
      c.text(x0, y0 - 30, cell.title, kBlack);
      c.text(x0, y0 - 18, "top: max over z", kGrey);
      c.text(x0 + wx + gap, y0 - 18, "side: max over x", kGrey);
      draw_map(c, x0, y0, wx, wy, p.top, g.x().size, g.y().size, peak, o.dynamic_range_db);
      // The side map is [y][z]; the panel wants z across and y up, i.e. [z][y].
      std::vector<float> side_zy(p.side.size());
      for (int iy = 0; iy < g.y().size; ++iy)
        for (int iz = 0; iz < g.z().size; ++iz)
          side_zy[std::size_t(iz) * g.y().size + iy] = p.side[std::size_t(iy) * g.z().size + iz];
      draw_map(c, x0 + wx + gap, y0, wz, wy, side_zy, g.z().size, g.y().size, peak, o.dynamic_range_db);
      draw_axis_h(c, x0, y0 + wy + 1, wx, sx, "x (m)");
      draw_axis_v(c, x0 - 1, y0, wy, sy, "y (m)");
      draw_axis_h(c, x0 + wx + gap, y0 + wy + 1, wz, sz, "z (m)");
      draw_axis_v(c, x0 + wx + gap - 1, y0, wy, sy, "y (m)");
    }
  // Colour bar.
  const int bx = static_cast<int>(columns) * cell_w + 10, by = header + title_h, bh = wy;
  for (int py = 0; py < bh; ++py) c.fill_rect(bx, by + py, 16, 1, colormap(1.0 - double(py) / (bh - 1)));
  c.frame_rect(bx - 1, by - 1, 18, bh + 2, kBlack);
  const int steps = std::max(1, static_cast<int>(o.dynamic_range_db / 10));
  for (int i = 0; i <= steps; ++i) {
    const double db = -o.dynamic_range_db * i / steps;
    const int py = by + static_cast<int>(std::lround(-db / o.dynamic_range_db * (bh - 1)));
    c.fill_rect(bx + 16, py, 4, 1, kBlack);
    c.text(bx + 22, py - 3, fmt::format("{:g}", db), kGrey);
  }
  c.text(bx, by - 14, "dB", kBlack);
  c.write_png(path, overwrite);
}

void write_vti(const std::string& path, const ImagingGrid& g, const std::vector<const float*>& frames,
               const std::string& name, bool overwrite) {
  require(!frames.empty(), "a VTK file needs at least one volume");
  const int nx = g.x().size, ny = g.y().size, nz = g.z().size;
  const std::uint64_t bytes = std::uint64_t(nx) * ny * nz * sizeof(float);
  AtomicOutput out(path, overwrite);
  {
    std::ofstream f(out.temporary_path(), std::ios::binary);
    errno = 0;  // so that a failed write below leaves its own reason (write_failure_reason)
    if (!f) throw InputError(fmt::format("{}: cannot write the VTK file", path));
    f << "<?xml version=\"1.0\"?>\n"
      << "<VTKFile type=\"ImageData\" version=\"1.0\" byte_order=\"LittleEndian\" header_type=\"UInt64\">\n"
      << fmt::format(
             "  <ImageData WholeExtent=\"0 {} 0 {} 0 {}\" Origin=\"{:.17g} {:.17g} {:.17g}\" "
             "Spacing=\"{:.17g} {:.17g} {:.17g}\">\n",
             nx - 1, ny - 1, nz - 1, g.x().start, g.y().start, g.z().start, nx > 1 ? g.x().step : 1.0,
             ny > 1 ? g.y().step : 1.0, nz > 1 ? g.z().step : 1.0)
      << fmt::format("    <Piece Extent=\"0 {} 0 {} 0 {}\">\n", nx - 1, ny - 1, nz - 1)
      << fmt::format("      <PointData Scalars=\"{}\">\n", frames.size() == 1 ? name : name + "_0");
    for (std::size_t i = 0; i < frames.size(); ++i)
      f << fmt::format(
          "        <DataArray type=\"Float32\" Name=\"{}\" format=\"appended\" offset=\"{}\"/>\n",
          frames.size() == 1 ? name : fmt::format("{}_{}", name, i), i * (bytes + 8));
    f << "      </PointData>\n    </Piece>\n  </ImageData>\n  <AppendedData encoding=\"raw\">\n   _";
    // VTK orders points with x fastest; our volumes have z fastest.
    std::vector<float> buffer(std::size_t(nx) * ny * nz);
    for (const float* v : frames) {
      for (int iz = 0; iz < nz; ++iz)
        for (int iy = 0; iy < ny; ++iy)
          for (int ix = 0; ix < nx; ++ix)
            buffer[(std::size_t(iz) * ny + iy) * nx + ix] = v[g.index(ix, iy, iz)];
      f.write(reinterpret_cast<const char*>(&bytes), sizeof bytes);
      f.write(reinterpret_cast<const char*>(buffer.data()), static_cast<std::streamsize>(bytes));
    }
    f << "\n  </AppendedData>\n</VTKFile>\n";
    f.close();
    if (!f) throw InputError(fmt::format("{}: cannot write the VTK file ({})", path, write_failure_reason()));
  }
  out.commit();
}

}  // namespace nfmimo
