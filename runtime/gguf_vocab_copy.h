// Copies a vocabulary (the tokenizer.* keys of a GGUF: a model or a vocab-only file) into a GgufWriter, optionally
// resized to a model's embedding rows the way llama.cpp's converter pads a vocabulary: entries past the
// tokenizer's own are unused tokens named "[PAD<id>]" (token type 5, score -1000 where the vocabulary has scores),
// as in real Qwen2.5 files (151665 tokenizer entries, 152064 rows) or Gemma 3 4B and larger (262208 rows).
#pragma once
#include <cstdint>

#include "runtime/gguf.h"
#include "runtime/gguf_writer.h"

namespace swrun {

// Entries of tokenizer.ggml.tokens; throws Error when the file has no vocabulary.
int64_t vocab_token_count(const GgufFile& vocab);

// Sets every tokenizer.* key of `vocab` on `w`. n_vocab >= 0 pads (or truncates) tokens, scores and token_type
// to n_vocab entries; truncation refuses to cut a special token (bos/eos/... ids) or a BPE vocabulary (its merges
// name the tokens). n_vocab < 0 copies the vocabulary as it is.
void copy_tokenizer(const GgufFile& vocab, GgufWriter& w, int64_t n_vocab = -1);

}  // namespace swrun
