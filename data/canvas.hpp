// A small RGB raster for the pictures the tools write (projections, figure grids): rectangles, text from
// stb_easy_font, PNG output through libpng (written atomically).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nfmimo {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
};

class Canvas {
 public:
  Canvas(int width, int height, Rgb background = {255, 255, 255});
  int width() const { return width_; }
  int height() const { return height_; }
  void set(int x, int y, Rgb c);
  Rgb get(int x, int y) const;
  void fill_rect(int x, int y, int w, int h, Rgb c);
  void frame_rect(int x, int y, int w, int h, Rgb c);
  // Text with its top-left corner at (x, y); `scale` multiplies the 7-pixel stb_easy_font glyphs.
  void text(int x, int y, const std::string& s, Rgb c = {0, 0, 0}, int scale = 1);
  static int text_width(const std::string& s, int scale = 1);
  static int text_height(int scale = 1) { return 9 * scale; }
  void write_png(const std::string& path, bool overwrite = true) const;

 private:
  int width_, height_;
  std::vector<std::uint8_t> rgb_;
};

// Perceptually uniform colour map (viridis, linearly interpolated between anchors), t in [0, 1].
Rgb colormap(double t);

}  // namespace nfmimo
