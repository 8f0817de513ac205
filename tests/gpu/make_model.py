#!/usr/bin/env python3
"""Real-shaped models with random bf16 weights, for GPU checks and
benchmarks where real checkpoints cannot be downloaded.

    python3 tests/gpu/make_model.py {llama-1b|llama-8b|gemma3-4b|qwen3-moe|gemma4-e|gemma3-small|qwen3-moe-small|gemma4-small|gemma4-moe-small} OUT_DIR

gemma3-4b is Gemma 3 4B's text model (34 layers, 5 local with a 1024-token
window to each global one); qwen3-moe is 8 of Qwen3-30B-A3B's 48 layers at
their real dimensions (128 experts, 8 per token). gemma4-e is transformers'
default Gemma4TextConfig (hidden 2304, 30 layers, 8 heads and 4 KV heads of
256, global heads of 512 with proportional RoPE, a 512-token window, per-layer
inputs of 256, vocabulary 262,144) with its last 10 layers sharing KV and
double-wide MLPs; Gemma 4's tensors are named by transformers' own model.

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
    "gemma3-4b": dict(model_type="gemma3_text", architectures=["Gemma3ForCausalLM"], hidden_size=2560,
                      intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8, num_key_value_heads=4,
                      head_dim=256, tie_word_embeddings=True, vocab_size=262208, sliding_window=1024,
                      layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(34)],
                      query_pre_attn_scalar=256, rope_theta=1000000.0, rope_local_base_freq=10000.0,
                      rope_scaling={"rope_type": "linear", "factor": 8.0}, hidden_activation="gelu_pytorch_tanh",
                      rms_norm_eps=1e-6, max_position_embeddings=131072),
    # Small models with the fused kernels' head dims, windows the test prompts pass, for CUDA-vs-CPU checks.
    "gemma3-small": dict(model_type="gemma3_text", architectures=["Gemma3ForCausalLM"], hidden_size=512,
                         intermediate_size=1024, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=128, tie_word_embeddings=True, vocab_size=4096, sliding_window=64,
                         layer_types=["sliding_attention"] * 5 + ["full_attention"], query_pre_attn_scalar=128,
                         rope_theta=1000000.0, rope_local_base_freq=10000.0, hidden_activation="gelu_pytorch_tanh",
                         rms_norm_eps=1e-6, max_position_embeddings=4096),
    "qwen3-moe-small": dict(model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"], hidden_size=512,
                            intermediate_size=1024, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                            head_dim=64, tie_word_embeddings=False, vocab_size=4096, moe_intermediate_size=256,
                            num_experts=16, num_experts_per_tok=4, norm_topk_prob=True, decoder_sparse_step=1,
                            mlp_only_layers=[], rope_theta=1000000.0, rms_norm_eps=1e-6, max_position_embeddings=4096),
    "qwen3-moe": dict(model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"], hidden_size=2048,
                      intermediate_size=6144, num_hidden_layers=8, num_attention_heads=32, num_key_value_heads=4,
                      head_dim=128, tie_word_embeddings=False, vocab_size=151936, moe_intermediate_size=768,
                      num_experts=128, num_experts_per_tok=8, norm_topk_prob=True, decoder_sparse_step=1,
                      mlp_only_layers=[], rope_theta=1000000.0, rms_norm_eps=1e-6, max_position_embeddings=40960),
    # Gemma 4: tensor names and shapes from transformers' Gemma4ForCausalLM (made on the meta device).
    "gemma4-e": dict(model_type="gemma4_text", architectures=["Gemma4ForCausalLM"], num_kv_shared_layers=10,
                     use_double_wide_mlp=True, final_logit_softcapping=30.0, max_position_embeddings=131072),
    # 512-wide global heads (the fused kernels' widest), KV sharing, per-layer inputs; then keys as values
    # with one global KV head, and experts beside the MLP.
    "gemma4-small": dict(model_type="gemma4_text", architectures=["Gemma4ForCausalLM"], hidden_size=512,
                         intermediate_size=1024, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=128, global_head_dim=512, vocab_size=4096, vocab_size_per_layer_input=4096,
                         hidden_size_per_layer_input=64, sliding_window=64, num_kv_shared_layers=2,
                         use_double_wide_mlp=True,
                         layer_types=["sliding_attention"] * 2 + ["full_attention"] + ["sliding_attention"] * 2
                         + ["full_attention"], max_position_embeddings=4096),
    "gemma4-moe-small": dict(model_type="gemma4_text", architectures=["Gemma4ForCausalLM"], hidden_size=512,
                             intermediate_size=1024, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                             head_dim=128, global_head_dim=256, num_global_key_value_heads=1, attention_k_eq_v=True,
                             vocab_size=4096, hidden_size_per_layer_input=0, sliding_window=64,
                             layer_types=["sliding_attention"] * 3 + ["full_attention"], enable_moe_block=True,
                             num_experts=16, top_k_experts=4, moe_intermediate_size=256, max_position_embeddings=4096),
}
VOCAB = 128256
LLAMA = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=VOCAB,
             max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
             rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                           "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})


def gemma4_shapes(cfg):
    """Gemma 4's tensors as transformers names and shapes them (its stored buffers included)."""
    import transformers
    config = transformers.Gemma4TextConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type", "torch_dtype")})
    with torch.device("meta"):
        model = transformers.Gemma4ForCausalLM(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    return config.to_dict(), shapes


def tensors(cfg, shapes=None):
    if shapes is not None:
        return fill(shapes, "gemma4_text")
    h, i, d = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    vocab, kind = cfg["vocab_size"], cfg["model_type"]
    shapes = {"model.embed_tokens.weight": (vocab, h), "model.norm.weight": (h,)}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (vocab, h)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        shapes.update({p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
                       p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
                       p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q)})
        if kind != "llama":
            shapes.update({p + "self_attn.q_norm.weight": (d,), p + "self_attn.k_norm.weight": (d,)})
        if kind == "gemma3_text":
            shapes.update({p + "pre_feedforward_layernorm.weight": (h,), p + "post_feedforward_layernorm.weight": (h,)})
        if kind == "qwen3_moe":
            m = cfg["moe_intermediate_size"]
            shapes[p + "mlp.gate.weight"] = (cfg["num_experts"], h)
            for e in range(cfg["num_experts"]):
                x = f"{p}mlp.experts.{e}."
                shapes.update({x + "gate_proj.weight": (m, h), x + "up_proj.weight": (m, h), x + "down_proj.weight": (h, m)})
        else:
            shapes.update({p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
                           p + "mlp.down_proj.weight": (h, i)})
    return fill(shapes, kind)


def fill(shapes, kind):
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            # Gemma 3's norms scale by 1 + w (Gemma 4's, and its scales, by w). Gemma 4 scores unscaled:
            # q norms of 1/√head_dim give its scores the spread of scaled attention.
            one = 0.0 if kind == "gemma3_text" else 1.0
            if kind == "gemma4_text" and name.endswith("self_attn.q_norm.weight"):
                one = shape[0] ** -0.5
            out[name] = torch.full(shape, one, dtype=torch.bfloat16)
        else:
            # Gemma 4's router sees its input RMS-normed and divided by √hidden: weights of 0.02 would give
            # logits within bf16's rounding of each other, every choice of experts a near-tie.
            std = 1.0 if name.endswith("router.proj.weight") else 0.02
            out[name] = (torch.randn(shape, generator=gen, device="cuda", dtype=torch.float32) * std).to(torch.bfloat16).cpu()
    return out


def main():
    shape, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    base = {} if "model_type" in SHAPES[shape] else LLAMA
    cfg = dict(base, **SHAPES[shape], torch_dtype="bfloat16", bos_token_id=0, eos_token_id=1)
    shapes = None
    if cfg["model_type"] == "gemma4_text":
        written, shapes = gemma4_shapes(cfg)
        cfg = dict(written, architectures=cfg["architectures"], torch_dtype="bfloat16")
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
    vocab = {f"w{i}": i for i in range(cfg["vocab_size"])}
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
           "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
           "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w2"}}
    json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"))
    json.dump({"add_bos_token": False}, open(os.path.join(out, "tokenizer_config.json"), "w"))
    save_file(tensors(cfg, shapes), os.path.join(out, "model.safetensors"))
    print(shape, "written to", out)


if __name__ == "__main__":
    main()
