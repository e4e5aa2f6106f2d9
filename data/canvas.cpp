#include "data/canvas.hpp"

#include <png.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>

#include <fmt/format.h>

#include "data/atomic_file.hpp"
#include "radar/error.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#include <stb/stb_easy_font.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace nfmimo {

Canvas::Canvas(int width, int height, Rgb background)
    : width_(width), height_(height), rgb_(std::size_t(width) * height * 3) {
  fill_rect(0, 0, width, height, background);
}

void Canvas::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
  std::uint8_t* p = &rgb_[(std::size_t(y) * width_ + x) * 3];
  p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

Rgb Canvas::get(int x, int y) const {
  const std::uint8_t* p = &rgb_[(std::size_t(y) * width_ + x) * 3];
  return {p[0], p[1], p[2]};
}

void Canvas::fill_rect(int x, int y, int w, int h, Rgb c) {
  for (int j = std::max(y, 0); j < std::min(y + h, height_); ++j)
    for (int i = std::max(x, 0); i < std::min(x + w, width_); ++i) set(i, j, c);
}

void Canvas::frame_rect(int x, int y, int w, int h, Rgb c) {
  fill_rect(x, y, w, 1, c);
  fill_rect(x, y + h - 1, w, 1, c);
  fill_rect(x, y, 1, h, c);
  fill_rect(x + w - 1, y, 1, h, c);
}

void Canvas::text(int x, int y, const std::string& s, Rgb c, int scale) {
  // stb_easy_font emits axis-aligned quads (4 vertices of 16 bytes: x, y, z floats and a colour) and silently
  // stops when the buffer is full. A glyph takes up to about 12 quads (768 bytes): size for that, not for an
  // average, or short labels lose strokes (a lone "0" tick label lost its right half).
  std::vector<char> buffer(s.size() * 1024 + 1024);
  std::string copy = s;
  unsigned char color[4] = {c.r, c.g, c.b, 255};
  const int quads =
      stb_easy_font_print(0, 0, copy.data(), color, buffer.data(), static_cast<int>(buffer.size()));
  for (int q = 0; q < quads; ++q) {
    const float* v0 = reinterpret_cast<const float*>(buffer.data() + q * 64);
    const float* v2 = reinterpret_cast<const float*>(buffer.data() + q * 64 + 32);
    const int x0 = static_cast<int>(std::lround(v0[0])), y0 = static_cast<int>(std::lround(v0[1]));
    const int x1 = static_cast<int>(std::lround(v2[0])), y1 = static_cast<int>(std::lround(v2[1]));
    fill_rect(x + x0 * scale, y + y0 * scale, (x1 - x0) * scale, (y1 - y0) * scale, c);
  }
}

int Canvas::text_width(const std::string& s, int scale) {
  std::string copy = s;
  return stb_easy_font_width(copy.data()) * scale;
}

void Canvas::write_png(const std::string& path, bool overwrite) const {
  AtomicOutput out(path, overwrite);
  {
    FILE* fp = std::fopen(out.temporary_path().c_str(), "wb");
    if (!fp) throw InputError(fmt::format("{}: cannot write the PNG file", path));
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png_create_info_struct(png);
    errno = 0;
    if (setjmp(png_jmpbuf(png))) {
      const std::string reason = write_failure_reason();
      png_destroy_write_struct(&png, &info);
      std::fclose(fp);
      throw InputError(fmt::format("{}: cannot write the PNG file ({})", path, reason));
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, width_, height_, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height_; ++y)
      png_write_row(png, const_cast<png_bytep>(&rgb_[std::size_t(y) * width_ * 3]));
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    if (std::fclose(fp) != 0)
      throw InputError(fmt::format("{}: cannot finish the PNG file ({})", path, write_failure_reason()));
  }
  out.commit();
}

Rgb colormap(double t) {
  // viridis anchors at t = 0, 1/8, ..., 1 (matplotlib's table, sampled).
  static constexpr std::array<std::array<double, 3>, 9> anchors = {{{68, 1, 84},
                                                                    {71, 44, 122},
                                                                    {59, 81, 139},
                                                                    {44, 113, 142},
                                                                    {33, 144, 141},
                                                                    {39, 173, 129},
                                                                    {92, 200, 99},
                                                                    {170, 220, 50},
                                                                    {253, 231, 37}}};
  t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * (anchors.size() - 1);
  const std::size_t i = std::min<std::size_t>(static_cast<std::size_t>(t), anchors.size() - 2);
  const double f = t - i;
  auto mix = [&](int c) {
    return static_cast<std::uint8_t>(std::lround(anchors[i][c] * (1 - f) + anchors[i + 1][c] * f));
  };
  return {mix(0), mix(1), mix(2)};
}

}  // namespace nfmimo
