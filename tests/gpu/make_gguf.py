#!/usr/bin/env python3
"""A Llama-3.1-8B-shape GGUF with random f16 weights around a real
vocabulary, for benchmarking llmctl against llama.cpp on the same file
where real checkpoints cannot be downloaded.

    python3 tests/gpu/make_gguf.py GGUF_PY_DIR VOCAB.gguf OUT.gguf

GGUF_PY_DIR is llama.cpp's `gguf-py` (its source distribution carries it);
VOCAB.gguf a vocabulary-only file such as llama.cpp's
`ggml-vocab-llama-bpe.gguf`, whose `tokenizer.*` keys are copied. Weights
are N(0, 0.02²) made on the GPU, norms 1. Quantize the result with
llama.cpp's `llama-quantize`.
"""
import os
import sys

sys.path.insert(0, sys.argv[1])
import gguf  # noqa: E402
import numpy as np  # noqa: E402

# MAKE_GGUF_TINY=1: the same file at toy size, with numpy alone (a smoke test off the GPU machine).
TINY = os.environ.get("MAKE_GGUF_TINY") == "1"
HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, HEAD_DIM = (64, 128, 2, 4, 2, 16) if TINY else (4096, 14336, 32, 32, 8, 128)


def main(vocab_path, out):
    reader = gguf.GGUFReader(vocab_path)
    writer = gguf.GGUFWriter(out, "llama")
    writer.add_name("llmctl random Llama-3.1-8B shape")
    writer.add_context_length(131072)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(500000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    vocab = 0
    for field in reader.fields.values():
        if not field.name.startswith("tokenizer."):
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            values = [field.contents(i) for i in range(len(field.data))]
            writer.add_array(field.name, values)
            if field.name == "tokenizer.ggml.tokens":
                vocab = len(values)
        elif kind == gguf.GGUFValueType.STRING:
            writer.add_string(field.name, field.contents())
        elif kind == gguf.GGUFValueType.BOOL:
            writer.add_bool(field.name, bool(field.contents()))
        else:
            writer.add_uint32(field.name, int(field.contents()))
    if TINY:
        rng = np.random.default_rng(0)

        def random(rows, cols):
            return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)
    else:
        import torch

        gen = torch.Generator(device="cuda").manual_seed(0)

        def random(rows, cols):
            w = torch.randn((rows, cols), generator=gen, device="cuda", dtype=torch.float32) * 0.02
            return w.to(torch.float16).cpu().numpy()

    def matrix(name, rows, cols):
        writer.add_tensor(name, random(rows, cols))

    def norm(name):
        writer.add_tensor(name, np.ones(HIDDEN, dtype=np.float32))

    matrix("token_embd.weight", vocab, HIDDEN)
    norm("output_norm.weight")
    matrix("output.weight", vocab, HIDDEN)
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    for layer in range(LAYERS):
        p = f"blk.{layer}."
        norm(p + "attn_norm.weight")
        norm(p + "ffn_norm.weight")
        matrix(p + "attn_q.weight", q, HIDDEN)
        matrix(p + "attn_k.weight", kv, HIDDEN)
        matrix(p + "attn_v.weight", kv, HIDDEN)
        matrix(p + "attn_output.weight", HIDDEN, q)
        matrix(p + "ffn_gate.weight", FFN, HIDDEN)
        matrix(p + "ffn_up.weight", FFN, HIDDEN)
        matrix(p + "ffn_down.weight", HIDDEN, FFN)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main(sys.argv[2], sys.argv[3])
