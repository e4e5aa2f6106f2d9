// SIGINT / SIGTERM ask a long job (synthesize, train) to stop at its next safe point, leaving a resumable
// file; a second signal ends the program at once (the handler restores the default action).
#pragma once

#include <atomic>
#include <csignal>

namespace nfmimo {

inline std::atomic<bool>& stop_requested() {
  static std::atomic<bool> flag{false};
  return flag;
}

extern "C" inline void nfmimo_on_stop_signal(int sig) {
  stop_requested().store(true);
  std::signal(sig, SIG_DFL);
}

// Installs the handlers for its lifetime (and clears the flag).
class StopSignals {
 public:
  StopSignals() {
    stop_requested().store(false);
    old_int_ = std::signal(SIGINT, nfmimo_on_stop_signal);
    old_term_ = std::signal(SIGTERM, nfmimo_on_stop_signal);
  }
  ~StopSignals() {
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  void (*old_int_)(int);
  void (*old_term_)(int);
};

}  // namespace nfmimo
