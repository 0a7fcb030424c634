// Renders a `swrun bench` report the way llama-bench prints its own: a markdown table (model, size, params,
// backend, threads or ngl, test, t/s, plus our attn column), CSV with one quoted field per column, or a JSON array
// with one object per row carrying the per-repetition samples.
#pragma once
#include <string>

#include "engine/bench.h"

namespace swrun {

enum class BenchFormat { Markdown, Csv, Json };

BenchFormat parse_bench_format(const std::string& name);  // "md", "csv", "json"; throws Error otherwise

std::string render(const BenchReport& report, BenchFormat format);

}  // namespace swrun
