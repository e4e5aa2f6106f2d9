// The subcommands of the `nfmimo` binary. Each adds itself to the application; errors are thrown as
// nfmimo::Error (exit code 2 with one clear message) and handled in main.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

#include "radar/system.hpp"

namespace nfmimo {

void add_reconstruct_command(CLI::App& app);
void add_simulate_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_synthesize_command(CLI::App& app);
void add_merge_command(CLI::App& app);

// Thrown by a command to end the program with this exit code after it has reported what happened (for example
// 130 when a run was interrupted by a signal and left a resumable partial file).
struct CommandExit {
  int code;
};
void add_evaluate_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_import_command(CLI::App& app);
void add_interop_commands(
    CLI::App& app);  // import keras (after add_import_command), export (tools/cmd_interop.cpp)

// The command line the program was started with (for records such as a model's training record).
void set_command_line(int argc, char** argv);
const std::string& command_line();

// Shared option parsing.
// Makes every integer option of `app` and its subcommands strict: plain decimal digits (no 1e18, no hex or
// octal, no fraction) whose value fits the 64-bit type, else a parse error naming the option. Each command
// still checks its own ranges.
void make_integer_options_strict(CLI::App& app);
// The largest --threads accepted: 4x the hardware threads (beyond that the OpenMP runtime only slows down,
// and very large counts crash it).
int max_threads();
// SNR in dB accepted by every option that adds noise: finite and within [kMinSnrDb, kMaxSnrDb] (below, the
// noise overflows float32; above, it is below float32's resolution anyway).
inline constexpr double kMinSnrDb = -100, kMaxSnrDb = 300;
void check_snr_db(double snr_db, const std::string& option);
// "x0:x1:n,y0:y1:n,z0:z1:n" (metres) or "paper".
ImagingGrid parse_grid(const std::string& text);

// --system: a name ("paper", with `freqs` frequencies) or an nfmimo file (for example one written by
// `nfmimo import`) whose /system, and /grid when present, are taken. --freqs is refused with a file (its K is
// the file's). InputError when the text is neither a known name nor a readable file.
struct SystemChoice {
  RadarSystem system;
  std::optional<ImagingGrid> grid;  // the file's /grid
  std::string file;                 // empty for a named system
};
SystemChoice resolve_system_option(const std::string& text, int freqs, bool freqs_given);

}  // namespace nfmimo
