#!/usr/bin/env python3
"""Load generator for `llmctl serve`, and for llama.cpp's `llama-server`
under the same load. Python's standard library only (threads and
http.client), so it runs wherever python3 does.

    python3 tests/bench/serve_load.py --url http://127.0.0.1:11435 --model M [--model M:kv_int8 ...]
        [--requests N] [--concurrency C] [--max-tokens T] [--timeout S]
        [--prompt-tokens P [--words english|numbered] | --prompts FILE]
        [--api openai|ollama] [--warmup] [--ignore-eos] [--dump FILE]

Sends N greedy requests (`temperature: 0`, at most T tokens each), C at a
time; request i names model i mod len(models). `--api openai` (default)
streams `POST /v1/completions` with `stream_options.include_usage`, parsing
the server-sent events itself; `--api ollama` streams `POST /api/generate`
with `"raw": true` (NDJSON). Each request has its own prompt: line i of
`--prompts` (a JSON list of strings), or about P synthetic words that begin
with the request's number (`english`: common English words, about a token
each; `numbered`: `w3`..`w1002`, one token each in tests/gpu/make_model.py's
word-level vocabulary).

Per request it records the time to the first text, the completion and
prompt tokens (from the usage the server sends), the text, how the stream
ended and why. It prints one JSON object on stdout: aggregate completion
tokens per second over the wall time, the median and p99 time to first
token, and counts of how requests ended; `--dump FILE` writes every
request's record to FILE as a JSON list.

`--timeout` caps the whole run in seconds. Exits 1 if any request failed
(a refusal, an error in the stream, a broken connection), hung (did not end
before the deadline) or was cut short (its stream ended without the end
marker, a finish reason or usage); 2 for bad arguments.
"""
import argparse
import http.client
import json
import math
import random
import socket
import statistics
import sys
import threading
import time
import urllib.parse

ENGLISH = """the of and to in is was for on that with as by at from his her it an are were this be which or had
not but have they one you all their there been has more when who will would can no other time into only its new some
could these two may first then do any like my now over such our man me even most made after also did many before must
through back years where much your way well down should because each just those people how too little state good very
make world still own see men work long get here between both life being under never day same another know while last
might us great old year off come since against go came right used take three""".split()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:11435", help="the server's base URL")
    p.add_argument("--model", action="append", required=True, help="a model name; repeat to cycle through several")
    p.add_argument("--api", choices=["openai", "ollama"], default="openai")
    p.add_argument("--requests", type=int, help="how many (default: the prompts given, or 2 x concurrency)")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--prompts", help="a JSON file holding a list of prompts, one per request")
    p.add_argument("--prompt-tokens", type=int, default=32, help="length of synthetic prompts, in words")
    p.add_argument("--words", choices=["english", "numbered"], default="english")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic prompts")
    p.add_argument("--timeout", type=float, default=600.0, help="the whole run's limit, in seconds")
    p.add_argument("--warmup", action="store_true",
                   help="first send one untimed round of C short requests (caches allocated, kernels loaded)")
    p.add_argument("--ignore-eos", action="store_true",
                   help="send `ignore_eos: true` (llama-server generates T tokens; llmctl ignores the field)")
    p.add_argument("--dump", help="write every request's record to this file, as JSON")
    args = p.parse_args(argv)
    if args.concurrency < 1 or args.max_tokens < 1 or args.prompt_tokens < 3 or args.timeout <= 0:
        p.error("--concurrency and --max-tokens must be at least 1, --prompt-tokens at least 3, --timeout positive")
    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        p.error(f"--url must be http://HOST[:PORT], not {args.url}")
    args.host, args.port, args.base = url.hostname, url.port or 80, url.path.rstrip("/")
    if args.prompts:
        with open(args.prompts) as f:
            args.prompt_list = json.load(f)
        if not isinstance(args.prompt_list, list) or not all(isinstance(x, str) for x in args.prompt_list):
            p.error(f"{args.prompts} must hold a JSON list of strings")
        args.requests = len(args.prompt_list) if args.requests is None else args.requests
        if args.requests > len(args.prompt_list):
            p.error(f"--requests {args.requests} is more than the {len(args.prompt_list)} prompts given")
        if len(set(args.prompt_list[:args.requests])) < args.requests:
            p.error(f"the prompts of {args.prompts} must differ: each request has its own")
    else:
        args.prompt_list = None
        args.requests = 2 * args.concurrency if args.requests is None else args.requests
    if args.requests < 1:
        p.error("--requests must be at least 1")
    return args


def synthetic_prompt(index, words, style, seed):
    """About `words` words, the first of them the request's number, the rest drawn by a seeded generator."""
    rng = random.Random(f"{seed}:{index}")
    if style == "numbered":
        # make_model.py's vocabulary: `wN` is token N, 0..2 are its special tokens.
        tag = [f"w{3 + index // 1000 % 1000}", f"w{3 + index % 1000}"]
        return " ".join(tag + [f"w{rng.randrange(3, 1003)}" for _ in range(words - len(tag))])
    tag = ["Request", f"{index}:"]
    return " ".join(tag + [rng.choice(ENGLISH) for _ in range(words - len(tag))])


def request_of(args, model, prompt, max_tokens):
    """The path and body of one streamed, greedy request."""
    if args.api == "ollama":
        body = {"model": model, "prompt": prompt, "raw": True, "stream": True,
                "options": {"temperature": 0, "num_predict": max_tokens}}
        return args.base + "/api/generate", body
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    if args.ignore_eos:
        body["ignore_eos"] = True
    return args.base + "/v1/completions", body


class Hung(Exception):
    pass


DONE = object()


def messages(response, sock, api, deadline):
    """Each JSON object the stream carries (DONE for `data: [DONE]`), reading until the deadline."""
    data = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Hung("no end before the deadline")
        sock.settimeout(left)
        line = response.readline()
        if not line:
            return
        line = line.decode("utf-8").rstrip("\r\n")
        if api == "ollama":
            if line:
                yield json.loads(line)
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        elif not line and data:
            # A blank line ends an event; its data lines join with newlines.
            text, data = "\n".join(data), []
            yield DONE if text == "[DONE]" else json.loads(text)


def absorb(record, message, api, now, start):
    """Adds one streamed message to the record; returns whether it ends the stream."""
    if "error" in message:
        raise RuntimeError(f"error in the stream: {json.dumps(message['error'])}")
    if api == "ollama":
        text = message.get("response", "")
        if message.get("done"):
            record["finish_reason"] = message.get("done_reason")
            record["prompt_tokens"] = message.get("prompt_eval_count")
            record["completion_tokens"] = message.get("eval_count")
    else:
        choices = message.get("choices") or []
        text = "".join(c.get("text") or "" for c in choices)
        for choice in choices:
            record["finish_reason"] = choice.get("finish_reason") or record["finish_reason"]
        if message.get("usage"):
            record["prompt_tokens"] = message["usage"].get("prompt_tokens")
            record["completion_tokens"] = message["usage"].get("completion_tokens")
    if text:
        record["ttft_s"] = now - start if record["ttft_s"] is None else record["ttft_s"]
        record["text_chunks"] += 1
        record["text"] += text
    return api == "ollama" and bool(message.get("done"))


def run_one(args, index, model, prompt, max_tokens, deadline):
    record = {"index": index, "model": model, "prompt": prompt, "end": None, "error": None, "ttft_s": None,
              "latency_s": None, "prompt_tokens": None, "completion_tokens": None, "finish_reason": None,
              "text_chunks": 0, "text": ""}
    start = time.monotonic()
    path, body = request_of(args, model, prompt, max_tokens)
    connection = http.client.HTTPConnection(args.host, args.port, timeout=max(deadline - start, 0.001))
    ended = False
    try:
        connection.request("POST", path, body=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
        # The response reads through this socket even once the connection hands it over.
        sock = connection.sock
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {response.read(2000).decode('utf-8', 'replace')}")
        for message in messages(response, sock, args.api, deadline):
            if message is DONE:
                ended = True
                break
            ended = absorb(record, message, args.api, time.monotonic(), start)
            if ended:
                break
        if not ended:
            record["end"], record["error"] = "cut_short", "the stream ended without its end marker"
        elif record["finish_reason"] is None or record["completion_tokens"] is None:
            record["end"], record["error"] = "cut_short", "the stream ended without a finish reason or usage"
        else:
            record["end"] = "done"
    except (Hung, socket.timeout) as e:
        record["end"], record["error"] = "hung", str(e) or "timed out"
    except (OSError, http.client.HTTPException, ValueError, RuntimeError) as e:
        record["end"], record["error"] = "failed", f"{type(e).__name__}: {e}"
    finally:
        connection.close()
    record["latency_s"] = time.monotonic() - start
    return record


def run_all(args, jobs, deadline):
    """Runs (index, model, prompt, max_tokens) jobs, `concurrency` at a time; a record per job."""
    records = [None] * len(jobs)
    lock = threading.Lock()
    pending = list(range(len(jobs)))[::-1]

    def worker():
        while True:
            with lock:
                if not pending:
                    return
                slot = pending.pop()
            records[slot] = run_one(args, *jobs[slot], deadline)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(args.concurrency, len(jobs)))]
    for t in threads:
        t.start()
    for t in threads:
        # A worker stuck past the deadline (a socket that never times out) is left behind, daemon.
        t.join(max(deadline - time.monotonic(), 0) + 5)
    for slot, (index, model, prompt, _) in enumerate(jobs):
        if records[slot] is None:
            records[slot] = {"index": index, "model": model, "prompt": prompt, "end": "hung",
                             "error": "not ended (or not sent) before the deadline", "ttft_s": None,
                             "latency_s": None, "prompt_tokens": None, "completion_tokens": None,
                             "finish_reason": None, "text_chunks": 0, "text": ""}
    return records


def percentile(values, q):
    """Nearest-rank percentile (p99 of 24 values is the largest)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)] if ordered else None


def summary(args, records, wall):
    done = [r for r in records if r["end"] == "done"]
    ttft = [r["ttft_s"] for r in done if r["ttft_s"] is not None]
    tokens = sum(r["completion_tokens"] or 0 for r in done)
    ends = {end: sum(r["end"] == end for r in records) for end in ("done", "failed", "hung", "cut_short")}
    finish = {}
    for r in done:
        finish[r["finish_reason"]] = finish.get(r["finish_reason"], 0) + 1
    decode = [(r["completion_tokens"] - 1) / (r["latency_s"] - r["ttft_s"]) for r in done
              if r["ttft_s"] is not None and r["completion_tokens"] and r["completion_tokens"] > 1
              and r["latency_s"] > r["ttft_s"]]
    prompt_tokens = [r["prompt_tokens"] for r in done if r["prompt_tokens"] is not None]
    return {
        "api": args.api, "url": args.url, "models": args.model, "requests": len(records),
        "concurrency": args.concurrency, "max_tokens": args.max_tokens, **ends, "finish_reasons": finish,
        "wall_s": round(wall, 3), "completion_tokens": tokens,
        "prompt_tokens_mean": round(statistics.mean(prompt_tokens), 1) if prompt_tokens else None,
        "tokens_per_s": round(tokens / wall, 2) if wall > 0 else None,
        "ttft_s": {"median": statistics.median(ttft) if ttft else None, "p99": percentile(ttft, 99),
                   "max": max(ttft) if ttft else None},
        "decode_tokens_per_s_per_request_median": round(statistics.median(decode), 2) if decode else None,
    }


def main(argv):
    args = parse_args(argv)
    start = time.monotonic()
    deadline = start + args.timeout
    if args.warmup:
        warm = [(-1 - i, args.model[i % len(args.model)], f"Warm up {i}.", 2) for i in range(args.concurrency)]
        failed = [r for r in run_all(args, warm, deadline) if r["end"] != "done"]
        if failed:
            print(f"warm-up failed: {failed[0]['end']}: {failed[0]['error']}", file=sys.stderr)
            return 1
    jobs = []
    for i in range(args.requests):
        prompt = args.prompt_list[i] if args.prompt_list else synthetic_prompt(i, args.prompt_tokens, args.words, args.seed)
        jobs.append((i, args.model[i % len(args.model)], prompt, args.max_tokens))
    began = time.monotonic()
    records = run_all(args, jobs, deadline)
    wall = time.monotonic() - began
    out = summary(args, records, wall)
    if args.dump:
        with open(args.dump, "w") as f:
            json.dump(records, f, indent=1)
    for r in records:
        if r["end"] != "done":
            print(f"request {r['index']} ({r['model']}): {r['end']}: {r['error']}", file=sys.stderr)
    print(json.dumps(out), flush=True)
    return 0 if out["done"] == len(records) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
