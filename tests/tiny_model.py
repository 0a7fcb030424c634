"""A tiny gemma3-shaped GGUF with a byte-fallback SentencePiece vocabulary, written with the gguf package: enough
for the CLI tests to load, tokenize and generate on the CPU backend."""
import numpy as np
import gguf

rng = np.random.default_rng(1)


def tiny_model(path, arch="gemma3", bad_type=None, n_layer=2):
    """bad_type: give one matrix a type the runtime does not read (IQ4_NL)."""
    dim, heads, hd, ffn = 64, 2, 32, 128
    pieces = ["<pad>", "</s>", "<s>", "<unk>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581", "\u2581a", "a", "b"]
    types = [3, 3, 3, 2] + [6] * 256 + [1, 1, 1, 1]
    w = gguf.GGUFWriter(path, arch)
    w.add_uint32(f"{arch}.context_length", 128)
    w.add_uint32(f"{arch}.embedding_length", dim)
    w.add_uint32(f"{arch}.block_count", n_layer)
    w.add_uint32(f"{arch}.feed_forward_length", ffn)
    w.add_uint32(f"{arch}.attention.head_count", heads)
    w.add_uint32(f"{arch}.attention.head_count_kv", 1)
    w.add_uint32(f"{arch}.attention.key_length", hd)
    w.add_uint32(f"{arch}.attention.value_length", hd)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_uint32(f"{arch}.attention.sliding_window", 8)
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_array("tokenizer.ggml.tokens", pieces)
    w.add_array("tokenizer.ggml.scores", [0.0] * len(pieces))
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_uint32("tokenizer.ggml.bos_token_id", 2)
    w.add_uint32("tokenizer.ggml.eos_token_id", 1)
    w.add_uint32("tokenizer.ggml.unknown_token_id", 3)
    w.add_uint32("tokenizer.ggml.padding_token_id", 0)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_bool("tokenizer.ggml.add_space_prefix", False)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32) * 0.1
    w.add_tensor("token_embd.weight", f32(len(pieces), dim))
    w.add_tensor("output_norm.weight", np.ones(dim, np.float32))
    for l in range(n_layer):
        p = f"blk.{l}."
        for n in ["attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"]:
            w.add_tensor(p + n + ".weight", np.ones(dim, np.float32))
        w.add_tensor(p + "attn_q_norm.weight", np.ones(hd, np.float32))
        w.add_tensor(p + "attn_k_norm.weight", np.ones(hd, np.float32))
        w.add_tensor(p + "attn_q.weight", f32(heads * hd, dim))
        w.add_tensor(p + "attn_k.weight", f32(hd, dim))
        w.add_tensor(p + "attn_v.weight", f32(hd, dim))
        w.add_tensor(p + "attn_output.weight", f32(dim, heads * hd))
        w.add_tensor(p + "ffn_gate.weight", f32(ffn, dim))
        w.add_tensor(p + "ffn_up.weight", f32(ffn, dim))
        if l == 1 and bad_type is not None:
            # IQ4_NL blocks (32 elements in 18 bytes): a type the runtime does not read
            w.add_tensor(p + "ffn_down.weight", rng.integers(0, 255, (dim, ffn // 32 * 18), dtype=np.uint8),
                         raw_shape=(dim, ffn // 32 * 18), raw_dtype=gguf.GGMLQuantizationType.IQ4_NL)
        else:
            w.add_tensor(p + "ffn_down.weight", f32(dim, ffn))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
