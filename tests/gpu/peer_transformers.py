#!/usr/bin/env python3
"""The peer for `llmctl bench` on the same card and model: Hugging Face
transformers with its static cache (generate compiles the decoding step with
torch.compile when the cache is static).

    python3 tests/gpu/peer_transformers.py MODEL_DIR CONTEXT [GEN]

Prefills CONTEXT - GEN random token ids, decodes GEN tokens greedily, and
prints one JSON line with prefill and decode tokens/s (decode timed from the
second generated token to the last, by a streamer's clock) and torch's peak
allocated VRAM. The first generate call compiles and is not timed.
"""
import json
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM
from transformers.generation.streamers import BaseStreamer


class Clock(BaseStreamer):
    def __init__(self):
        self.times = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


def main():
    model_dir, ctx = sys.argv[1], int(sys.argv[2])
    gen = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map="cuda").eval()
    ids = torch.randint(0, model.config.vocab_size, (1, ctx - gen), generator=torch.Generator().manual_seed(0)).cuda()
    kwargs = dict(do_sample=False, cache_implementation="static", max_new_tokens=gen, min_new_tokens=gen, pad_token_id=0)
    model.generate(ids, **kwargs)  # compiles
    torch.cuda.reset_peak_memory_stats()
    clock = Clock()
    torch.cuda.synchronize()
    model.generate(ids, streamer=clock, **kwargs)
    t = clock.times  # prompt, then one per generated token
    print(json.dumps({
        "peer": "transformers static cache + torch.compile",
        "transformers": transformers.__version__, "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(), "context": ctx, "generated_tokens": len(t) - 1,
        "prefill_tokens_per_s": (ctx - gen) / (t[1] - t[0]),
        "decode_tokens_per_s": (len(t) - 2) / (t[-1] - t[1]),
        "peak_allocated_bytes": torch.cuda.max_memory_allocated(),
    }))


if __name__ == "__main__":
    main()
