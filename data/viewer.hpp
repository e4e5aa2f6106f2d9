// Viewer exports: maximum-intensity projections in dB as PNG, and VTK image files (.vti) for ParaView.
#pragma once

#include <string>
#include <vector>

#include "radar/system.hpp"

namespace nfmimo {

// Maximum-intensity projections of one magnitude volume [nx, ny, nz] (z fastest).
struct Projections {
  std::vector<float> top;   // [nx, ny]: max over z
  std::vector<float> side;  // [ny, nz]: max over x
};
Projections max_intensity_projections(const ImagingGrid& grid, const float* volume);

// One cell of a projection figure: a titled volume, drawn as its top (x-y) and side (y-z) views.
struct FigureCell {
  std::string title;
  const float* volume = nullptr;  // [nx, ny, nz] magnitudes
};

struct FigureOptions {
  std::string title;
  double dynamic_range_db = 40;  // colour scale from 0 dB (each cell's maximum) down to -range dB
  int panel_pixels = 240;        // size of the larger panel side
};

// Writes a figure with one row per entry of `rows` and one column per cell; each cell is normalised to its
// own maximum and shown in dB (20 log10 |v| / max), with axes in metres and a colour bar. Written atomically.
void write_projection_png(const std::string& path, const ImagingGrid& grid,
                          const std::vector<std::vector<FigureCell>>& rows, const FigureOptions& options,
                          bool overwrite = true);

// Writes volumes [frames][nx, ny, nz] as point-data arrays of one VTK ImageData file (origin and spacing in
// metres, so ParaView shows the axes in place). Arrays are named `<name>` or `<name>_<i>` for several frames.
void write_vti(const std::string& path, const ImagingGrid& grid, const std::vector<const float*>& frames,
               const std::string& name, bool overwrite = true);

}  // namespace nfmimo
