#include "data/ti_cascade.hpp"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/atomic_file.hpp"
#include "data/hdf5.hpp"
#include "radar/error.hpp"

namespace nfmimo {
namespace {

constexpr double kLight = 299792458.0;
constexpr const char* kDevices[4] = {"master", "slave1", "slave2", "slave3"};
constexpr std::size_t kHeaderBytes = 24, kRecordBytes = 48;

template <class T>
T little(const unsigned char* p) {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= T(p[i]) << (8 * i);
  return v;
}

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot be opened", path));
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), {});
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot be opened", path));
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: is not valid JSON: {}", path, e.what()));
  }
}

double json_number(const nlohmann::json& j, const std::string& path, const char* key, bool positive) {
  if (!j.contains(key) || !j[key].is_number())
    throw InputError(fmt::format("{}: key '{}' is missing or not a number", path, key));
  const double v = j[key].get<double>();
  if (!std::isfinite(v) || (positive ? v <= 0 : v < 0))
    throw InputError(fmt::format("{}: key '{}' is {}; expected a {} number", path, key, v,
                                 positive ? "positive" : "non-negative"));
  return v;
}

std::vector<std::array<double, 2>> json_positions(const nlohmann::json& j, const std::string& path,
                                                  const char* key, std::size_t count) {
  if (!j.contains(key) || !j[key].is_array() || j[key].size() != count)
    throw InputError(fmt::format("{}: key '{}' must list {} [azimuth, elevation] pairs", path, key, count));
  std::vector<std::array<double, 2>> out;
  for (const auto& p : j[key]) {
    if (!p.is_array() || p.size() != 2 || !p[0].is_number() || !p[1].is_number())
      throw InputError(fmt::format("{}: key '{}': every entry must be [azimuth, elevation]", path, key));
    out.push_back({p[0].get<double>(), p[1].get<double>()});
  }
  return out;
}

TiAntennas parse_antennas(const nlohmann::json& j, const std::string& path) {
  TiAntennas a;
  a.source = path;
  a.design_frequency_hz = json_number(j, path, "design_frequency_hz", true);
  a.tx = json_positions(j, path, "tx", j.contains("tx") && j["tx"].is_array() ? j["tx"].size() : 0);
  if (a.tx.empty()) throw InputError(fmt::format("{}: key 'tx' lists no transmitter", path));
  a.rx = json_positions(j, path, "rx", 16);
  if (!j.contains("rx_order") || !j["rx_order"].is_array() || j["rx_order"].size() != 16)
    throw InputError(fmt::format("{}: key 'rx_order' must list the 16 device channels (1-based)", path));
  std::array<bool, 16> seen{};
  for (const auto& v : j["rx_order"]) {
    const int c = v.is_number_integer() ? v.get<int>() : 0;
    if (c < 1 || c > 16 || seen[std::size_t(c - 1)])
      throw InputError(fmt::format("{}: key 'rx_order' must be a permutation of 1..16", path));
    seen[std::size_t(c - 1)] = true;
    a.rx_order.push_back(c);
  }
  return a;
}

// The MMWCAS table shipped as data/ti_mmwcas_antennas.json (same numbers; the file documents their source).
const char* kMmwcasTable = R"({
  "design_frequency_hz": 76.8e9,
  "tx": [[11, 6], [10, 4], [9, 1], [32, 0], [28, 0], [24, 0], [20, 0], [16, 0], [12, 0], [8, 0], [4, 0], [0, 0]],
  "rx": [[11, 0], [12, 0], [13, 0], [14, 0], [50, 0], [51, 0], [52, 0], [53, 0],
         [46, 0], [47, 0], [48, 0], [49, 0], [0, 0], [1, 0], [2, 0], [3, 0]],
  "rx_order": [13, 14, 15, 16, 1, 2, 3, 4, 9, 10, 11, 12, 5, 6, 7, 8]
})";

std::vector<std::complex<double>> model_response(const RadarSystem& s, const std::array<double, 3>& p) {
  std::vector<std::complex<double>> y(s.samples_per_frame());
  const auto distance = [&](const Vec3& a) { return std::hypot(a.x - p[0], a.y - p[1], a.z - p[2]); };
  for (int k = 0; k < s.frequencies(); ++k) {
    const double kappa = 2 * M_PI * s.sweep[k] / kLight;
    for (int t = 0; t < s.transmitters(); ++t)
      for (int r = 0; r < s.receivers(); ++r) {
        const double rt = distance(s.array.tx()[std::size_t(t)]), rr = distance(s.array.rx()[std::size_t(r)]);
        y[(std::size_t(k) * s.transmitters() + t) * s.receivers() + r] =
            std::polar(1.0 / (4 * M_PI * rt * rr), -kappa * (rt + rr));
      }
  }
  return y;
}

}  // namespace

TiIndex read_ti_index(const std::string& path) {
  const auto b = read_bytes(path);
  if (b.size() < kHeaderBytes)
    throw InputError(
        fmt::format("{}: is {} bytes, shorter than the 24-byte idx header (truncated)", path, b.size()));
  TiIndex idx;
  idx.tag = little<std::uint32_t>(&b[0]);
  idx.version = little<std::uint32_t>(&b[4]);
  idx.flags = little<std::uint32_t>(&b[8]);
  const std::uint32_t count = little<std::uint32_t>(&b[12]);
  idx.data_file_size = little<std::uint64_t>(&b[16]);
  const std::size_t expected = kHeaderBytes + kRecordBytes * std::size_t(count);
  if (b.size() != expected)
    throw InputError(
        fmt::format("{}: header field numIdx = {} needs {} bytes (24 + 48 per frame), the file has {} "
                    "({})",
                    path, count, expected, b.size(), b.size() < expected ? "truncated" : "extra bytes"));
  for (std::uint32_t i = 0; i < count; ++i) {
    const unsigned char* r = &b[kHeaderBytes + kRecordBytes * i];
    TiIndexRecord rec;
    rec.size = little<std::uint32_t>(r + 28);
    rec.timestamp_ns = little<std::uint64_t>(r + 32);
    rec.offset = little<std::uint64_t>(r + 40);
    idx.frames.push_back(rec);
  }
  return idx;
}

double TiChirp::sample_frequency(int k) const {
  return start_frequency_hz + slope_hz_per_s * (adc_start_time_s + double(k) / adc_sample_rate_hz);
}

TiChirp read_ti_chirp(const std::string& path) {
  const auto j = read_json(path);
  TiChirp c;
  c.start_frequency_hz = json_number(j, path, "start_frequency_hz", true);
  c.slope_hz_per_s = json_number(j, path, "slope_hz_per_s", true);
  c.adc_sample_rate_hz = json_number(j, path, "adc_sample_rate_hz", true);
  c.adc_start_time_s = json_number(j, path, "adc_start_time_s", false);
  const double samples = json_number(j, path, "samples_per_chirp", true);
  const double loops = json_number(j, path, "loops", true);
  if (samples != std::floor(samples) || loops != std::floor(loops))
    throw InputError(fmt::format("{}: samples_per_chirp and loops must be whole numbers", path));
  c.samples = int(samples);
  c.loops = int(loops);
  if (!j.contains("tx_order") || !j["tx_order"].is_array() || j["tx_order"].empty())
    throw InputError(
        fmt::format("{}: key 'tx_order' must list the TX number (1-based) of each chirp slot", path));
  for (const auto& v : j["tx_order"]) {
    if (!v.is_number_integer() || v.get<int>() < 1)
      throw InputError(fmt::format("{}: key 'tx_order' must hold positive TX numbers", path));
    c.tx_order.push_back(v.get<int>());
  }
  return c;
}

TiAntennas read_ti_antennas(const std::string& path) { return parse_antennas(read_json(path), path); }

TiAntennas mmwcas_antennas() {
  return parse_antennas(nlohmann::json::parse(kMmwcasTable),
                        "the shipped MMWCAS table (data/ti_mmwcas_antennas.json)");
}

ImportResult import_ti_cascade(const std::string& folder, const TiImportOptions& o) {
  ImportResult result;
  ImportProvenance& p = result.provenance;
  auto& notes = p.assumptions;
  p.importer = "ti-cascade";
  p.source_file = std::filesystem::absolute(folder).lexically_normal().string();
  p.source_format = "TI MMWCAS 4-chip cascade (TDA2 capture: 4 x data.bin + idx.bin)";
  require(!o.chirp_file.empty(), "ti-cascade needs --chirp FILE (the chirp configuration, JSON)");
  const TiChirp chirp = read_ti_chirp(o.chirp_file);
  const TiAntennas ant = o.antenna_file.empty() ? mmwcas_antennas() : read_ti_antennas(o.antenna_file);
  for (int tx : chirp.tx_order)
    if (tx > int(ant.tx.size()))
      throw InputError(fmt::format("{}: tx_order names TX {}, but the antenna table ({}) has {} transmitters",
                                   o.chirp_file, tx, ant.source, ant.tx.size()));
  const std::size_t slots = chirp.tx_order.size(), samples = std::size_t(chirp.samples),
                    loops = std::size_t(chirp.loops);
  const std::size_t frame_values = loops * slots * samples * 4 * 2;  // int16 values per device and frame
  const std::size_t frame_bytes = frame_values * 2;

  // Index and data of each device; every device must hold the same frames.
  std::vector<std::vector<unsigned char>> data(4);
  std::vector<std::string> data_paths(4);
  std::size_t frames = 0;
  for (int d = 0; d < 4; ++d) {
    const std::string base = fmt::format("{}/{}_{}_", folder, kDevices[d], o.capture_id);
    const TiIndex idx = read_ti_index(base + "idx.bin");
    const std::string data_path = base + "data.bin";
    data_paths[std::size_t(d)] = data_path;
    std::error_code ec;
    const std::uintmax_t data_size = std::filesystem::file_size(data_path, ec);
    if (ec) throw InputError(fmt::format("{}: cannot be opened", data_path));
    if (data_size != idx.data_file_size)
      throw InputError(fmt::format("{}: is {} bytes, but its index {}idx.bin (field dataFileSize) says {}",
                                   data_path, data_size, base, idx.data_file_size));
    if (data_size % frame_bytes != 0)
      throw InputError(
          fmt::format("{}: {} bytes is not a whole number of {}-byte frames (loops {} x slots {} x "
                      "samples {} x 4 RX x I,Q int16, from {}): the file ends mid-frame",
                      data_path, data_size, frame_bytes, loops, slots, samples, o.chirp_file));
    for (std::size_t i = 0; i < idx.frames.size(); ++i) {
      const auto& r = idx.frames[i];
      if (r.size != frame_bytes)
        throw InputError(
            fmt::format("{}idx.bin: frame {} has size {} bytes; the chirp configuration {} makes "
                        "frames of {} bytes",
                        base, i, r.size, o.chirp_file, frame_bytes));
      if (r.offset != i * frame_bytes || r.offset + r.size > data_size)
        throw InputError(
            fmt::format("{}idx.bin: frame {} has offset {}; expected {} within the {} bytes of {}", base, i,
                        r.offset, i * frame_bytes, data_size, data_path));
    }
    if (idx.frames.size() * frame_bytes != data_size)
      throw InputError(fmt::format("{}idx.bin: lists {} frames, but {} holds {}", base, idx.frames.size(),
                                   data_path, data_size / frame_bytes));
    if (d == 0)
      frames = idx.frames.size();
    else if (idx.frames.size() != frames)
      throw InputError(fmt::format("{}idx.bin: lists {} frames, but the master's lists {}", base,
                                   idx.frames.size(), frames));
  }
  if (frames == 0) throw InputError(fmt::format("{}: the capture holds no frame", folder));
  std::size_t first = 0, last = frames - 1;
  if (o.frames) {
    if (o.frames->first < 0 || o.frames->second < o.frames->first || std::size_t(o.frames->second) >= frames)
      throw InputError(fmt::format("--frames {}:{} is outside the capture's frames 0:{}", o.frames->first,
                                   o.frames->second, frames - 1));
    first = std::size_t(o.frames->first), last = std::size_t(o.frames->second);
  }

  // Only the selected frames are read (a capture can hold thousands).
  for (int d = 0; d < 4; ++d) {
    std::ifstream in(data_paths[std::size_t(d)], std::ios::binary);
    auto& bytes = data[std::size_t(d)];
    bytes.resize((last - first + 1) * frame_bytes);
    in.seekg(std::streamoff(first * frame_bytes));
    if (!in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size())))
      throw InputError(
          fmt::format("{}: frames {} to {} cannot be read", data_paths[std::size_t(d)], first, last));
  }

  // Frequencies of the samples, and the selection.
  std::vector<double> f(samples);
  for (std::size_t k = 0; k < samples; ++k) f[k] = chirp.sample_frequency(int(k));
  const std::vector<int> chosen = select_frequencies(f, o.samples, o.chirp_file);
  std::vector<double> chosen_hz;
  for (int k : chosen) chosen_hz.push_back(f[std::size_t(k)]);
  p.source_frequency_count = (long long)samples;
  p.frequency_indices.assign(chosen.begin(), chosen.end());

  // Geometry: azimuth -> x, elevation -> y, in half wavelengths at the design frequency; board plane z = 0.
  const double unit = kLight / ant.design_frequency_hz / 2;
  std::vector<Vec3> tx, rx;
  for (int s : chirp.tx_order)
    tx.push_back({ant.tx[std::size_t(s - 1)][0] * unit, ant.tx[std::size_t(s - 1)][1] * unit, 0});
  for (int c : ant.rx_order)
    rx.push_back({ant.rx[std::size_t(c - 1)][0] * unit, ant.rx[std::size_t(c - 1)][1] * unit, 0});

  // Average over loops and frames, mapping device channel c = 4 device + rx to output receiver j.
  const std::size_t nt = slots, nr = 16, nk = chosen.size();
  std::vector<std::complex<double>> sum(nk * nt * nr);
  const double sign = o.conjugate ? -1.0 : 1.0;
  for (std::size_t j = 0; j < nr; ++j) {
    const std::size_t c = std::size_t(ant.rx_order[j] - 1), device = c / 4, lane = c % 4;
    const auto& bytes = data[device];
    for (std::size_t fr = first; fr <= last; ++fr)
      for (std::size_t l = 0; l < loops; ++l)
        for (std::size_t t = 0; t < nt; ++t)
          for (std::size_t k = 0; k < nk; ++k) {
            const std::size_t v = (((l * slots + t) * samples + std::size_t(chosen[k])) * 4 + lane) * 2;
            const unsigned char* q = &bytes[(fr - first) * frame_bytes + 2 * v];
            const auto i_part = std::int16_t(little<std::uint16_t>(q)),
                       q_part = std::int16_t(little<std::uint16_t>(q + 2));
            sum[(k * nt + t) * nr + j] += std::complex<double>(i_part, sign * q_part);
          }
  }
  const double count = double((last - first + 1) * loops);
  std::vector<std::complex<double>> y(sum.size());
  for (std::size_t i = 0; i < sum.size(); ++i) y[i] = sum[i] / count;

  if (!o.calibration_file.empty()) {
    const TiCalibration cal = read_ti_calibration(o.calibration_file);
    if (cal.transmitters != int(nt) || cal.receivers != int(nr) || cal.samples != int(samples))
      throw InputError(
          fmt::format("{}: is for {} TX x {} RX and {} samples per chirp; this capture has {} x {} and {}",
                      o.calibration_file, cal.transmitters, cal.receivers, cal.samples, nt, nr, samples));
    for (std::size_t k = 0; k < nk; ++k)
      for (std::size_t t = 0; t < nt; ++t)
        for (std::size_t r = 0; r < nr; ++r) {
          const std::size_t ch = t * nr + r;
          y[(k * nt + t) * nr + r] /= cal.gain[ch] * std::polar(1.0, cal.phase_slope[ch] * chosen[k]);
        }
    notes.push_back(fmt::format("calibration applied: {} (per virtual channel gain and phase slope)",
                                o.calibration_file));
  } else {
    notes.push_back("no calibration applied (give --calibration FILE from `--calibrate`)");
  }

  MeasurementSet& m = result.set;
  m.system = RadarSystem{ArrayGeometry(tx, rx), FrequencySweep(chosen_hz)};
  validate_system(m.system, folder);
  m.frames = 1;
  m.single_frame = true;
  m.measurements.resize(y.size());
  for (std::size_t i = 0; i < y.size(); ++i)
    m.measurements[i] = cfloat(float(y[i].real()), float(y[i].imag()));
  if (o.grid) {
    m.grid = *o.grid;
  } else {
    auto [grid, why] = default_grid_for(m.system.array);
    m.grid = grid;
    notes.push_back(why);
  }
  validate_grid(*m.grid, m.system, "--grid");

  std::string order, rxo;
  for (int s : chirp.tx_order) order += fmt::format("{}{}", order.empty() ? "" : " ", s);
  for (int c : ant.rx_order) rxo += fmt::format("{}{}", rxo.empty() ? "" : " ", c);
  p.fields = {{"chirp", std::filesystem::absolute(o.chirp_file).string()},
              {"antennas", ant.source},
              {"tx_order", order},
              {"rx_order", rxo}};
  notes.push_back(
      fmt::format("capture {}: {} frames of {} loops x {} TX slots x {} samples x 16 RX; frames {} to {} "
                  "and all loops averaged",
                  o.capture_id, frames, loops, slots, samples, first, last));
  notes.push_back(fmt::format("transmitter t is chirp slot t, TX number tx_order[t] = {} (TDM order, {})",
                              order, o.chirp_file));
  notes.push_back(
      fmt::format("receiver j is device channel rx_order[j] = {} (1-based; master 1-4, slave1 5-8, slave2 "
                  "9-12, slave3 13-16), from {}",
                  rxo, ant.source));
  notes.push_back(
      fmt::format("positions: table units of half a wavelength at {:.6g} Hz = {:.6g} m; azimuth -> x, "
                  "elevation -> y, board at z = 0, scene at +z",
                  ant.design_frequency_hz, unit));
  notes.push_back(fmt::format(
      "sample k -> f_k = f_start + slope (t_adc + k / f_s) = {:.6g} Hz + {:.6g} Hz/s ({:.6g} s "
      "+ k / {:.6g} Hz); the residual video phase is neglected",
      chirp.start_frequency_hz, chirp.slope_hz_per_s, chirp.adc_start_time_s, chirp.adc_sample_rate_hz));
  {
    std::string idx;
    for (int k : chosen) idx += fmt::format("{}{}", idx.empty() ? "" : " ", k);
    notes.push_back(fmt::format("samples chosen: {} of {} (0-based {}), {:.6g} to {:.6g} Hz", nk, samples,
                                idx, chosen_hz.front(), chosen_hz.back()));
  }
  notes.push_back(o.conjugate
                      ? "phase convention: I - jQ (--conjugate)"
                      : "phase convention: I + jQ taken to follow nfmimo's exp(-j k R); --conjugate for the "
                        "opposite");
  return result;
}

TiCalibration estimate_ti_calibration(const ImportResult& capture, const std::array<double, 3>& target) {
  const RadarSystem& s = capture.set.system;
  const auto model = model_response(s, target);
  const int nk = s.frequencies(), nt = s.transmitters(), nr = s.receivers();
  const auto& idx = capture.provenance.frequency_indices;
  require(nk >= 2, "--calibrate needs at least two samples per chirp (the phase slope is fitted over them)");
  for (int k = 0; k < nk; ++k)
    require(idx[std::size_t(k)] == k,
            "--calibrate uses every sample of the chirp: leave out --freqs and --freq-range");
  TiCalibration c;
  c.transmitters = nt;
  c.receivers = nr;
  c.samples = int(capture.provenance.source_frequency_count);
  c.gain.resize(std::size_t(nt) * nr);
  c.phase_slope.resize(c.gain.size());
  for (int t = 0; t < nt; ++t)
    for (int r = 0; r < nr; ++r) {
      // ratio_k = measured / model = g exp(j slope idx_k): the slope from consecutive ratios (per sample
      // index step), then g as the mean of the de-rotated ratios.
      std::vector<std::complex<double>> ratio(static_cast<std::size_t>(nk));
      for (int k = 0; k < nk; ++k) {
        const std::size_t i = (std::size_t(k) * nt + t) * nr + r;
        const cfloat m = capture.set.measurements[i];
        ratio[std::size_t(k)] = std::complex<double>(m.real(), m.imag()) / model[i];
      }
      std::complex<double> acc = 0;
      for (int k = 1; k < nk; ++k) acc += ratio[std::size_t(k)] * std::conj(ratio[std::size_t(k - 1)]);
      const double slope = std::arg(acc);
      std::complex<double> g = 0;
      for (int k = 0; k < nk; ++k)
        g += ratio[std::size_t(k)] * std::polar(1.0, -slope * double(idx[std::size_t(k)]));
      c.gain[std::size_t(t) * nr + r] = g / double(nk);
      c.phase_slope[std::size_t(t) * nr + r] = slope;
    }
  return c;
}

void write_ti_calibration(const std::string& path, const TiCalibration& c, const ImportProvenance& provenance,
                          bool overwrite) {
  AtomicOutput out(path, overwrite);
  {
    h5::File f(out.temporary_path(), h5::File::Mode::Create);
    f.set_attribute("/", "nfmimo_format", std::string("ti-calibration"));
    f.set_attribute("/", "nfmimo_version", 1LL);
    std::vector<cdouble> g(c.gain.begin(), c.gain.end());
    f.write<cdouble>("/gain", h5::Dims{std::size_t(c.transmitters), std::size_t(c.receivers)}, g.data());
    f.write<double>("/phase_slope", h5::Dims{std::size_t(c.transmitters), std::size_t(c.receivers)},
                    c.phase_slope.data());
    f.set_attribute("/phase_slope", "units", std::string("rad per ADC sample"));
    f.set_attribute("/", "samples_per_chirp", (long long)c.samples);
    write_provenance(f, provenance);
    f.flush();
  }
  out.commit();
}

TiCalibration read_ti_calibration(const std::string& path) {
  const h5::File f(path, h5::File::Mode::Read);
  if (f.string_attribute("/", "nfmimo_format").value_or("") != "ti-calibration")
    throw InputError(fmt::format(
        "{}: is not an nfmimo ti-calibration file (made by import ti-cascade --calibrate)", path));
  TiCalibration c;
  const auto g = f.read<cdouble>("/gain");
  const auto s = f.read<double>("/phase_slope");
  if (g.dims.size() != 2 || s.dims != g.dims)
    throw InputError(fmt::format("{}: /gain and /phase_slope must both be [T, R]", path));
  c.transmitters = int(g.dims[0]);
  c.receivers = int(g.dims[1]);
  c.samples = int(f.int_attribute("/", "samples_per_chirp").value_or(0));
  c.gain.assign(g.data.begin(), g.data.end());
  c.phase_slope = s.data;
  for (std::size_t i = 0; i < c.gain.size(); ++i)
    if (!std::isfinite(c.gain[i].real()) || !std::isfinite(c.gain[i].imag()) || std::abs(c.gain[i]) == 0 ||
        !std::isfinite(c.phase_slope[i]))
      throw InputError(
          fmt::format("{}: channel {} has a zero or non-finite calibration", f.where("/gain"), i));
  return c;
}

}  // namespace nfmimo
