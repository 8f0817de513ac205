#!/usr/bin/env python3
"""Real-shaped Llama models with random bf16 weights, for GPU checks and
benchmarks where real checkpoints cannot be downloaded.

    python3 tests/gpu/make_model.py {llama-1b|llama-8b} OUT_DIR

Writes config.json, model.safetensors, a word-level tokenizer.json whose
tokens are `w0`..`wN` (so a prompt of N words is N tokens) and
tokenizer_config.json. Weights are N(0, 0.02²), norms 1.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

SHAPES = {
    # Llama-3.2-1B and Llama-3.1-8B shapes.
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=64, tie_word_embeddings=True),
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
}
VOCAB = 128256


def tensors(cfg):
    h, i, d = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    shapes = {"model.embed_tokens.weight": (VOCAB, h), "model.norm.weight": (h,)}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (VOCAB, h)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        shapes.update({p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
                       p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
                       p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q),
                       p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
                       p + "mlp.down_proj.weight": (h, i)})
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            out[name] = torch.ones(shape, dtype=torch.bfloat16)
        else:
            out[name] = (torch.randn(shape, generator=gen, device="cuda", dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()
    return out


def main():
    shape, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    cfg = dict(SHAPES[shape], architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=VOCAB,
               max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
               rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
               torch_dtype="bfloat16", bos_token_id=0, eos_token_id=1)
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
    vocab = {f"w{i}": i for i in range(VOCAB)}
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
           "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
           "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w2"}}
    json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"))
    json.dump({"add_bos_token": False}, open(os.path.join(out, "tokenizer_config.json"), "w"))
    save_file(tensors(cfg), os.path.join(out, "model.safetensors"))
    print(shape, "written to", out)


if __name__ == "__main__":
    main()
