//! Issue #19: `llmctl serve` on SmolLM2, driven over real HTTP by the
//! official `openai` and `ollama` Python clients: both APIs streamed and
//! whole, every error with its status and body, a full queue, a client
//! that leaves mid-stream, a graceful stop, greedy replies equal to
//! `llmctl run`'s for each KV-cache scheme, and a bounded load through
//! `tests/bench/serve_load.py` in which no stream is lost, mixed or duplicated.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestContext, models, py_clients};

const WAIT: Duration = Duration::from_secs(120);
const PROMPT: &str = "Name a colour.";

/// A store with SmolLM2 (f32 safetensors) as `smollm2`.
fn ctx_with_smollm2() -> TestContext {
    let ctx = TestContext::new();
    let dir = crate::support::smollm2::smollm2_dir("f32");
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "smollm2"]).success();
    ctx
}

/// A running `llmctl serve` and what it has said on stderr so far.
struct Server {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts on a free port (`--port 0`) and waits until it listens.
    fn start(ctx: &TestContext, extra: &[&str]) -> Server {
        let args = [&["serve", "--port", "0", "--device", "cpu"][..], extra].concat();
        let mut child = ctx.command(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let mut server = Server { child, url: String::new(), log };
        let listening = server.wait_for_log("listening on http://");
        let line = listening.lines().find(|l| l.starts_with("listening on http://")).unwrap();
        server.url = line["listening on ".len()..].split(' ').next().unwrap().to_string();
        server
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log once it holds `needle` (request lines follow their responses).
    #[track_caller]
    fn wait_for_log(&mut self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited ({status}) before saying {needle:?}:\n{log}");
            }
            assert!(start.elapsed() < WAIT, "the server did not say {needle:?}:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a Python script against the server with `oa` (OpenAI client),
    /// `ol` (Ollama client) and `BASE` set; it fills `out`, printed as JSON.
    fn client(&self, script: &str) -> Value {
        let output = self.client_command(script).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "the client script failed:\n{}\n--- server ---\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("the client printed no JSON ({e}):\n{stdout}"))
    }

    fn client_command(&self, script: &str) -> Command {
        let mut command = Command::new(py_clients::python());
        command.arg("-c").arg(format!("{CLIENT_PRELUDE}{script}\nprint(json.dumps(out))")).arg(&self.url);
        // Proxies set for PyPI must not take the clients' requests to localhost elsewhere.
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
            command.env_remove(var);
        }
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    }

    /// Sends SIGTERM; the exit status and everything the server said.
    fn terminate(mut self) -> (Option<i32>, String) {
        signal(&self.child, "TERM");
        let status = wait_with_timeout(&mut self.child);
        std::thread::sleep(Duration::from_millis(100));
        (status, self.log())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn wait_with_timeout(child: &mut Child) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the server did not exit within {WAIT:?}");
}

const CLIENT_PRELUDE: &str = r#"
import json, sys, threading, time
import httpx, ollama, openai
BASE = sys.argv[1]
oa = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0)
ol = ollama.Client(host=BASE)
out = {}
MSGS = [{"role": "user", "content": "Name a colour."}]
def failure(call):
    try:
        call()
    except openai.APIStatusError as e:
        return {"status": e.status_code, "body": e.response.json(), "retry_after": e.response.headers.get("retry-after")}
    except ollama.ResponseError as e:
        return {"status": e.status_code, "error": e.error}
    return None
def raw(path, body):
    r = httpx.post(BASE + path, content=body, headers={"content-type": "application/json"})
    return {"status": r.status_code, "body": r.json()}
"#;

/// Both clients, whole and streamed, on one server that loaded the model at start.
#[test]
fn serve_answers_the_openai_and_ollama_clients_streamed_and_whole() {
    let ctx = ctx_with_smollm2();
    let server = Server::start(&ctx, &["--model", "smollm2"]);
    let log = server.log();
    let loaded = log.find("loaded smollm2 on cpu").unwrap_or_else(|| panic!("{log}"));
    assert!(loaded < log.find("listening on").unwrap(), "`--model` loads before listening:\n{log}");
    // `auto`: 16 sequences of the whole context, in blocks of 32 positions.
    assert!(log.contains("(KV cache: f32, a pool of 3.0 GB for 65536 tokens in blocks of 32; context 4096)"), "{log}");
    let out = server.client(
        r#"
out["models"] = [m.id for m in oa.models.list().data]
r = oa.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=6, temperature=0)
out["chat"] = {"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason, "usage": r.usage.model_dump(), "object": r.object}
chunks = list(oa.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=6, temperature=0, stream=True, stream_options={"include_usage": True}))
out["chat_stream"] = {"text": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
    "finish": [c.choices[0].finish_reason for c in chunks if c.choices][-1], "usage": chunks[-1].usage.model_dump(),
    "role": chunks[0].choices[0].delta.role}
words = r.choices[0].message.content.split(" ")
stop = " " + words[2]
s = oa.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=6, temperature=0, stop=[stop, "never"])
out["stopped"] = {"text": s.choices[0].message.content, "finish": s.choices[0].finish_reason,
    "expected": r.choices[0].message.content.split(stop)[0]}
out["max_completion_tokens"] = oa.chat.completions.create(model="smollm2", messages=MSGS, max_completion_tokens=2, temperature=0).usage.completion_tokens
sampled = lambda seed: oa.completions.create(model="smollm2", prompt="Once upon a time", max_tokens=6, temperature=1.5, top_p=0.95, seed=seed).choices[0].text
out["seeded"] = [sampled(7), sampled(7), sampled(8)]
c = oa.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=4, temperature=0)
out["completion"] = {"text": c.choices[0].text, "usage": c.usage.model_dump()}
out["completion_stream"] = "".join(x.choices[0].text for x in oa.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=4, temperature=0, stream=True))
out["tags"] = [m.model for m in ol.list().models]
out["ps_client"] = [m.model for m in ol.ps().models]
out["ps"] = httpx.get(BASE + "/api/ps").json()
shown = ol.show("smollm2:latest")
out["show"] = {"format": shown.details.format, "family": shown.details.family, "template": "im_start" in shown.template,
    "context": shown.modelinfo["llama.context_length"]}
opts = {"num_predict": 6, "temperature": 0}
out["ollama_chat"] = ol.chat(model="smollm2", messages=MSGS, options=opts, stream=False).message.content
parts = list(ol.chat(model="smollm2:latest", messages=MSGS, options=opts, stream=True))
out["ollama_chat_stream"] = {"text": "".join(p.message.content for p in parts), "done": parts[-1].done,
    "reason": parts[-1].done_reason, "eval_count": parts[-1].eval_count, "prompt_eval_count": parts[-1].prompt_eval_count}
out["ollama_generate"] = ol.generate(model="smollm2", prompt="Name a colour.", options=opts, stream=False).response
out["ollama_raw"] = "".join(p.response for p in ol.generate(model="smollm2", prompt="The capital of France is", raw=True, options={"num_predict": 4, "temperature": 0}, stream=True))
# Without `stream`, Ollama's API streams NDJSON.
lines = httpx.post(BASE + "/api/generate", json={"model": "smollm2", "prompt": "Name a colour.", "options": opts})
out["ndjson"] = {"type": lines.headers["content-type"], "lines": [json.loads(l)["done"] for l in lines.text.splitlines()]}
out["version"] = httpx.get(BASE + "/api/version").json()
"#,
    );
    assert_eq!(out["models"], json!(["smollm2"]));
    let chat = &out["chat"];
    let text = chat["text"].as_str().unwrap();
    assert!(text.split(' ').count() >= 3, "{out:#}");
    assert_eq!((chat["finish"].as_str(), chat["object"].as_str()), (Some("length"), Some("chat.completion")));
    assert_eq!(
        chat["usage"],
        json!({"prompt_tokens": 34, "completion_tokens": 6, "total_tokens": 40, "completion_tokens_details": null, "prompt_tokens_details": null})
    );
    assert_eq!(out["chat_stream"]["text"], text, "streamed and whole replies agree");
    assert_eq!(out["chat_stream"]["finish"], "length");
    assert_eq!(out["chat_stream"]["role"], "assistant");
    assert_eq!(out["chat_stream"]["usage"], chat["usage"], "include_usage sends the usage last");
    assert_eq!(out["stopped"]["text"], out["stopped"]["expected"], "{out:#}");
    assert_eq!(out["stopped"]["finish"], "stop");
    assert_eq!(out["max_completion_tokens"], 2);
    let seeded = out["seeded"].as_array().unwrap();
    assert_eq!(seeded[0], seeded[1], "the same seed samples the same reply");
    assert_ne!(seeded[0], seeded[2], "another seed, another reply");
    let completion = out["completion"]["text"].as_str().unwrap();
    assert!(!completion.is_empty());
    assert_eq!(out["completion"]["usage"]["completion_tokens"], 4);
    assert_eq!(out["completion_stream"], completion);
    assert_eq!(out["tags"], json!(["smollm2:latest"]));
    assert_eq!(out["ps_client"], json!(["smollm2"]));
    let ps = &out["ps"]["models"][0];
    assert_eq!((ps["kv_scheme"].as_str(), ps["device"].as_str()), (Some("f32"), Some("cpu")));
    assert_eq!((ps["cache_bytes"].as_u64(), ps["context_length"].as_u64()), (Some(16 * 188_743_680), Some(4096)));
    assert_eq!(
        (&ps["kv_block_tokens"], &ps["kv_blocks_total"], &ps["kv_blocks_used"], &ps["sequences"], &ps["waiting"]),
        (&json!(32), &json!(16 * 4096 / 32), &json!(0), &json!(0), &json!(0)),
        "nothing runs while the client asks"
    );
    assert_eq!(ps["size_vram"], Value::Null, "no GPU, no VRAM reading");
    assert_eq!(out["show"], json!({"format": "safetensors", "family": "llama", "template": true, "context": 8192}));
    // One rendering of one chat, whichever API asks: the same greedy reply.
    assert_eq!(out["ollama_chat"], text);
    assert_eq!(out["ollama_chat_stream"]["text"], text);
    assert_eq!(out["ollama_chat_stream"]["done"], true);
    assert_eq!(out["ollama_chat_stream"]["reason"], "length");
    assert_eq!(out["ollama_chat_stream"]["eval_count"], 6);
    assert_eq!(out["ollama_chat_stream"]["prompt_eval_count"], 34);
    assert_eq!(out["ollama_generate"], text, "/api/generate renders the prompt as a chat");
    assert_eq!(out["ollama_raw"], completion, "`raw` is the prompt as it is, as /v1/completions");
    assert_eq!(
        out["ndjson"],
        json!({"type": "application/x-ndjson", "lines": [false, false, false, false, false, false, true]})
    );
    assert_eq!(out["version"], json!({"version": env!("CARGO_PKG_VERSION")}));
    let log = server.log();
    assert!(
        log.contains("POST /v1/chat/completions smollm2 (KV cache: f32): 34 prompt + 6 generated tokens, first token "),
        "{log}"
    );
    assert!(log.contains("POST /api/generate smollm2 (KV cache: f32): 34 prompt + 6 generated tokens"), "{log}");
}

/// SIGTERM: the reply in flight ends whole, then the server exits 0.
#[test]
fn serve_stops_on_sigterm_after_the_reply_in_flight() {
    let ctx = ctx_with_smollm2();
    let server = Server::start(&ctx, &[]);
    let mut client = server
        .client_command(
            r#"
s = oa.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=12, temperature=0, stream=True)
it = iter(s)
next(it)
print("started", flush=True)
rest = list(it)
out = {"finish": rest[-1].choices[0].finish_reason, "chunks": len(rest)}
try:
    httpx.get(BASE + "/api/version", timeout=5)
    out["after"] = "answered"
except httpx.TransportError:
    out["after"] = "refused"
"#,
        )
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(client.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "started\n");
    let (status, log) = server.terminate();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(client.wait().unwrap().success());
    let out: Value = serde_json::from_str(rest.trim()).unwrap();
    assert_eq!(out, json!({"finish": "length", "chunks": 13, "after": "refused"}), "{log}");
    assert_eq!(status, Some(0), "{log}");
    assert!(log.contains("SIGTERM: no new requests; finishing those in flight"), "{log}");
    assert!(log.contains("12 generated tokens"), "{log}");
}

/// Every error a client can meet, with its status and body; a full queue;
/// a client that leaves mid-stream; a model that fails to load.
#[test]
fn serve_errors_reach_clients_in_each_apis_shape() {
    let ctx = ctx_with_smollm2();
    let tiny = ctx.root.path().join("tiny");
    models::write_dir(&tiny, &models::tiny_llama_repo(7));
    ctx.run(&["pull", tiny.to_str().unwrap(), "--name", "org/broken"]).success();
    // The tiny model has no chat template: only raw prompts fit it.
    let plain = ctx.root.path().join("plain");
    models::write_dir(&plain, &models::tiny_llama_repo(8));
    ctx.run(&["pull", plain.to_str().unwrap(), "--name", "org/plain"]).success();
    let show = ctx.run(&["show", "org/broken", "--json"]).json();
    let weights = show["files"].as_array().unwrap().iter().find(|f| f["name"] == "model.safetensors").unwrap();
    std::fs::remove_file(ctx.store().join("blobs").join(format!("sha256-{}", weights["sha256"].as_str().unwrap())))
        .unwrap();
    let cli_error = |model: &str| {
        let run = ctx.run(&["run", model, "hi", "--no-pull", "--device", "cpu"]);
        let line = |prefix: &str| run.stderr.lines().find_map(|l| l.strip_prefix(prefix)).map(str::to_string);
        let error = line("error: ").unwrap_or_else(|| panic!("{}", run.stderr));
        match line("hint: ") {
            Some(hint) => format!("{error} (hint: {hint})"),
            None => error,
        }
    };
    let mut server = Server::start(&ctx, &["--max-queue", "1", "--max-sequences", "1"]);
    let out = server.client(
        r#"
call = lambda model, **kw: oa.chat.completions.create(model=model, messages=MSGS, max_tokens=2, temperature=0, **kw)
out["unknown"] = failure(lambda: call("nobody/nothing"))
out["unknown_ollama"] = failure(lambda: ol.chat(model="nobody/nothing:latest", messages=MSGS))
out["bogus"] = failure(lambda: call("smollm2:kv_bogus"))
out["bogus_ollama"] = failure(lambda: ol.generate(model="smollm2:kv_bogus", prompt="hi"))
out["weight_tag"] = failure(lambda: call("smollm2:Q4_K_M"))
out["n"] = failure(lambda: call("smollm2", n=2))
out["too_many_tokens"] = failure(lambda: oa.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=5000))
out["malformed"] = raw("/v1/chat/completions", b'{"model": "smollm2", "messages": [')
out["malformed_ollama"] = raw("/api/chat", b'{"model": "smollm2"')
out["wrong_type"] = raw("/v1/chat/completions", json.dumps({"model": "smollm2", "messages": "hi"}))
out["wrong_type_ollama"] = raw("/api/chat", json.dumps({"model": "smollm2", "messages": [], "options": {"temperature": "hot"}}))
out["missing"] = raw("/v1/completions", json.dumps({"model": "smollm2"}))
out["too_large"] = raw("/v1/completions", json.dumps({"model": "smollm2", "prompt": "x" * (5 << 20)}))
out["broken"] = failure(lambda: call("org/broken"))
out["no_template"] = failure(lambda: call("org/plain"))
out["plain_raw"] = oa.completions.create(model="org/plain", prompt="w3 w4", max_tokens=2, temperature=0).usage.completion_tokens
out["too_long"] = failure(lambda: oa.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi " * 5000}], max_tokens=2))
out["zero_tokens"] = failure(lambda: oa.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=0))
out["cold"] = failure(lambda: oa.chat.completions.create(model="smollm2", messages=MSGS, temperature=-1))
out["two_prompts"] = raw("/v1/completions", json.dumps({"model": "smollm2", "prompt": ["a", "b"]}))
out["show_unknown"] = failure(lambda: ol.show("nobody/nothing"))
# A long reply runs in the one cache (`--max-sequences 1`); one more waits (`--max-queue 1`); the next is refused.
long = oa.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=400, temperature=0, stream=True)
it = iter(long)
next(it); next(it)
waited = {}
t = threading.Thread(target=lambda: waited.update(text=call("smollm2").choices[0].message.content))
t.start()
time.sleep(1.5)
out["busy"] = failure(lambda: call("smollm2"))
# The long reply's client leaves mid-stream; the queue moves on.
long.close()
t.join()
out["waited"] = waited["text"]
out["after"] = call("smollm2:latest").choices[0].message.content
"#,
    );
    let openai_error = |message: String, code: Value| json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}});
    let unknown = "model `nobody/nothing` is not in the store (hint: run `llmctl pull nobody/nothing` first, or see `llmctl list`)";
    assert_eq!(cli_error("nobody/nothing"), unknown, "the same words as the CLI's");
    assert_eq!(out["unknown"]["status"], 404);
    assert_eq!(out["unknown"]["body"], openai_error(unknown.into(), json!("model_not_found")));
    assert_eq!(out["unknown_ollama"], json!({"status": 404, "error": unknown}));
    let bogus = cli_error("smollm2:kv_bogus");
    assert!(bogus.starts_with("unsupported quantization `kv_bogus`: safetensors models take"), "{bogus}");
    assert_eq!(out["bogus"]["status"], 400);
    assert_eq!(out["bogus"]["body"], openai_error(bogus.clone(), Value::Null));
    assert_eq!(out["bogus_ollama"], json!({"status": 400, "error": bogus}));
    assert_eq!(out["weight_tag"]["body"], openai_error(cli_error("smollm2:Q4_K_M"), Value::Null));
    let message = |key: &str| out[key]["body"]["error"]["message"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        (out["n"]["status"].as_u64(), message("n")),
        (Some(400), "`n` must be 1: llmctl generates one choice per request, not 2".into())
    );
    assert_eq!(
        (out["too_many_tokens"]["status"].as_u64(), message("too_many_tokens")),
        (Some(400), "`max_tokens` must be at most the context of `smollm2`, 4096 tokens, not 5000".into())
    );
    assert_eq!(
        (out["malformed"]["status"].as_u64(), message("malformed")),
        (Some(400), "the request body is not valid JSON: EOF while parsing a list at line 1 column 34".into())
    );
    assert_eq!(
        out["malformed_ollama"],
        json!({"status": 400, "body": {"error": "the request body is not valid JSON: EOF while parsing an object at line 1 column 19"}})
    );
    assert_eq!(
        (out["wrong_type"]["status"].as_u64(), message("wrong_type")),
        (
            Some(400),
            "invalid request body: field `messages`: invalid type: string \"hi\", expected a sequence at line 1 column 37"
                .into()
        )
    );
    assert_eq!(
        out["wrong_type_ollama"]["body"]["error"],
        "invalid request body: field `options.temperature`: invalid type: string \"hot\", expected f64 at line 1 column 69"
    );
    assert_eq!(message("missing"), "invalid request body: missing field `prompt`");
    assert_eq!(
        (out["too_large"]["status"].as_u64(), message("too_large")),
        (Some(413), "the request body is over the limit of 4 MiB".into())
    );
    assert_eq!(out["broken"]["status"], 500, "{out:#}");
    assert!(message("broken").starts_with("loading the model failed: "), "{out:#}");
    // Which file failed, not where the server keeps its files.
    assert!(message("broken").contains(" `<store>/blobs/sha256-"), "{out:#}");
    assert!(!message("broken").contains(ctx.root.path().to_str().unwrap()), "{out:#}");
    let no_template = cli_error("org/plain");
    assert!(no_template.starts_with("this model has no chat template (hint: use `--raw`"), "{no_template}");
    assert_eq!(out["no_template"]["status"], 400, "{out:#}");
    let api_hint = "(hint: send the prompt as it is: `/v1/completions`, or `/api/generate` with `\"raw\": true`)";
    assert_eq!(
        out["no_template"]["body"],
        openai_error(format!("this model has no chat template {api_hint}"), Value::Null),
        "the CLI's words, the API's way out"
    );
    assert_eq!(out["plain_raw"], 2, "the same model takes a raw prompt");
    assert_eq!(out["too_long"]["status"], 400);
    let too_long = message("too_long");
    assert!(too_long.starts_with("the prompt ("), "{too_long}");
    assert!(
        too_long.ends_with(" tokens) does not fit in the context (4096 tokens) with room for a reply"),
        "{too_long}"
    );
    assert_eq!(message("zero_tokens"), "`max_tokens` must be at least 1, not 0");
    assert_eq!(message("cold"), "`temperature` must be a number of 0 or more, not -1");
    assert_eq!(message("two_prompts"), "invalid request body: field `prompt`: llmctl takes one prompt per request");
    assert_eq!(out["show_unknown"]["status"], 404);
    assert_eq!(out["busy"]["status"], 503);
    assert_eq!(out["busy"]["retry_after"], "1");
    assert_eq!(
        out["busy"]["body"]["error"]["message"],
        "the server is busy: the request queue is full (`--max-queue`); try again shortly"
    );
    assert_eq!(out["waited"], out["after"], "the queued request ran, and so did the next");
    let log = server.wait_for_log("cancelled by the client");
    let cancelled = log.lines().find(|l| l.ends_with("cancelled by the client")).unwrap();
    let generated: usize = cancelled.split(" + ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(generated < 400, "the engine stopped generating for the client that left: {cancelled}");
    assert!(
        log.contains("POST /v1/chat/completions nobody/nothing: refused with 404: model `nobody/nothing`"),
        "{log}"
    );
    assert!(log.contains("POST /v1/chat/completions smollm2: refused with 503: the server is busy"), "{log}");
    assert!(log.contains("POST /v1/chat/completions org/broken (KV cache: none): 0 prompt + 0 generated tokens, first token -, 0.0 tokens/s, failed: loading the model failed"), "{log}");
}

/// The token texts and count of `llmctl run --json`'s greedy reply.
fn run_reply(ctx: &TestContext, model: &str, max_tokens: &str) -> (String, usize) {
    run_reply_to(ctx, model, PROMPT, max_tokens)
}

/// The same for `prompt`.
fn run_reply_to(ctx: &TestContext, model: &str, prompt: &str, max_tokens: &str) -> (String, usize) {
    let run =
        ctx.run(&["run", model, prompt, "--json", "--max-tokens", max_tokens, "--temperature", "0", "--device", "cpu"]);
    run.success();
    let tokens: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "token")
        .collect();
    (tokens.iter().map(|t| t["text"].as_str().unwrap()).collect(), tokens.len())
}

/// Greedy chat replies equal `llmctl run`'s, for each KV-cache scheme,
/// each scheme's cache loaded beside the others.
#[test]
fn serve_greedy_chat_equals_run_for_each_kv_scheme() {
    let ctx = ctx_with_smollm2();
    ctx.run(&["pull", models::smollm2_gguf().to_str().unwrap(), "--name", "smollm2-gguf"]).success();
    let server = Server::start(&ctx, &[]);
    let out = server.client(
        r#"
for tag in ["", ":kv_int8", ":kv_fp8"]:
    r = oa.chat.completions.create(model="smollm2" + tag, messages=MSGS, max_tokens=8, temperature=0)
    out[tag] = [r.choices[0].message.content, r.usage.completion_tokens]
r = ol.chat(model="smollm2-gguf:latest", messages=MSGS, options={"num_predict": 8, "temperature": 0})
out["gguf"] = [r.message.content, r.eval_count]
out["gguf_kv"] = failure(lambda: ol.chat(model="smollm2-gguf:kv_int8", messages=MSGS))
out["ps"] = [(m["name"], m["kv_scheme"], m["cache_bytes"]) for m in httpx.get(BASE + "/api/ps").json()["models"]]
"#,
    );
    for tag in ["", ":kv_int8", ":kv_fp8"] {
        let (text, count) = run_reply(&ctx, &format!("smollm2{tag}"), "8");
        assert_eq!(out[tag], json!([text, count]), "smollm2{tag}");
    }
    let (text, count) = run_reply(&ctx, "smollm2-gguf", "8");
    assert_eq!(out["gguf"], json!([text, count]), "a GGUF model, its weight type as stored");
    let kv_on_gguf = "`kv_int8` is a KV-cache scheme for safetensors models, but `smollm2-gguf` is a GGUF model: \
        GGUF models take a weight type such as `Q4_K_M`, `Q8_0` or `F16` as their tag (hint: run `smollm2-gguf` with \
        its GGUF weight type, or pull the safetensors repository to quantize the KV cache)";
    assert_eq!(out["gguf_kv"], json!({"status": 400, "error": kv_on_gguf}));
    assert_eq!(
        out["ps"],
        json!([
            ["smollm2", "f32", 16 * 188_743_680u64],
            ["smollm2:kv_int8", "kv_int8", 16 * 50_135_040u64],
            ["smollm2:kv_fp8", "kv_fp8", 16 * 50_135_040u64],
            ["smollm2-gguf", "f16", 16 * 94_371_840u64]
        ]),
        "each scheme's cache beside the others; a GGUF model's cache is f16, as llama.cpp's"
    );
    let log = server.log();
    for scheme in ["f32", "kv_int8", "kv_fp8"] {
        assert!(log.contains(&format!("(KV cache: {scheme}): 34 prompt + 8 generated tokens")), "{log}");
    }
}

/// What `serve` refuses before it listens, as the CLI says it; and an
/// address beyond loopback is the user's choice, said out loud.
#[test]
fn serve_start_errors_and_the_non_loopback_warning() {
    let ctx = TestContext::new();
    ctx.run(&["serve", "--model", "nobody/nothing", "--port", "0"]).assert(
        2,
        "",
        "error: model `nobody/nothing` is not in the store\n\
         hint: run `llmctl pull nobody/nothing` first, or see `llmctl list`\n",
    );
    let bogus = ctx.run(&["serve", "--model", "nobody/nothing:kv_bogus", "--port", "0"]);
    assert_eq!(bogus.code, 2);
    assert!(bogus.stderr.starts_with("error: unsupported quantization `kv_bogus`: "), "{}", bogus.stderr);
    let server = Server::start(&ctx, &["--host", "0.0.0.0"]);
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let log = server.log();
    assert!(
        log.starts_with("warning: listening on `0.0.0.0`, not a loopback address: anyone who can reach it can use the models (there is no authentication)\n"),
        "{log}"
    );
    ctx.run(&["serve", "--port", &port]).assert(
        1,
        "",
        &format!("error: cannot listen on `127.0.0.1:{port}`\n  caused by: Address already in use (os error 98)\n"),
    );
    let (status, log) = server.terminate();
    assert_eq!(status, Some(0), "{log}");
    let budget = ctx.run(&["serve", "--kv-budget", "lots", "--port", "0"]);
    assert_eq!(
        (budget.code, budget.stderr.as_str()),
        (
            2,
            "error: `--kv-budget` must be `auto` or a size of at least one byte, such as `8GiB`, `512MB` or `1000000`, not lots\n"
        )
    );
    let zero = ctx.run(&["serve", "--max-sequences", "0", "--port", "0"]);
    assert_eq!(zero.code, 2);
    assert!(
        zero.stderr.starts_with("error: invalid value '0' for '--max-sequences <N>': 0 is not in 1..=65535"),
        "{}",
        zero.stderr
    );
}

/// Blocks as clients come and go, on a pool of 8 blocks (256 positions):
/// a stream holds the blocks for its prompt and token limit while it runs;
/// a request with too few free waits (and `/api/ps` says so), one more
/// finds the queue full; a client that leaves mid-stream gives its blocks
/// back at once, to the one waiting; one that could never fit is refused.
#[test]
fn serve_pool_blocks_are_held_while_streaming_and_freed_when_a_client_leaves() {
    let ctx = ctx_with_smollm2();
    // SmolLM2 in f32: 30 layers × 3 KV heads × 64 × 2 × 4 bytes = 46,080 a position, 1,474,560 a block.
    let server = Server::start(&ctx, &["--model", "smollm2", "--kv-budget", "12MB", "--max-queue", "1"]);
    let log = server.log();
    assert!(log.contains("(KV cache: f32, a pool of 11.8 MB for 256 tokens in blocks of 32; context 4096)"), "{log}");
    let out = server.client(
        r#"
def ps():
    m = httpx.get(BASE + "/api/ps").json()["models"][0]
    return [m["kv_blocks_used"], m["kv_blocks_total"], m["sequences"], m["waiting"], m["cache_bytes"]]
def until(what, test):
    deadline = time.time() + 60
    while time.time() < deadline:
        now = ps()
        if test(now):
            return now
        time.sleep(0.02)
    raise SystemExit(f"/api/ps never showed {what}: {ps()}")
out["idle"] = ps()
out["too_big"] = failure(lambda: oa.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=300, temperature=0))
# 34 prompt tokens + 200: 8 blocks, all of them.
a = oa.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=200, temperature=0, stream=True)
ia = iter(a)
next(ia)
out["streaming"] = ps()
b = {}
def run_b():
    r = oa.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=20, temperature=0)
    b["text"] = r.choices[0].message.content
thread = threading.Thread(target=run_b)
thread.start()
out["b_waits"] = until("the request waiting", lambda p: p[3] == 1)
out["busy"] = failure(lambda: oa.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=4, temperature=0))
a.close()
thread.join()
out["after"] = until("the blocks free", lambda p: p[0] == 0 and p[2] == 0)
out["b"] = b["text"]
out["alone"] = oa.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=20, temperature=0).choices[0].message.content
"#,
    );
    let block = 1_474_560u64;
    assert_eq!(out["idle"], json!([0, 8, 0, 0, 8 * block]));
    assert_eq!(out["too_big"]["status"], 400, "{out:#}");
    assert_eq!(
        out["too_big"]["body"]["error"]["message"],
        "the request needs 11 KV blocks of 32 positions (334 positions: its prompt and its token limit), more than \
         the pool's 8 (hint: ask for fewer tokens, or start the server with a larger `--kv-budget`)"
    );
    assert_eq!(out["streaming"], json!([8, 8, 1, 0, 8 * block]), "a stream holds its blocks");
    assert_eq!(out["b_waits"], json!([8, 8, 1, 1, 8 * block]), "no block free: the next request waits");
    assert_eq!(out["busy"]["status"], 503, "{out:#}");
    assert_eq!(out["after"], json!([0, 8, 0, 0, 8 * block]), "{out:#}");
    assert_eq!(out["b"], out["alone"], "the request that waited got its reply");
    let log = server.log();
    let cancelled = log.lines().find(|l| l.ends_with("cancelled by the client")).unwrap_or_else(|| panic!("{log}"));
    let generated: usize = cancelled.split(" + ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(generated < 200, "the stream was cut short: {cancelled}");
    drop(server);
    let starved = ctx.run(&["serve", "--model", "smollm2", "--kv-budget", "1MiB", "--port", "0", "--device", "cpu"]);
    assert_eq!(starved.code, 1, "{}", starved.stderr);
    assert_eq!(
        starved.stderr,
        "error: `--kv-budget` of 1.0 MB holds no KV block of `smollm2` (32 positions of 1.5 MB each) (hint: give a larger `--kv-budget`)\n"
    );
}

/// Continuous batching as a client sees it: 16 greedy streams at once, of
/// different prompts and KV schemes (so each model's batch mixes caches),
/// each get `llmctl run`'s reply for its prompt and scheme.
#[test]
fn serve_batches_sixteen_concurrent_streams_each_as_run_would_reply() {
    let ctx = ctx_with_smollm2();
    let server = Server::start(&ctx, &["--max-sequences", "16", "--max-queue", "16"]);
    let tags = ["", ":kv_int8", ":kv_fp8"];
    let subjects = ["colour", "fruit", "river", "planet", "bird", "metal", "city", "tree"];
    let cases: Vec<(String, String)> = (0..16)
        .map(|i| (format!("smollm2{}", tags[i % 3]), format!("Name a {} and say why.", subjects[i % 8])))
        .collect();
    let script = format!(
        r#"
cases = {cases}
replies = [None] * len(cases)
def one(i):
    model, prompt = cases[i]
    stream = oa.chat.completions.create(model=model, messages=[{{"role": "user", "content": prompt}}],
                                        max_tokens=12, temperature=0, stream=True)
    replies[i] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
threads = [threading.Thread(target=one, args=(i,)) for i in range(len(cases))]
for t in threads: t.start()
for t in threads: t.join()
out["replies"] = replies
"#,
        cases = serde_json::to_string(&cases).unwrap()
    );
    let out = server.client(&script);
    let replies = out["replies"].as_array().unwrap();
    for ((model, prompt), reply) in cases.iter().zip(replies) {
        let (want, _) = run_reply_to(&ctx, model, prompt, "12");
        assert_eq!(reply.as_str(), Some(want.as_str()), "{model} on {prompt:?}");
    }
    let log = server.log();
    assert_eq!(log.matches("POST /v1/chat/completions smollm2").count(), 16, "{log}");
}

/// The load generator, `tests/bench/serve_load.py`, run by the system `python3`.
/// Its summary, and the records it dumps into `dump`.
fn load_generator(server: &Server, prompts: &Path, dump: &Path, args: &[&str]) -> (Value, Vec<Value>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bench/serve_load.py");
    let output = Command::new("python3")
        .arg(script)
        .args(["--url", &server.url, "--prompts", prompts.to_str().unwrap(), "--dump", dump.to_str().unwrap()])
        .args(args)
        .output()
        .expect("python3 runs the load generator");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the load generator failed:\n{stdout}\n{}\n--- server ---\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
    let summary = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("no JSON summary ({e}):\n{stdout}"));
    let records = serde_json::from_str(&std::fs::read_to_string(dump).unwrap()).unwrap();
    (summary, records)
}

/// Issue #19: a bounded load through the load generator (so it is tested
/// here): 24 greedy streams of 12 tokens, 8 at a time, of distinct prompts over the three
/// KV schemes, then 6 through Ollama's API. No stream is lost, mixed or
/// duplicated: each is whole, with the usage its text chunks count, and its
/// text is the reply the same prompt gets alone, which no other prompt gets.
#[test]
fn serve_load_generator_streams_are_not_lost_mixed_or_duplicated() {
    let ctx = ctx_with_smollm2();
    let models = ["smollm2", "smollm2:kv_int8", "smollm2:kv_fp8"];
    // `--model` loads each before listening, and names request i's model (i mod 3) to the generator.
    let named: Vec<&str> = models.iter().flat_map(|m| ["--model", m]).collect();
    let server = Server::start(&ctx, &[&named[..], &["--max-sequences", "8", "--max-queue", "24"]].concat());
    // Counting prompts: each reply continues numbers that no other prompt's does.
    let prompts: Vec<String> = (0..24)
        .map(|i| match (i % 2, 101 + 41 * i) {
            (0, a) => format!("{a}, {}, {}, {},", a + 1, a + 2, a + 3),
            (_, a) => {
                format!("Chapter {}, page {a}; chapter {}, page {}; chapter {}, page", i + 2, i + 3, a + 7, i + 4)
            }
        })
        .collect();
    let file = ctx.root.path().join("prompts.json");
    std::fs::write(&file, serde_json::to_string(&prompts).unwrap()).unwrap();
    let load = |dump: &str, args: &[&str]| {
        let args = [&named[..], &["--max-tokens", "12"], args].concat();
        load_generator(&server, &file, &ctx.root.path().join(dump), &args)
    };
    let (summary, streams) = load("openai.json", &["--concurrency", "8", "--timeout", "150"]);
    let (ollama, ollama_streams) =
        load("ollama.json", &["--api", "ollama", "--requests", "6", "--concurrency", "3", "--timeout", "60"]);
    assert_eq!(
        (&summary["done"], &summary["requests"], &summary["completion_tokens"]),
        (&json!(24), &json!(24), &json!(24 * 12)),
        "{summary:#}"
    );
    assert_eq!(
        (&ollama["done"], &ollama["requests"], &ollama["completion_tokens"]),
        (&json!(6), &json!(6), &json!(6 * 12))
    );
    // Each prompt alone, whole (not streamed), through the official client.
    let cases: Vec<(&str, &str)> = (0..24).map(|i| (models[i % 3], prompts[i].as_str())).collect();
    let script = format!(
        r#"
out["alone"] = []
for model, prompt in {cases}:
    r = oa.completions.create(model=model, prompt=prompt, max_tokens=12, temperature=0)
    out["alone"].append([r.choices[0].text, r.usage.completion_tokens])
"#,
        cases = serde_json::to_string(&cases).unwrap()
    );
    let alone = server.client(&script)["alone"].as_array().unwrap().clone();
    let replies: Vec<&str> = alone.iter().map(|a| a[0].as_str().unwrap()).collect();
    for (i, reply) in replies.iter().enumerate() {
        let twins: Vec<usize> = (0..24).filter(|&j| j != i && replies[j].contains(reply)).collect();
        assert!(reply.len() > 8 && twins.is_empty(), "prompt {i}'s reply {reply:?} is in the replies to {twins:?}");
    }
    for (api, records) in [("openai", &streams), ("ollama", &ollama_streams)] {
        for (i, record) in records.iter().enumerate() {
            let (model, text) = (models[i % 3], record["text"].as_str().unwrap());
            let case = format!("{api} request {i} ({model}, {:?})", prompts[i]);
            assert_eq!(
                (&record["index"], &record["model"], &record["end"]),
                (&json!(i), &json!(model), &json!("done"))
            );
            assert_eq!(text, replies[i], "{case}: the stream's text is the prompt's reply alone");
            let others: Vec<usize> = (0..24).filter(|&j| j != i && text.contains(replies[j])).collect();
            assert!(others.is_empty(), "{case}: its text holds the replies to {others:?}: {text:?}");
            assert_eq!(record["completion_tokens"], alone[i][1], "{case}: the usage it has alone");
            assert_eq!(record["text_chunks"], record["completion_tokens"], "{case}: a text chunk per token counted");
            assert_eq!(record["finish_reason"], "length", "{case}");
        }
    }
    let log = server.log();
    assert_eq!(log.matches("POST /v1/completions smollm2").count(), 48, "one log line per request:\n{log}");
    assert_eq!(log.matches("POST /api/generate smollm2").count(), 6, "{log}");
}

/// A stand-in server whose streams go wrong as each prompt's first word says:
/// `whole` ends well, `stall` stops sending, `cut` closes before the end,
/// `error` sends an error event, `bare` ends without usage.
fn faulty_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || faulty_reply(stream));
        }
    });
    url
}

fn faulty_reply(mut stream: std::net::TcpStream) {
    use std::io::Write;
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    for line in reader.by_ref().lines().map_while(Result::ok).take_while(|l| !l.is_empty()) {
        if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length: ") {
            length = n.parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    let mode = body["prompt"].as_str().unwrap().split(' ').next().unwrap().to_string();
    let event = |v: Value| format!("data: {v}\n\n");
    let mut out = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n".to_string();
    out += &event(json!({"choices": [{"text": "Hi", "finish_reason": null}]}));
    match mode.as_str() {
        "stall" => {
            stream.write_all(out.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        "cut" => {}
        "error" => out += &event(json!({"error": {"message": "boom"}})),
        "bare" => out += &(event(json!({"choices": [{"text": "", "finish_reason": "length"}]})) + "data: [DONE]\n\n"),
        _ => {
            let usage = json!({"prompt_tokens": 2, "completion_tokens": 2});
            out += &event(json!({"choices": [{"text": " there", "finish_reason": "length"}], "usage": usage}));
            out += "data: [DONE]\n\n";
        }
    }
    let _ = stream.write_all(out.as_bytes());
}

/// The load generator tells a stream that hung, was cut short or failed
/// from one that ended whole, and exits 1 for any of them.
#[test]
fn serve_load_generator_reports_streams_that_hang_break_or_fail() {
    let ctx = TestContext::new();
    let file = ctx.root.path().join("prompts.json");
    std::fs::write(&file, r#"["whole 1", "stall 2", "cut 3", "error 4", "bare 5"]"#).unwrap();
    let dump = ctx.root.path().join("dump.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bench/serve_load.py");
    let started = Instant::now();
    let output = Command::new("python3")
        .arg(script)
        .args(["--url", &faulty_server(), "--model", "m", "--concurrency", "5", "--timeout", "2"])
        .args(["--prompts", file.to_str().unwrap(), "--dump", dump.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15), "`--timeout` bounds the run: {:?}", started.elapsed());
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        [&summary["done"], &summary["hung"], &summary["cut_short"], &summary["failed"]],
        [&json!(1), &json!(1), &json!(2), &json!(1)],
        "{summary:#}"
    );
    let records: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(dump).unwrap()).unwrap();
    let ends: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| (r["end"].as_str().unwrap(), r["error"].as_str().unwrap_or(""), r["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ends,
        [
            ("done", "", "Hi there"),
            ("hung", "timed out", "Hi"),
            ("cut_short", "the stream ended without its end marker", "Hi"),
            ("failed", "RuntimeError: error in the stream: {\"message\": \"boom\"}", "Hi"),
            ("cut_short", "the stream ended without a finish reason or usage", "Hi"),
        ]
    );
    assert_eq!(records[0]["completion_tokens"], 2);
    assert!(stderr.contains("request 1 (m): hung: timed out\n"), "{stderr}");
}
