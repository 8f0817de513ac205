#!/usr/bin/env python3
"""SmolLM2-135M-Instruct as a bf16 safetensors directory, made by transformers
from the Q4_1 GGUF (independently of llmctl's own conversion), with the
digit-splitting pre-tokenizer restored as in tests/reference/smollm2_reference.py.

    python3 tests/gpu/smollm2_from_gguf.py GGUF OUT_DIR
"""
import json
import os
import sys

from safetensors.torch import save_file

import torch
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

gguf, out = sys.argv[1], sys.argv[2]
folder, name = os.path.split(os.path.abspath(gguf))
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
    [pre_tokenizers.Digits(individual_digits=True),
     pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
# transformers will not save_pretrained a GGUF-loaded model: write its parts.
os.makedirs(out, exist_ok=True)
state = {k: v.contiguous().clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}
save_file(state, os.path.join(out, "model.safetensors"))
config = model.config.to_dict()
config.pop("quantization_config", None)
config["tie_word_embeddings"] = True
config["architectures"] = ["LlamaForCausalLM"]
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump(config, f, indent=1)
tok.save_pretrained(out)
print("written", out, sorted(os.listdir(out)))
