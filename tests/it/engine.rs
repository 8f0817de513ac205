//! The engine on a real model, SmolLM2-135M-Instruct (dequantized from its
//! Q4_1 GGUF to f32 safetensors), checked against an independent reference:
//! Hugging Face transformers 5.17 in float32 on CPU, loading the GGUF itself
//! (`tests/reference/smollm2_reference.py` → `smollm2_golden.json`).

#![allow(clippy::print_stderr, reason = "tests report measured figures (seen with --nocapture)")]

use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device};
use llmctl::engine::chat::Message;
use llmctl::engine::decoder::{CachedModel, Decoder};
use llmctl::engine::device::DeviceRequest;
use llmctl::engine::generate::{GenerateOptions, StopReason, TokenSink, generate};
use llmctl::engine::kv_cache::KvCache;
use llmctl::engine::model::{Logits, Model};
use llmctl::engine::sampling::{SamplingParams, argmax};
use llmctl::engine::text::TextCodec;
use llmctl::engine::{self, LoadRequest};
use llmctl::kv_size::{CacheLayout, DenseDtype};
use llmctl::quant::KvScheme;
use llmctl::store::Store;
use serde_json::Value;

/// |ours − reference| for first-step logits (values around 10–25): f32
/// sums in a different order drift by ~1e-4 relative over 30 layers.
const LOGIT_TOLERANCE: f32 = 2e-2;
/// Mean NLL of the long prompt, dense f32 cache vs the reference.
const NLL_TOLERANCE: f64 = 1e-3;
/// Issue #3's quality bounds for the quantized caches, vs our dense cache.
const INT8_MAX_ABS_DELTA_NLL: f64 = 0.002;
const FP8_MAX_DELTA_NLL: f64 = 0.008;
const SAME_GREEDY_TOKENS: usize = 16;
const GREEDY_TOKENS: usize = 32;
const EOS: u32 = 2;

struct Fixture {
    model: Model,
    text: TextCodec,
    golden: Value,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let imported: &'static crate::support::ImportedModel =
            Box::leak(Box::new(crate::support::import_model(&crate::support::smollm2::smollm2_dir("f32"), "smollm2")));
        let (store, manifest) = (&imported.store, &imported.manifest);
        let dir = store.root().to_path_buf();
        let files: std::collections::HashMap<String, std::path::PathBuf> =
            manifest.files.iter().map(|f| (f.name.clone(), dir.join("blobs").join(f.sha256.file_name()))).collect();
        let config =
            llmctl::engine::config::ModelConfig::parse(&std::fs::read(&files["config.json"]).unwrap()).unwrap();
        // SAFETY: the blob is not modified while mapped.
        let vb = unsafe {
            candle_nn::VarBuilder::from_mmaped_safetensors(&[&files["model.safetensors"]], DType::F32, &Device::Cpu)
        }
        .unwrap();
        let model = Model::load(&vb, config, 2048).unwrap();
        let loaded = engine::load(
            &store.model_files(manifest),
            &LoadRequest { device: DeviceRequest::Cpu, ctx_size: Some(8), kv: None },
            &mut engine::NoObserver,
        )
        .unwrap();
        let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/smollm2_golden.json");
        let golden = serde_json::from_slice(&std::fs::read(golden_path).unwrap()).unwrap();
        Fixture { model, text: loaded.text, golden }
    })
}

fn prompts() -> &'static [Value] {
    fixture().golden["prompts"].as_array().unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn new_cache(model: &Model, kv: Option<KvScheme>, capacity: usize) -> KvCache {
    let layout = kv.map_or(CacheLayout::Dense(DenseDtype::F32), CacheLayout::Quantized);
    model.new_cache(layout, capacity, DType::F32).unwrap()
}

/// f32 logits of the last of `tokens`, run after what `cache` holds.
fn last_logits(model: &Model, cache: &mut KvCache, tokens: &[u32]) -> Vec<f32> {
    model.forward(tokens, cache, Logits::Last).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn encode(f: &Fixture, prompt: &Value) -> Vec<u32> {
    let text = prompt["text"].as_str().unwrap();
    if prompt["chat"].as_bool().unwrap() {
        let (rendered, ids) = f.text.encode_chat(&[Message { role: "user".into(), content: text.into() }]).unwrap();
        assert_eq!(rendered, prompt["rendered"].as_str().unwrap());
        ids
    } else {
        f.text.encode_raw(text).unwrap()
    }
}

/// The reference's greedy ids up to (not including) the model's EOS.
fn reference_greedy(prompt: &Value) -> Vec<u32> {
    let all = ids(&prompt["greedy_ids"]);
    all.iter().take_while(|&&id| id != EOS).copied().collect()
}

struct Collect(Vec<u32>);

impl TokenSink for Collect {
    fn token(&mut self, id: u32, _: &str) -> std::io::Result<()> {
        self.0.push(id);
        Ok(())
    }
}

fn greedy(f: &Fixture, prompt_ids: &[u32], kv: Option<KvScheme>, max_tokens: usize) -> (Vec<u32>, StopReason) {
    let mut cache = new_cache(&f.model, kv, prompt_ids.len() + max_tokens + 1);
    let options = GenerateOptions { max_tokens, sampling: SamplingParams::greedy() };
    let mut out = Collect(Vec::new());
    let mut decoder = CachedModel { model: &f.model, cache: &mut cache };
    let stats = generate(&mut decoder, &f.text, prompt_ids, 0, &options, &mut out).unwrap();
    (out.0, stats.stop_reason)
}

#[test]
fn prompt_token_ids_match_the_reference() {
    let f = fixture();
    for prompt in prompts() {
        assert_eq!(encode(f, prompt), ids(&prompt["prompt_ids"]), "prompt `{}`", prompt["name"]);
    }
}

#[test]
fn greedy_f32_generation_matches_the_reference() {
    let f = fixture();
    for prompt in prompts() {
        let (ours, stop) = greedy(f, &ids(&prompt["prompt_ids"]), None, GREEDY_TOKENS);
        let want = reference_greedy(prompt);
        assert_eq!(ours, want, "prompt `{}`", prompt["name"]);
        let expected_stop = if want.len() < GREEDY_TOKENS { StopReason::Eos } else { StopReason::MaxTokens };
        assert_eq!(stop, expected_stop, "prompt `{}`", prompt["name"]);
    }
}

#[test]
fn first_step_top10_logits_match_the_reference() {
    let f = fixture();
    for prompt in prompts().iter().filter(|p| p["name"] != "long") {
        let prompt_ids = ids(&prompt["prompt_ids"]);
        let mut cache = new_cache(&f.model, None, prompt_ids.len());
        let logits = last_logits(&f.model, &mut cache, &prompt_ids);
        let (top, values) = (ids(&prompt["top_ids"]), prompt["top_logits"].as_array().unwrap());
        for (id, want) in top.iter().zip(values) {
            let (got, want) = (logits[*id as usize], want.as_f64().unwrap() as f32);
            assert!((got - want).abs() <= LOGIT_TOLERANCE, "prompt `{}` token {id}: {got} vs {want}", prompt["name"]);
        }
        assert_eq!(argmax(&logits), top[0]);
    }
}

/// Mean NLL of the prompt and the greedy continuation, from one prefill.
fn score_and_continue(f: &Fixture, prompt_ids: &[u32], kv: Option<KvScheme>, n: usize) -> (f64, Vec<u32>) {
    let mut cache = new_cache(&f.model, kv, prompt_ids.len() + n);
    let logits = f.model.forward(prompt_ids, &mut cache, Logits::All).unwrap();
    let logprobs: Vec<Vec<f32>> = candle_nn::ops::log_softmax(&logits, 1).unwrap().to_vec2().unwrap();
    let nll = prompt_ids[1..].iter().enumerate().map(|(i, &id)| -(logprobs[i][id as usize] as f64)).sum::<f64>()
        / (prompt_ids.len() - 1) as f64;
    let mut next = argmax(logprobs.last().unwrap());
    let mut out = vec![next];
    while out.len() < n && next != EOS {
        let row = last_logits(&f.model, &mut cache, &[next]);
        next = argmax(&row);
        out.push(next);
    }
    (nll, out)
}

#[test]
fn quantized_caches_stay_within_the_quality_bounds() {
    let f = fixture();
    let long = prompts().iter().find(|p| p["name"] == "long").unwrap();
    let long_ids = ids(&long["prompt_ids"]);
    let (dense_nll, dense_next) = score_and_continue(f, &long_ids, None, SAME_GREEDY_TOKENS);
    let reference_nll = long["mean_nll"].as_f64().unwrap();
    eprintln!("long prompt ({} tokens): mean NLL dense {dense_nll:.6}, reference {reference_nll:.6}", long_ids.len());
    assert!((dense_nll - reference_nll).abs() <= NLL_TOLERANCE, "dense {dense_nll} vs reference {reference_nll}");
    assert_eq!(dense_next, reference_greedy(long)[..SAME_GREEDY_TOKENS]);
    for (scheme, bound, signed) in
        [(KvScheme::Int8, INT8_MAX_ABS_DELTA_NLL, false), (KvScheme::Fp8, FP8_MAX_DELTA_NLL, true)]
    {
        let (nll, next) = score_and_continue(f, &long_ids, Some(scheme), SAME_GREEDY_TOKENS);
        let delta = nll - dense_nll;
        eprintln!("{}: mean NLL {nll:.6}, delta {delta:+.6}", scheme.as_str());
        let within = if signed { delta <= bound } else { delta.abs() <= bound };
        assert!(within, "{}: delta NLL {delta} beyond {bound}", scheme.as_str());
        assert_eq!(next, dense_next, "{}: greedy continuation of the long prompt", scheme.as_str());
    }
}

/// The dense cache's top-2 logit gap after `prompt` + `generated`.
fn dense_gap(f: &Fixture, prompt: &[u32], generated: &[u32]) -> f32 {
    let tokens: Vec<u32> = prompt.iter().chain(generated).copied().collect();
    let mut cache = new_cache(&f.model, None, tokens.len());
    let mut row = last_logits(&f.model, &mut cache, &tokens);
    row.sort_by(|a, b| b.total_cmp(a));
    row[0] - row[1]
}

#[test]
fn int8_cache_keeps_the_first_16_greedy_tokens() {
    let f = fixture();
    for prompt in prompts().iter().filter(|p| p["name"] != "long") {
        let prompt_ids = ids(&prompt["prompt_ids"]);
        let (dense, _) = greedy(f, &prompt_ids, None, SAME_GREEDY_TOKENS);
        let (ours, _) = greedy(f, &prompt_ids, Some(KvScheme::Int8), SAME_GREEDY_TOKENS);
        assert_eq!(ours, dense, "kv_int8 on prompt `{}`", prompt["name"]);
    }
}

/// The greedy tokens (up to EOS) that an implementation of `scheme`'s
/// format sharing no code with ours gives for `prompt`: transformers in f32
/// with every key and value row round-tripped through the format
/// (tests/reference/kv_quant_reference.py, output in kv_quant_golden.json).
fn reference_quantized_greedy(prompt: &str, scheme: KvScheme) -> Vec<u32> {
    static GOLDEN: OnceLock<Value> = OnceLock::new();
    let golden = GOLDEN.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/kv_quant_golden.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    });
    let entry = golden["prompts"].as_array().unwrap().iter().find(|p| p["name"] == prompt).unwrap();
    ids(&entry[scheme.as_str()]["greedy_ids"]).into_iter().take_while(|&id| id != EOS).collect()
}

/// Each quantized cache gives the independent implementation's greedy
/// tokens. kv_fp8 keeps the dense tokens for 16 steps except on the
/// non-ASCII prompt, where at token 14 (dense top-2 gap 0.153) both it and
/// the reference take the runner-up: E4M3's 3-bit mantissa moves a logit by
/// more than that, so the issue's 16 identical tokens are out of the
/// format's reach there.
#[test]
fn quantized_caches_give_the_independent_implementations_greedy_tokens() {
    let f = fixture();
    for scheme in [KvScheme::Int8, KvScheme::Fp8] {
        for prompt in prompts().iter().filter(|p| p["name"] != "long") {
            let (name, prompt_ids) = (prompt["name"].as_str().unwrap(), ids(&prompt["prompt_ids"]));
            let (ours, _) = greedy(f, &prompt_ids, Some(scheme), SAME_GREEDY_TOKENS);
            assert_eq!(ours, reference_quantized_greedy(name, scheme), "{} on prompt `{name}`", scheme.as_str());
            let (dense, _) = greedy(f, &prompt_ids, None, SAME_GREEDY_TOKENS);
            if let Some(i) = ours.iter().zip(&dense).position(|(a, b)| a != b) {
                let gap = dense_gap(f, &prompt_ids, &dense[..i]);
                eprintln!(
                    "{} on `{name}` leaves the dense tokens at token {}, as the reference does (dense top-2 gap {gap:.3})",
                    scheme.as_str(),
                    i + 1
                );
            }
        }
    }
}

#[test]
fn smollm2_answers_through_the_cli_with_each_cache() {
    let ctx = crate::support::TestContext::new();
    let dir = crate::support::smollm2::smollm2_dir("bf16");
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "smollm2"]).success();
    let show = ctx.run(&["show", "smollm2:kv_int8", "--json"]).json();
    assert_eq!(show["weight_dtype"], "bf16");
    // models.md: 23,040 bytes per token in bf16; int8 halves it and adds 180 f32 scales.
    assert_eq!(show["kv_cache"]["unquantized"]["bytes_per_token"], 23_040);
    assert_eq!(show["kv_cache"]["selected"]["bytes_per_token"], 11_520 + 720);
    for tag in ["", ":kv_int8", ":kv_fp8"] {
        let model = format!("smollm2{tag}");
        let out = ctx.run(&["run", &model, "--raw", "--max-tokens", "3", "The capital of France is"]);
        out.success();
        assert_eq!(out.stdout, " Paris.\n\n", "{model}");
        let chat = ctx.run(&["run", &model, "--max-tokens", "12", "What is the capital of France?"]);
        assert!(chat.success().stdout.contains("Paris"), "{model}: {}", chat.stdout);
    }
    let piped =
        ctx.run_with_stdin(&["run", "smollm2:kv_int8", "--raw", "--max-tokens", "3"], "The capital of France is");
    assert_eq!(piped.stdout, " Paris.\n\n");
}

/// The reference's top-2 gap on the chat prompt's first token (504 "The"
/// vs 60 "L") is 0.082: Q4_1 weights with Q8 activations may take either.
const GGUF_NEAR_TIE: f64 = 0.1;

#[test]
fn gguf_runs_with_the_files_own_tokenizer_and_matches_the_reference_first_tokens() {
    let ctx = crate::support::TestContext::new();
    let gguf = crate::support::models::smollm2_gguf();
    ctx.run(&["pull", gguf.to_str().unwrap(), "--name", "smol"]).success();
    let store = Store::open(&ctx.store()).unwrap();
    let manifest = store.find(&"smol".parse().unwrap()).unwrap();
    let request = LoadRequest { device: DeviceRequest::Cpu, ctx_size: Some(256), kv: None };
    let mut loaded = engine::load(&store.model_files(&manifest), &request, &mut engine::NoObserver).unwrap();
    for prompt in prompts().iter().filter(|p| p["name"] != "long") {
        let text = prompt["text"].as_str().unwrap();
        let ours = if prompt["chat"].as_bool().unwrap() {
            loaded.text.encode_chat(&[Message { role: "user".into(), content: text.into() }]).unwrap().1
        } else {
            loaded.text.encode_raw(text).unwrap()
        };
        assert_eq!(ours, ids(&prompt["prompt_ids"]), "GGUF tokenizer on `{}`", prompt["name"]);
        loaded.decoder.reset();
        let options = GenerateOptions { max_tokens: 1, sampling: SamplingParams::greedy() };
        let mut out = Collect(Vec::new());
        generate(loaded.decoder.as_mut(), &loaded.text, &ours, 0, &options, &mut out).unwrap();
        let (top, logits) = (ids(&prompt["top_ids"]), prompt["top_logits"].as_array().unwrap());
        let gap = logits[0].as_f64().unwrap() - logits[1].as_f64().unwrap();
        if gap < GGUF_NEAR_TIE {
            assert!(top[..2].contains(&out.0[0]), "`{}`: {} not among {:?}", prompt["name"], out.0[0], &top[..2]);
        } else {
            assert_eq!(out.0[0], top[0], "first token on `{}`", prompt["name"]);
        }
    }
    let out = ctx.run(&["run", "smol", "--raw", "--max-tokens", "3", "The capital of France is"]);
    assert_eq!(out.success().stdout, " Paris.\n\n");
    // Said, never silent: the file's Q4_1 blocks are computed as Q8_0 on the CPU.
    let expected = "note: Q4_1 blocks are computed as Q8_0 on the CPU (candle has no fast kernel for them)\n\
                    running smol on cpu (KV cache: f16, 94.4 MB for 4096 tokens)\n";
    assert!(out.stderr.starts_with(expected), "{}", out.stderr);
    // The file's own context (8192), beyond the 4096 candle's GGUF Llama precomputed.
    let full =
        ctx.run(&["run", "smol", "--raw", "--max-tokens", "3", "--ctx-size", "8192", "The capital of France is"]);
    assert_eq!(full.success().stdout, " Paris.\n\n");
    assert!(full.stderr.contains("(KV cache: f16, 188.7 MB for 8192 tokens)"), "{}", full.stderr);
    let over = ctx.run(&["run", "smol", "--raw", "--ctx-size", "8193", "Hi"]);
    assert_eq!(over.code, 2, "{}", over.stderr);
    assert!(over.stderr.contains("`--ctx-size 8193` is beyond the model's context length of 8192"), "{}", over.stderr);
}

/// What the model is given, through the CLI: `--json`'s first event and
/// `--verbose-prompt` carry the reference's text and token ids, for both
/// formats and for raw and chat prompts.
#[test]
fn the_prompt_event_and_verbose_prompt_show_the_references_tokens() {
    let ctx = crate::support::TestContext::new();
    let gguf = crate::support::models::smollm2_gguf();
    ctx.run(&["pull", gguf.to_str().unwrap(), "--name", "smol"]).success();
    let dir = crate::support::smollm2::smollm2_dir("f32");
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "smol-st"]).success();
    for model in ["smol", "smol-st"] {
        for prompt in prompts().iter().filter(|p| p["name"] != "long") {
            let text = prompt["text"].as_str().unwrap();
            let mut args = vec!["run", model, "--json", "--max-tokens", "1", "--device", "cpu", text];
            if !prompt["chat"].as_bool().unwrap() {
                args.push("--raw");
            }
            let out = ctx.run(&args);
            let first: Value = serde_json::from_str(out.success().stdout.lines().next().unwrap()).unwrap();
            assert_eq!(first["type"], "prompt", "{model}: {}", out.stdout);
            assert_eq!(ids(&first["ids"]), ids(&prompt["prompt_ids"]), "{model} on `{}`", prompt["name"]);
            let shown = if prompt["chat"].as_bool().unwrap() { &prompt["rendered"] } else { &prompt["text"] };
            assert_eq!(&first["text"], shown, "{model} on `{}`", prompt["name"]);
        }
    }
    let out = ctx.run(&["run", "smol", "--raw", "--max-tokens", "1", "--verbose-prompt", "The capital of France is"]);
    assert!(
        out.success().stderr.contains(
            "prompt: \"The capital of France is\"\nnumber of tokens in prompt = 5\n     504 -> \"The\"\n    3575 -> \" capital\"\n"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, " Paris\n", "the prompt goes to stderr only");
    // `--system` puts a system turn before the message, in place of the template's default one.
    let out = ctx.run(&["run", "smol-st", "--json", "--max-tokens", "1", "--system", "You answer in French.", "Hi"]);
    let first: Value = serde_json::from_str(out.success().stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["text"],
        "<|im_start|>system\nYou answer in French.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let raw = ctx.run(&["run", "smol-st", "--raw", "--system", "terse", "Hi"]);
    assert_eq!(raw.code, 2, "{}", raw.stderr);
    assert!(raw.stderr.contains("the argument '--raw' cannot be used with '--system <TEXT>'"), "{}", raw.stderr);
}

#[test]
fn bench_reports_the_reference_nll_and_the_quality_bounds() {
    let ctx = crate::support::TestContext::new();
    let dir = crate::support::smollm2::smollm2_dir("f32");
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "smollm2"]).success();
    let text = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/long_prompt.txt");
    let out = ctx.run(&[
        "bench",
        "smollm2",
        "--ctx",
        "64",
        "--gen",
        "4",
        "--device",
        "cpu",
        "--text",
        text.to_str().unwrap(),
        "--json",
    ]);
    let v = out.success().json();
    let long = prompts().iter().find(|p| p["name"] == "long").unwrap();
    let quality = v["quality"].as_array().unwrap();
    let field = |i: usize, key: &str| quality[i][key].as_f64().unwrap();
    // The same text, token for token, as the reference scored.
    assert_eq!(quality[0]["tokens"].as_u64().unwrap() as usize, ids(&long["prompt_ids"]).len() - 1);
    let reference = long["mean_nll"].as_f64().unwrap();
    assert!(
        (field(0, "mean_nll") - reference).abs() <= NLL_TOLERANCE,
        "dense {} vs reference {reference}",
        field(0, "mean_nll")
    );
    eprintln!("bench ΔNLL: kv_int8 {:+.5}, kv_fp8 {:+.5}", field(1, "delta_nll"), field(2, "delta_nll"));
    assert!(field(1, "delta_nll").abs() <= INT8_MAX_ABS_DELTA_NLL);
    assert!(field(2, "delta_nll") <= FP8_MAX_DELTA_NLL);
    for row in &quality[1..] {
        // Small, positive divergence; the most likely token nearly always kept.
        let (kl, agree) = (row["mean_kl"].as_f64().unwrap(), row["top1_agreement"].as_f64().unwrap());
        assert!(kl > 0.0 && kl < 0.05 && agree > 0.9, "{row}");
    }
    // Per-token cache sizes of the f32 model: 11,520 values × 4 bytes; 1 byte + scales.
    let speed = v["speed"].as_array().unwrap();
    let per_token: Vec<u64> = speed.iter().map(|r| r["kv_bytes_per_token"].as_u64().unwrap()).collect();
    assert_eq!(per_token, [46_080, 12_240, 12_240]);
}

/// A second chat turn run on top of the first turn's cache gives the tokens
/// a fresh cache gives for the whole conversation.
#[test]
fn a_chat_turn_on_the_previous_turns_cache_matches_a_fresh_run() {
    let f = fixture();
    let user = |text: &str| Message { role: "user".into(), content: text.into() };
    let first = f.text.encode_chat(&[user("What is the capital of France?")]).unwrap().1;
    let options = GenerateOptions { max_tokens: 12, sampling: SamplingParams::greedy() };
    let mut cache = new_cache(&f.model, Some(KvScheme::Int8), 256);
    let mut decoder = CachedModel { model: &f.model, cache: &mut cache };
    let mut reply = Collect(Vec::new());
    let stats = generate(&mut decoder, &f.text, &first, 0, &options, &mut reply).unwrap();
    let reply_text = f.text.tokenizer.decode(&reply.0, true).unwrap();
    let conversation = [
        user("What is the capital of France?"),
        Message { role: "assistant".into(), content: reply_text },
        user("And of Germany?"),
    ];
    let second = f.text.encode_chat(&conversation).unwrap().1;
    let shared = stats.in_cache.iter().zip(&second).take_while(|(a, b)| a == b).count();
    assert!(shared > first.len(), "the reply should be shared too: {shared} of {}", first.len());
    assert!(decoder.truncate(shared));
    let mut reused = Collect(Vec::new());
    let stats = generate(&mut decoder, &f.text, &second, shared, &options, &mut reused).unwrap();
    assert_eq!(stats.cached_prompt_tokens, shared);
    let (fresh, _) = greedy(f, &second, Some(KvScheme::Int8), 12);
    assert_eq!(reused.0, fresh);
    assert!(f.text.tokenizer.decode(&reused.0, true).unwrap().contains("Berlin"));
}

/// The interactive loop on a pseudo-terminal (util-linux `script`), two turns.
#[test]
fn interactive_chat_keeps_the_conversation_and_its_cache() {
    let ctx = crate::support::TestContext::new();
    let dir = crate::support::smollm2::smollm2_dir("f32");
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "smollm2"]).success();
    // Each line typed once the prompt is back, as a person does.
    let mut term =
        crate::support::pty::Terminal::start(&ctx.command(&["run", "smollm2", "--json", "--max-tokens", "12"]));
    let wait = std::time::Duration::from_secs(120);
    term.wait_for(">>> ", 1, wait);
    term.send("What is the capital of France?\r");
    term.wait_for("\"type\":\"done\"", 1, wait);
    term.wait_for(">>> ", 2, wait);
    term.send("And of Germany?\r");
    term.wait_for("\"type\":\"done\"", 2, wait);
    term.wait_for(">>> ", 3, wait);
    term.send("/bye\r");
    let (code, text) = term.finish();
    assert_eq!(code, 0, "{text}");
    let events: Vec<Value> =
        text.lines().filter_map(|l| l.find('{').and_then(|i| serde_json::from_str(&l[i..]).ok())).collect();
    let done: Vec<&Value> = events.iter().filter(|e| e["type"] == "done").collect();
    assert_eq!(done.len(), 2, "{text}");
    assert_eq!(done[0]["cached_prompt_tokens"], 0);
    let (first_prompt, cached) =
        (done[0]["prompt_tokens"].as_u64().unwrap(), done[1]["cached_prompt_tokens"].as_u64().unwrap());
    assert!(
        cached > first_prompt,
        "the second turn reuses the first turn's prompt and reply: {cached} of {first_prompt}"
    );
    let replies: Vec<String> = text
        .split("\"type\":\"done\"")
        .map(|turn| {
            turn.lines()
                .filter_map(|l| l.find('{').and_then(|i| serde_json::from_str::<Value>(&l[i..]).ok()))
                .filter(|e| e["type"] == "token")
                .map(|e| e["text"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    assert!(replies[0].contains("Paris") && replies[1].contains("Berlin"), "{replies:?}");
}

/// Issue #13: a prompt of no tokens (for a library caller, or a tokenizer
/// that drops everything) is refused by the engine with a usage error, on
/// both formats, instead of panicking (GGUF) or failing inside candle.
#[test]
fn generating_from_no_tokens_is_a_usage_error_on_both_formats() {
    use llmctl::engine::generate::GenerateError;
    use llmctl::exit::{Diagnostic, ExitStatus};
    let dir = tempfile::tempdir().unwrap();
    crate::support::models::write_dir(dir.path(), &crate::support::models::tiny_llama_repo(7));
    let tiny = crate::support::import_model(dir.path(), "org/tiny");
    let gguf = crate::support::import_model(&crate::support::models::smollm2_gguf(), "smollm2-gguf");
    for model in [&tiny, &gguf] {
        let request = LoadRequest { device: DeviceRequest::Cpu, ctx_size: Some(64), kv: None };
        let files = model.store.model_files(&model.manifest);
        let mut loaded = engine::load(&files, &request, &mut engine::NoObserver).unwrap();
        let options = GenerateOptions { max_tokens: 4, sampling: SamplingParams::greedy() };
        let err =
            generate(loaded.decoder.as_mut(), &loaded.text, &[], 0, &options, &mut Collect(Vec::new())).unwrap_err();
        assert!(matches!(err, GenerateError::NoTokens), "{err}");
        assert_eq!(err.to_string(), "the prompt encodes to no tokens");
        assert_eq!(err.hint().as_deref(), Some("give a prompt with some text in it"));
        assert_eq!(err.exit_status(), ExitStatus::Usage);
    }
}
