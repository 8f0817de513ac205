#!/usr/bin/env python3
"""Independent reference for the decoder families llmctl implements: tiny
random-weight models made by Hugging Face transformers itself (Llama with
Llama 3 RoPE scaling, Mistral, Qwen2 with QKV biases, Qwen3 with q/k norms and
a head_dim that is not hidden/heads), saved as safetensors, and their float32
CPU logits for a fixed token sequence.

    python3 tests/reference/tiny_families_reference.py OUT_DIR

writes OUT_DIR/<family>/{config.json,model.safetensors} and
OUT_DIR/tiny_golden.json (committed under tests/reference/tiny/).
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM

COMMON = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
              rms_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=0.2)
FAMILIES = {
    "llama3": transformers.LlamaConfig(**COMMON, rope_theta=500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64}),
    "mistral": transformers.MistralConfig(**COMMON, rope_theta=10000.0, sliding_window=None),
    "qwen2": transformers.Qwen2Config(**COMMON, rope_theta=1000000.0),
    "qwen3": transformers.Qwen3Config(**COMMON, head_dim=32, rope_theta=1000000.0),
}
TOKENS = [3, 17, 99, 4, 58, 120, 7, 7, 33, 64, 2, 91, 15, 100, 42, 8, 77, 5, 26, 127, 0, 61, 13, 88]


def make(name, config, out):
    torch.manual_seed(sum(map(ord, name)))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():
        # Norm weights and biases away from their 1/0 defaults, so using them matters.
        for pname, p in model.named_parameters():
            if "norm" in pname or pname.endswith("bias"):
                p.add_(0.3 * torch.randn_like(p))
        logits = model(torch.tensor([TOKENS])).logits[0]
    model.save_pretrained(os.path.join(out, name), safe_serialization=True)
    for extra in ("generation_config.json",):
        path = os.path.join(out, name, extra)
        if os.path.exists(path):
            os.remove(path)
    return {"family": name, "model_type": config.model_type, "logits": logits.tolist()}


def main():
    out = sys.argv[1]
    results = [make(name, cfg, out) for name, cfg in FAMILIES.items()]
    meta = {"reference": "transformers float32 CPU, random weights", "tokens": TOKENS,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "families": results}
    with open(os.path.join(out, "tiny_golden.json"), "w") as f:
        json.dump(meta, f)
    for r in results:
        print(r["family"], "last-position top logit", max(r["logits"][-1]))


if __name__ == "__main__":
    main()
