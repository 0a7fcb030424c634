// `swrun bench`: the subcommand's flags and its run (engine/bench.h does the measuring).
#pragma once
#include <string>

#include <CLI/CLI.hpp>

namespace swrun {

struct BenchCli {
  std::string model, prompts = "512", gens = "128", depths = "0", attn = "model", output = "md", backend = "auto";
  int repetitions = 5, ubatch = 0, threads = 0;  // ubatch 0: the backend's default
  bool no_graph = false;
};

CLI::App* add_bench_subcommand(CLI::App& app, BenchCli& cli);
int run_bench_subcommand(const BenchCli& cli);

}  // namespace swrun
