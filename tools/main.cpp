// nfmimo: real-time 3D near-field MIMO radar imaging. One binary, one subcommand per job.
#include <omp.h>

#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "radar/error.hpp"
#include "tools/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "nfmimo: real-time 3D near-field MIMO radar imaging (physics operators + learned reconstruction)"};
  app.set_version_flag("--version", std::string("nfmimo ") + NFMIMO_VERSION);
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "CPU threads (default: all cores; at most 4x the hardware threads)")
      ->check(CLI::Range(0, nfmimo::max_threads()));
  app.parse_complete_callback([&] {
    if (threads > 0) omp_set_num_threads(threads);
  });
  nfmimo::add_reconstruct_command(app);
  nfmimo::add_simulate_command(app);
  nfmimo::add_info_command(app);
  nfmimo::add_bench_command(app);
  nfmimo::add_synthesize_command(app);
  nfmimo::add_merge_command(app);
  nfmimo::add_evaluate_command(app);
  nfmimo::add_train_command(app);
  nfmimo::add_import_command(app);
  nfmimo::add_interop_commands(app);
  nfmimo::make_integer_options_strict(app);
  nfmimo::set_command_line(argc, argv);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  } catch (const nfmimo::CommandExit& e) {
    return e.code;
  } catch (const nfmimo::Error& e) {
    std::fprintf(stderr, "nfmimo: error: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr,
                 "nfmimo: error: out of host memory (a size given or declared is too large for this machine: "
                 "reduce --batch, --count or the grid, or use a smaller file)\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nfmimo: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
