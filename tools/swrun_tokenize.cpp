#include "tools/swrun_tokenize.h"

#include <CLI/CLI.hpp>

#include <cstdio>

#include "runtime/common.h"
#include "runtime/gguf.h"
#include "runtime/tokenizer.h"
#include "tools/cli_files.h"

namespace swrun {
namespace {

// A piece as a quoted, one-line string: valid UTF-8 as it is; quotes, backslashes, control characters and bytes
// that are not UTF-8 (a byte token alone) escaped.
std::string quoted(const std::string& bytes) {
  std::string out = "'";
  for (size_t pos = 0; pos < bytes.size();) {
    const unsigned char c = static_cast<unsigned char>(bytes[pos]);
    const size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    char hex[8];
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c == '\'' || c == '\\') out += std::string{'\\', static_cast<char>(c)};
    else if (c >= 0x20 && c < 0x7F) out += static_cast<char>(c);
    else if (c >= 0x80 && pos + len <= bytes.size() &&
             sanitize_utf8(bytes.substr(pos, len)) == bytes.substr(pos, len)) {
      out.append(bytes, pos, len);
      pos += len;
      continue;
    } else {
      std::snprintf(hex, sizeof hex, "\\x%02X", c);
      out += hex;
    }
    pos += 1;
  }
  return out + "'";
}

}  // namespace

TokenizeCommand::TokenizeCommand(CLI::App& app) {
  command_ = app.add_subcommand("tokenize", "print the token ids of a text (needs only the model's vocabulary)");
  command_->add_option("-m,--model", model_, "GGUF file with a vocabulary")->required()->check(CLI::ExistingFile);
  CLI::Option* prompt = command_->add_option("-p,--prompt", prompt_, "text to tokenize");
  CLI::Option* file = command_->add_option("-f,--file", prompt_files_,
                                           "read the text from a file (several files: one result per file)");
  prompt->excludes(file);
  command_->add_flag("--ids", ids_only_, "print only the ids, space-separated on one line");
  command_->add_flag("--no-bos", no_bos_, "do not add BOS even when the vocabulary asks for it");
  command_->add_flag("--parse-special", parse_special_,
                     "turn control tokens written in the text (e.g. <|im_start|>) into their ids");
}

bool TokenizeCommand::chosen() const { return command_->parsed(); }

int TokenizeCommand::run() const {
  const bool has_prompt = command_->count("--prompt") > 0, has_file = command_->count("--file") > 0;
  if (has_prompt == has_file) fail("tokenize: give exactly one of -p/--prompt or -f/--file");
  auto file = GgufFile::open(model_);
  auto tok = Tokenizer::from_gguf(*file);
  std::string out;
  for (const std::string& path : has_file ? prompt_files_ : std::vector<std::string>{""})
    print_tokens(*tok, has_file ? read_whole_file(path, "text file") : prompt_, out);
  std::fputs(out.c_str(), stdout);
  return 0;
}

void TokenizeCommand::print_tokens(const Tokenizer& tok, const std::string& text, std::string& out) const {
  const std::vector<int32_t> ids = tok.encode(text, tok.add_bos() && !no_bos_, parse_special_);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids_only_) {
      out += (i ? " " : "") + std::to_string(ids[i]);
      continue;
    }
    const TokenType type = tok.type(ids[i]);
    const bool special = type == kControl || type == kUnknown;  // shown by name, as llama-tokenize does
    char id[16];
    std::snprintf(id, sizeof id, "%6d", ids[i]);
    out += std::string(id) + " -> " + quoted(special ? tok.piece(ids[i]) : tok.surface(ids[i])) + "\n";
  }
  if (ids_only_) out += "\n";
}

}  // namespace swrun
