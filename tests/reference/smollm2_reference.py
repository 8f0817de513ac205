#!/usr/bin/env python3
"""Independent reference for llmctl's engine tests: Hugging Face transformers,
float32 on CPU, loading the SmolLM2-135M-Instruct Q4_1 GGUF directly (its own
dequantization and Q/K un-permutation, not llmctl's conversion).

Writes tests/reference/smollm2_golden.json. Run on a machine with torch,
transformers (5.x) and gguf installed:

    python3 tests/reference/smollm2_reference.py PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf OUT.json

One known transformers defect is corrected here: its GGUF tokenizer builder
drops the `smollm` pre-tokenizer's individual-digit split (llama.cpp keeps it),
so the pre-tokenizer is set back to Digits(individual) + ByteLevel.
"""
import json
import os
import sys

import torch
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

GREEDY_TOKENS = 32
TOP_K = 10
HERE = os.path.dirname(os.path.abspath(__file__))


def prompts():
    with open(os.path.join(HERE, "..", "data", "long_prompt.txt"), encoding="utf-8") as f:
        long_text = f.read()
    return [
        {"name": "plain", "text": "The capital of France is", "chat": False},
        {"name": "chat", "text": "What is the capital of France?", "chat": True},
        {"name": "non_ascii", "text": "Café, naïve, 東京 and 🎉: in 2024 the price rose 15% to 3.50", "chat": False},
        {"name": "long", "text": long_text, "chat": False},
    ]


def load(gguf_path):
    folder, name = os.path.split(os.path.abspath(gguf_path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return tok, model.eval().to("cpu")


def encode(tok, prompt):
    if prompt["chat"]:
        messages = [{"role": "user", "content": prompt["text"]}]
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = prompt["text"]
    return text, tok(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def reference(tok, model, prompt):
    text, ids = encode(tok, prompt)
    logits = model(torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    nll = -logprobs[:-1].gather(1, torch.tensor(ids[1:])[:, None]).mean().item()
    top = torch.topk(logits[-1], TOP_K)
    out = model.generate(torch.tensor([ids]), max_new_tokens=GREEDY_TOKENS, do_sample=False,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    greedy = out[0][len(ids):].tolist()
    return {
        "name": prompt["name"], "chat": prompt["chat"], "text": prompt["text"], "rendered": text,
        "prompt_ids": ids, "greedy_ids": greedy, "greedy_text": tok.decode(greedy),
        "top_ids": top.indices.tolist(), "top_logits": top.values.tolist(), "mean_nll": nll,
    }


def main():
    gguf_path, out_path = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tok, model = load(gguf_path)
    versions = {"torch": torch.__version__, "transformers": __import__("transformers").__version__}
    results = [reference(tok, model, p) for p in prompts()]
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"reference": "transformers float32 CPU, GGUF loaded directly", "versions": versions,
                   "eos_token_id": tok.eos_token_id, "prompts": results}, f, ensure_ascii=False, indent=1)
    for r in results:
        print(r["name"], len(r["prompt_ids"]), "tokens; nll", round(r["mean_nll"], 5), "->", repr(r["greedy_text"]))


if __name__ == "__main__":
    main()
