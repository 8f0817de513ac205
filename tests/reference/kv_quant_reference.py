#!/usr/bin/env python3
"""Independent reference for llmctl's quantized KV caches: Hugging Face
transformers, float32 on CPU, SmolLM2-135M-Instruct loaded from the GGUF as in
smollm2_reference.py, with a cache that stores every new key and value row as
llmctl's schemes promise and hands back the dequantized rows:

  rotate by the orthonormal Walsh-Hadamard matrix of order head_dim,
  scale = absmax / 127 (kv_int8, rounded to -127..127) or absmax / 448
  (kv_fp8, cast to torch.float8_e4m3fn), one scale per (token, KV head),
  then decode, multiply by the scale and rotate back.

Rotating back here instead of rotating the query (as llmctl does) gives the
same attention in exact arithmetic. Records, per prompt and scheme, the
greedy tokens, where they first leave the unquantized cache's and the
unquantized top-2 logit gap there, and the long prompt's mean NLL.

    python3 tests/reference/kv_quant_reference.py PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf OUT.json
"""
import json
import os
import sys

import torch
from transformers import DynamicCache

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smollm2_reference import encode, load, prompts  # noqa: E402

GREEDY_TOKENS = 16
SCHEMES = {"kv_int8": 127.0, "kv_fp8": 448.0}


def hadamard(n):
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    assert h.shape[0] == n, "head_dim must be a power of two here"
    return h / n ** 0.5


def round_trip(x, scheme):
    """x: (batch, kv_heads, T, head_dim) -> what the scheme's cache gives back."""
    h = hadamard(x.shape[-1]).to(x.dtype)
    r = x @ h
    absmax = r.abs().amax(-1, keepdim=True)
    scale = torch.where(absmax >= torch.finfo(torch.float32).tiny, absmax / SCHEMES[scheme], torch.ones_like(absmax))
    scaled = r / scale
    if scheme == "kv_int8":
        decoded = scaled.round().clamp(-127, 127)
    else:
        decoded = scaled.to(torch.float8_e4m3fn).to(torch.float32)
    return (decoded * scale) @ h


class RoundTripCache(DynamicCache):
    def __init__(self, scheme):
        super().__init__()
        self.scheme = scheme

    def update(self, key_states, value_states, layer_idx, cache_kwargs=None):
        if self.scheme is not None:
            key_states, value_states = round_trip(key_states, self.scheme), round_trip(value_states, self.scheme)
        return super().update(key_states, value_states, layer_idx, cache_kwargs)


@torch.no_grad()
def run(model, ids, scheme, eos):
    cache = RoundTripCache(scheme)
    logits = model(torch.tensor([ids]), past_key_values=cache, use_cache=True).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    nll = -logprobs[:-1].gather(1, torch.tensor(ids[1:])[:, None]).mean().item()
    row, tokens, gaps = logits[-1], [], []
    while len(tokens) < GREEDY_TOKENS:
        top2 = torch.topk(row, 2).values
        gaps.append((top2[0] - top2[1]).item())
        tokens.append(int(row.argmax()))
        if tokens[-1] == eos:
            break
        row = model(torch.tensor([[tokens[-1]]]), past_key_values=cache, use_cache=True).logits[0, -1].float()
    return nll, tokens, gaps


def main():
    gguf_path, out_path = sys.argv[1], sys.argv[2]
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tok, model = load(gguf_path)
    results = []
    for prompt in prompts():
        _, ids = encode(tok, prompt)
        dense_nll, dense, gaps = run(model, ids, None, tok.eos_token_id)
        entry = {"name": prompt["name"], "prompt_tokens": len(ids), "dense": {"mean_nll": dense_nll, "greedy_ids": dense, "top2_gaps": gaps}}
        for scheme in SCHEMES:
            nll, tokens, _ = run(model, ids, scheme, tok.eos_token_id)
            first = next((i for i, (a, b) in enumerate(zip(tokens, dense)) if a != b), None)
            entry[scheme] = {"mean_nll": nll, "delta_nll": nll - dense_nll, "greedy_ids": tokens, "first_divergence": first,
                             "dense_gap_there": None if first is None else gaps[first]}
            print(f"{prompt['name']:10} {scheme:8} dNLL {nll - dense_nll:+.6f} first divergence {first}"
                  + ("" if first is None else f" (dense top-2 gap {gaps[first]:.3f})"))
        results.append(entry)
    versions = {"torch": torch.__version__, "transformers": __import__("transformers").__version__}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"reference": "transformers float32 CPU, KV rows round-tripped through each scheme",
                   "greedy_tokens": GREEDY_TOKENS, "versions": versions, "prompts": results}, f, indent=1)


if __name__ == "__main__":
    main()
