#!/usr/bin/env python3
"""Independent reference for the decoder families llmctl implements: tiny
random-weight models made by Hugging Face transformers itself (Llama with
Llama 3 RoPE scaling, Llama with `attention_bias` (its output projection
biased too), Mistral with and without a sliding window shorter than
the prompt, Qwen2 with QKV biases, Qwen3 with q/k norms and a head_dim that is
not hidden/heads (and with `use_sliding_window` from `max_window_layers` on), SmolLM3 with layers without RoPE, Phi-3/Phi-4-mini with fused projections,
partial rotary embeddings and LongRoPE, gpt-oss with attention sinks, YaRN and
biased experts (also with its experts in MXFP4, as OpenAI publishes it), Gemma 3 with local and
global layers and soft-capped logits as a text model and inside its
multimodal checkpoint, Gemma 4 with wider global heads, KV sharing, per-layer
inputs and, in another, keys as values and experts beside the MLP, as a text
model and inside its multimodal checkpoint, Qwen3-MoE with routed experts and a dense layer, Qwen3.5 with
gated delta-rule linear-attention layers beside gated full-attention ones, as a text model,
inside its multimodal checkpoint, and with routed and shared experts (Qwen3.5-MoE)),
saved as safetensors, and their float32 CPU logits for a fixed token sequence.

    python3 tests/reference/tiny_families_reference.py OUT_DIR

writes OUT_DIR/<family>/{config.json,model.safetensors} and
OUT_DIR/tiny_golden.json (committed under tests/reference/tiny/);

    python3 tests/reference/tiny_families_reference.py OUT_DIR FAMILY...

remakes only the named families and merges them into OUT_DIR's existing
tiny_golden.json (the others keep their committed goldens and versions).
"""
import json
import os
import sys

import torch
import transformers
from safetensors import safe_open
from transformers import AutoModelForCausalLM

COMMON = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
              rms_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=0.2)
# Two local layers (window 8, their own RoPE base) and one global layer (linear
# RoPE scaling), a query scale that is not head_dim, soft-capped final logits.
GEMMA3 = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, head_dim=32, max_position_embeddings=256, rms_norm_eps=1e-6,
              initializer_range=0.2, sliding_window=8, query_pre_attn_scalar=24, final_logit_softcapping=5.0,
              layer_types=["sliding_attention", "sliding_attention", "full_attention"],
              rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0},
                               "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})

# Qwen3.5: three gated delta-rule (linear attention) layers and one full-attention layer (the
# config's default pattern), a conv kernel of 4, two key heads shared by four value heads;
# full attention with an output gate, q/k norms and RoPE on a quarter of each head. Weights of std
# 0.1, not 0.2: at 0.2 transformers' own f32 logits differ by 1.3e-4 between its chunked and its
# recurrent form of the delta rule (2.7e-4 from float64), more than the test's tolerance; at 0.1
# they are 1.1e-5 from float64.
QWEN3_5 = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
               num_key_value_heads=2, head_dim=32, max_position_embeddings=256, rms_norm_eps=1e-6,
               initializer_range=0.1, tie_word_embeddings=False, linear_conv_kernel_dim=4, linear_key_head_dim=16,
               linear_value_head_dim=24, linear_num_key_heads=2, linear_num_value_heads=4,
               layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"],
               rope_parameters={"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
                                "mrope_section": [2, 1, 1], "mrope_interleaved": True})
# Qwen3.5-MoE: every layer routes each token to 2 of 4 experts, beside a gated shared expert.
QWEN3_5_MOE = {**{k: v for k, v in QWEN3_5.items() if k != "intermediate_size"}, "num_experts": 4,
               "num_experts_per_tok": 2, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 48}


def qwen3_5_multimodal():
    """Qwen3.5 as the Hub carries it: the text model inside an image-text checkpoint."""
    from transformers.models.qwen3_5 import Qwen3_5Config, Qwen3_5TextConfig
    vision = dict(depth=1, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64, patch_size=14,
                  num_position_embeddings=16)
    return Qwen3_5Config(text_config=Qwen3_5TextConfig(**QWEN3_5).to_dict(), vision_config=vision)


# Gemma 4's text model as E2B/E4B build it: local layers (window 8, head width 16) and
# global ones (head width 32, proportional RoPE over a quarter of each head), values
# normed, the last two layers sharing the keys and values of the last earlier layer of
# their type with double-wide MLPs, per-layer input embeddings, soft-capped logits.
GEMMA4 = dict(vocab_size=128, hidden_size=64, intermediate_size=48, num_hidden_layers=5, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, global_head_dim=32, max_position_embeddings=256,
              rms_norm_eps=1e-6, initializer_range=0.2, sliding_window=8, final_logit_softcapping=5.0,
              layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention",
                           "full_attention"],
              num_kv_shared_layers=2, use_double_wide_mlp=True, hidden_size_per_layer_input=16,
              vocab_size_per_layer_input=128, pad_token_id=0, bos_token_id=2, eos_token_id=1)
# As 26B-A4B and 31B build it: keys as values in the global layers, which have one KV head,
# no per-layer inputs, 2 of 4 experts beside every MLP.
GEMMA4_MOE = dict(vocab_size=128, hidden_size=64, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, global_head_dim=32, num_global_key_value_heads=1,
                  attention_k_eq_v=True, max_position_embeddings=256, rms_norm_eps=1e-6, initializer_range=0.2,
                  sliding_window=8, layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                  hidden_size_per_layer_input=0, enable_moe_block=True, num_experts=4, top_k_experts=2,
                  moe_intermediate_size=32, pad_token_id=0, bos_token_id=2, eos_token_id=1)


def gemma4_multimodal():
    """Gemma 4 as the Hub carries it: the text model inside an image(-audio)-text checkpoint."""
    vision = transformers.Gemma4VisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                             num_attention_heads=2, num_key_value_heads=2, head_dim=16,
                                             patch_size=4, position_embedding_size=16)
    return transformers.Gemma4Config(text_config=transformers.Gemma4TextConfig(**GEMMA4),
                                     vision_config=vision.to_dict(), audio_config=None)


def gemma3_multimodal():
    """Gemma 3 as the Hub mostly carries it: the text model inside an image-text checkpoint."""
    vision = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                             num_attention_heads=2, image_size=28, patch_size=14)
    return transformers.Gemma3Config(text_config=transformers.Gemma3TextConfig(**GEMMA3),
                                     vision_config=vision.to_dict(), mm_tokens_per_image=4)


FAMILIES = {
    "llama3": transformers.LlamaConfig(**COMMON, rope_theta=500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64}),
    "mistral": transformers.MistralConfig(**COMMON, rope_theta=10000.0, sliding_window=None),
    "qwen2": transformers.Qwen2Config(**COMMON, rope_theta=1000000.0),
    "qwen3": transformers.Qwen3Config(**COMMON, head_dim=32, rope_theta=1000000.0),
    "mistral_window": transformers.MistralConfig(**COMMON, rope_theta=10000.0, sliding_window=8),
    # `attention_bias` biases Llama's output projection too (Qwen2 biases Q/K/V only, always).
    "llama_bias": transformers.LlamaConfig(**COMMON, rope_theta=10000.0, attention_bias=True),
    # Qwen3's window where `use_sliding_window` asks for it, from layer `max_window_layers` on.
    "qwen3_window": transformers.Qwen3Config(**COMMON, head_dim=32, rope_theta=1000000.0, use_sliding_window=True,
                                             sliding_window=8, max_window_layers=1),
    # Layers 1 and 3 have no RoPE (every second layer, as interval 4 does in the real model).
    "smollm3": transformers.SmolLM3Config(**{**COMMON, "num_hidden_layers": 4}, no_rope_layer_interval=2, pad_token_id=None,
                                          rope_parameters={"rope_type": "default", "rope_theta": 2000000.0}),
    "gemma3_text": transformers.Gemma3TextConfig(**GEMMA3),
    "gemma3": "gemma3",
    # Phi-4-mini's block: fused qkv_proj and gate_up_proj, RoPE on half of each head, LongRoPE
    # whose original context (16) the prompt passes, so the long factors (and the attention
    # factor √2) apply to the whole prompt, and to decoding from position 16 on.
    "phi3": transformers.Phi3Config(**COMMON, pad_token_id=None, original_max_position_embeddings=16,
                                    rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                                     "partial_rotary_factor": 0.5,
                                                     "short_factor": [1.0, 1.3, 2.1, 3.7],
                                                     "long_factor": [1.2, 2.5, 6.0, 15.0]}),
    # gpt-oss: a local layer (window 8) and a global one, attention sinks, biased projections,
    # YaRN, 2 of 4 experts per token with biases and the clamped SwiGLU.
    "gpt_oss": transformers.GptOssConfig(vocab_size=128, hidden_size=64, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                         max_position_embeddings=256, rms_norm_eps=1e-5, initializer_range=0.2,
                                         sliding_window=8, num_local_experts=4, num_experts_per_tok=2,
                                         rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 8.0,
                                                          "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                                                          "original_max_position_embeddings": 32}),
    # Layer 0 routes each token to 2 of 4 experts; layer 1 is a dense MLP (`mlp_only_layers`).
    "gemma4_text": transformers.Gemma4TextConfig(**GEMMA4),
    "gemma4_moe": transformers.Gemma4TextConfig(**GEMMA4_MOE),
    "gemma4": "gemma4",
    "qwen3_moe": transformers.Qwen3MoeConfig(**COMMON, head_dim=16, num_experts=4, num_experts_per_tok=2,
                                             moe_intermediate_size=32, norm_topk_prob=True, mlp_only_layers=[1],
                                             rope_theta=1000000.0),
    "qwen3_5_text": "qwen3_5_text",
    "qwen3_5": "qwen3_5",
    "qwen3_5_moe_text": "qwen3_5_moe_text",
}
TOKENS = [3, 17, 99, 4, 58, 120, 7, 7, 33, 64, 2, 91, 15, 100, 42, 8, 77, 5, 26, 127, 0, 61, 13, 88]


def make(name, config, out):
    torch.manual_seed(sum(map(ord, name)))
    if config == "gemma3":
        config = gemma3_multimodal()
        model = transformers.Gemma3ForConditionalGeneration(config).to(torch.float32).eval()
    elif config == "gemma4":
        config = gemma4_multimodal()
        model = transformers.Gemma4ForConditionalGeneration(config).to(torch.float32).eval()
    elif config == "qwen3_5":
        config = qwen3_5_multimodal()
        model = transformers.Qwen3_5ForConditionalGeneration(config).to(torch.float32).eval()
    elif config == "qwen3_5_text":
        config = transformers.Qwen3_5TextConfig(**QWEN3_5)
        model = transformers.Qwen3_5ForCausalLM(config).to(torch.float32).eval()
    elif config == "qwen3_5_moe_text":
        config = transformers.Qwen3_5MoeTextConfig(**QWEN3_5_MOE)
        model = transformers.Qwen3_5MoeForCausalLM(config).to(torch.float32).eval()
    else:
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():
        # Norm weights and biases away from their 1/0 defaults, so using them matters.
        for pname, p in model.named_parameters():
            if pname.endswith("sinks"):
                p.copy_(torch.randn_like(p))
            elif "norm" in pname or pname.endswith("bias") or pname.endswith("scale"):
                p.add_(0.3 * torch.randn_like(p))
        # Gemma 4 scores unscaled: its q norm's learned weights set the softmax's temperature.
        # Weights near 1 would give scores of spread √head_dim, each softmax all but one-hot,
        # where any rounding of a cached key flips which key wins; weights near 1/√head_dim
        # give the spread of the other families' scaled scores.
        if config.model_type.startswith("gemma4"):
            for pname, p in model.named_parameters():
                if pname.endswith("self_attn.q_norm.weight"):
                    p.mul_(p.shape[0] ** -0.5)
        # Gemma 4's `layer_scalar` is a stored buffer of ones.
        for bname, b in model.named_buffers():
            if bname.endswith("layer_scalar"):
                b.copy_(0.5 + torch.rand_like(b))
        logits = model(torch.tensor([TOKENS])).logits[0]
    model.save_pretrained(os.path.join(out, name), safe_serialization=True)
    for extra in ("generation_config.json",):
        path = os.path.join(out, name, extra)
        if os.path.exists(path):
            os.remove(path)
    with safe_open(os.path.join(out, name, "model.safetensors"), "pt") as f:
        names = sorted(f.keys())
    return {"family": name, "model_type": config.model_type, "tensors": names, "logits": logits.tolist()}


def hub_layout(result, out, rename):
    """The same model with the tensor names the Hub's checkpoints carry (written by older
    transformers or the model's authors), same config and logits: `rename` maps a saved
    name and tensor to the Hub's names and tensors."""
    from safetensors.torch import load_file, save_file
    src, dst = os.path.join(out, result["family"]), os.path.join(out, result["family"] + "_hub")
    os.makedirs(dst, exist_ok=True)
    tensors = {}
    for key, value in load_file(os.path.join(src, "model.safetensors")).items():
        tensors.update(rename(key, value))
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(dst, "model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(src, "config.json")) as f, open(os.path.join(dst, "config.json"), "w") as g:
        g.write(f.read())
    return {**result, "family": result["family"] + "_hub", "tensors": sorted(tensors)}


def per_expert(key, value):
    """Fused (experts, 2·inter, hidden) / (experts, hidden, inter) as one matrix per expert."""
    if key.endswith("mlp.experts.gate_up_proj"):
        base, inter = key[: -len("gate_up_proj")], value.shape[1] // 2
        return {f"{base}{e}.{n}.weight": part for e in range(value.shape[0])
                for n, part in (("gate_proj", value[e, :inter]), ("up_proj", value[e, inter:]))}
    if key.endswith("mlp.experts.down_proj"):
        base = key[: -len("down_proj")]
        return {f"{base}{e}.down_proj.weight": value[e] for e in range(value.shape[0])}
    return {key: value}


def fused_experts(result, out):
    """The same model with its experts as transformers 5 holds them in memory (and a
    checkpoint saved without its conversion mapping carries them): per layer
    `mlp.experts.gate_up_proj` (experts, 2·inter, hidden), gate rows then up rows, and
    `mlp.experts.down_proj` (experts, hidden, inter); same config and logits."""
    import re
    from safetensors.torch import load_file, save_file
    src, dst = os.path.join(out, result["family"]), os.path.join(out, result["family"] + "_fused")
    os.makedirs(dst, exist_ok=True)
    tensors, experts = {}, {}
    for key, value in load_file(os.path.join(src, "model.safetensors")).items():
        m = re.fullmatch(r"(.*\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight", key)
        if m:
            experts.setdefault(m[1], {}).setdefault(int(m[2]), {})[m[3]] = value
        else:
            tensors[key] = value
    for base, by_index in experts.items():
        order = [by_index[e] for e in sorted(by_index)]
        tensors[base + ".gate_up_proj"] = torch.stack([torch.cat([e["gate"], e["up"]]) for e in order])
        tensors[base + ".down_proj"] = torch.stack([e["down"] for e in order])
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(dst, "model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(src, "config.json")) as f, open(os.path.join(dst, "config.json"), "w") as g:
        g.write(f.read())
    return {**result, "family": result["family"] + "_fused", "tensors": sorted(tensors)}


def gemma3_before_v5(key, value):
    """transformers 4's names for Gemma 3's image-text checkpoint, as on the Hub."""
    for new, old in (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
                     ("model.vision_tower.", "vision_tower."), ("model.multi_modal_projector.", "multi_modal_projector.")):
        if key.startswith(new):
            return {old + key[len(new):]: value}
    return {key: value}


FP4 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def to_mxfp4(w):
    """(..., rows, cols) as OpenAI's gpt-oss checkpoints store experts: each row's
    blocks of 32 values as FP4 (E2M1) codes, two per byte (low nibble first),
    and one E8M0 exponent per block (2^(e - 127)). A plain nearest-value
    quantizer of our own; the reference dequantizes with transformers' code."""
    *lead, rows, cols = w.shape
    blocks = w.reshape(*lead, rows, cols // 32, 32).float()
    amax = blocks.abs().amax(-1, keepdim=True).clamp(min=1e-30)
    exp = torch.ceil(torch.log2(amax / 6.0)).clamp(-127, 127)
    scaled = blocks / torch.exp2(exp)
    values = torch.tensor(FP4)
    codes = (scaled.unsqueeze(-1) - values).abs().argmin(-1).to(torch.uint8)
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return packed.contiguous(), (exp.squeeze(-1) + 127).to(torch.uint8).contiguous()


def gpt_oss_mxfp4(out):
    """gpt_oss with its experts in MXFP4, and transformers' logits for the
    weights its own MXFP4 code dequantizes them to."""
    from safetensors.torch import load_file, save_file
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    src, dst = os.path.join(out, "gpt_oss"), os.path.join(out, "gpt_oss_mxfp4")
    os.makedirs(dst, exist_ok=True)
    tensors, stored = load_file(os.path.join(src, "model.safetensors")), {}
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    params = dict(model.named_parameters())
    for key, value in tensors.items():
        if key.endswith("experts.gate_up_proj") or key.endswith("experts.down_proj"):
            # Stored (experts, out, in) as blocks along `in`; transformers' layout is (experts, in, out).
            blocks, scales = to_mxfp4(value.transpose(1, 2))
            stored[key + "_blocks"], stored[key + "_scales"] = blocks, scales
            with torch.no_grad():
                params[key].copy_(convert_moe_packed_tensors(blocks, scales, dtype=torch.float32))
        else:
            stored[key] = value
    save_file(stored, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(src, "config.json")) as f, open(os.path.join(dst, "config.json"), "w") as g:
        g.write(f.read())
    with torch.no_grad():
        logits = model(torch.tensor([TOKENS])).logits[0]
    return {"family": "gpt_oss_mxfp4", "model_type": "gpt_oss", "tensors": sorted(stored), "logits": logits.tolist()}


def main():
    out, only = sys.argv[1], sys.argv[2:]
    if only:
        # Remake just these families, keeping the others' committed goldens as they are.
        with open(os.path.join(out, "tiny_golden.json")) as f:
            meta = json.load(f)
        made = {name: make(name, FAMILIES[name], out) for name in only}
        if "qwen3_5_moe_text" in made:
            fused = fused_experts(made["qwen3_5_moe_text"], out)
            made[fused["family"]] = fused
        kept = [r for r in meta["families"] if r["family"] not in made]
        meta["families"] = kept + list(made.values())
        meta.setdefault("versions_of", {}).update(
            {name: {"torch": torch.__version__, "transformers": transformers.__version__} for name in made})
        with open(os.path.join(out, "tiny_golden.json"), "w") as f:
            json.dump(meta, f)
        for r in made.values():
            print(r["family"], "last-position top logit", max(r["logits"][-1]))
        return
    results = [make(name, cfg, out) for name, cfg in FAMILIES.items()]
    by_name = {r["family"]: r for r in results}
    if any("experts.gate_up_proj" in t for t in by_name["qwen3_moe"]["tensors"]):
        results.append(hub_layout(by_name["qwen3_moe"], out, per_expert))
    if any(t.startswith("model.language_model.") for t in by_name["gemma3"]["tensors"]):
        results.append(hub_layout(by_name["gemma3"], out, gemma3_before_v5))
    results.append(gpt_oss_mxfp4(out))
    results.append(fused_experts(by_name["qwen3_5_moe_text"], out))
    meta = {"reference": "transformers float32 CPU, random weights", "tokens": TOKENS,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "families": results}
    with open(os.path.join(out, "tiny_golden.json"), "w") as f:
        json.dump(meta, f)
    for r in results:
        print(r["family"], "last-position top logit", max(r["logits"][-1]))

if __name__ == "__main__":
    main()
