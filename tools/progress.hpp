// A progress bar for long jobs on a terminal: rate and time left, redrawn at most ten times a second. Silent
// when stderr is not a terminal (CI logs, pipes), so logs stay clean.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace nfmimo {

class ProgressBar {
 public:
  ProgressBar(std::string label, std::size_t total, std::string unit = "items")
      : label_(std::move(label)),
        unit_(std::move(unit)),
        total_(total),
        enabled_(isatty(STDERR_FILENO) == 1),
        start_(std::chrono::steady_clock::now()) {}
  ~ProgressBar() { finish(); }

  bool enabled() const { return enabled_; }

  void update(std::size_t done, const std::string& extra = "") {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done < total_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double rate = elapsed > 0 ? done / elapsed : 0;
    const double left = rate > 0 && total_ > done ? (total_ - done) / rate : 0;
    constexpr int width = 28;
    const int filled = total_ ? static_cast<int>(width * double(done) / total_) : width;
    std::string bar(filled, '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%s [%s] %zu/%zu %s  %.1f %s/s  %s left %s\033[K", label_.c_str(), bar.c_str(),
                 done, total_, unit_.c_str(), rate, unit_.c_str(), format_seconds(left).c_str(),
                 extra.c_str());
    std::fflush(stderr);
    drawn_ = true;
  }

  void finish() {
    if (enabled_ && drawn_) std::fprintf(stderr, "\n");
    drawn_ = false;
  }

  static std::string format_seconds(double s) {
    char buf[32];
    if (s >= 3600)
      std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(s / 60) % 60);
    else if (s >= 60)
      std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(s) % 60);
    else
      std::snprintf(buf, sizeof buf, "%.0fs", s);
    return buf;
  }

 private:
  std::string label_, unit_;
  std::size_t total_;
  bool enabled_, drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_{};
};

}  // namespace nfmimo
