//! The decoder families against transformers: tiny random-weight models that
//! transformers made and scored (`tests/reference/tiny_families_reference.py`,
//! outputs committed under `tests/reference/tiny/`), loaded by llmctl's own
//! loader and run through every cache, whole and in chunks that wrap a
//! sliding window's slots; and the same models pulled and run by the CLI.

#![allow(clippy::print_stderr, reason = "tests report the measured differences")]

use candle_core::{DType, Device};
use llmctl::engine::config::ModelConfig;
use llmctl::engine::kv_cache::KvCache;
use llmctl::engine::model::{Logits, Model};
use llmctl::kv_size::{CacheLayout, DenseDtype};
use llmctl::quant::KvScheme;
use serde_json::Value;

use crate::support::tiny_reference::{golden, logits, root, tokens};

/// f32 vs f32 on random weights with logits of magnitude ~1–5.
const FAMILY_LOGIT_TOLERANCE: f32 = 1e-4;
/// A quantized cache against transformers' unquantized logits (magnitude
/// ~1–7) on these stress models (weights of std 0.2 make attention peaky):
/// measured 0.05–0.19 for INT8 and 0.21–1.36 for FP8 (SmolLM3 the largest).
const INT8_LOGIT_TOLERANCE: f32 = 0.25;
const FP8_LOGIT_TOLERANCE: f32 = 1.5;
/// FP8 where a router chooses 2 of 4 experts: a near-tie flips an expert at a
/// few positions (gemma4_moe: 1.76 at 2 of 24 positions; 0.45 at every
/// position when the same model chooses all 4, so nothing can flip).
const ROUTED_FP8_LOGIT_TOLERANCE: f32 = 2.0;
/// A chunked prompt against the whole prompt through the same quantized
/// cache: the same rows, except where a last-bit difference of a product of
/// another shape moves a value across a rounding boundary of its code (one
/// step, 1/127 of its vector's scale for INT8): measured ≤ 0.0015. A window
/// read wrongly is off by whole logits (7.45 with no window at all).
const SAME_CACHE_TOLERANCE: f32 = 0.01;
/// Prompt chunks shorter than the test windows (8) and not dividing the prompt (24).
const CHUNK: usize = 5;

fn load(name: &str) -> Model {
    let config = ModelConfig::parse(&std::fs::read(root().join(name).join("config.json")).unwrap()).unwrap();
    let weights = root().join(name).join("model.safetensors");
    // SAFETY: the committed file is not modified while mapped.
    let vb = unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }.unwrap();
    Model::load(&vb, config, 64).unwrap()
}

fn cache(model: &Model, kv: Option<KvScheme>, capacity: usize) -> KvCache {
    let layout = kv.map_or(CacheLayout::Dense(DenseDtype::F32), CacheLayout::Quantized);
    model.new_cache(layout, capacity, DType::F32).unwrap()
}

fn worst(got: &[Vec<f32>], want: &[Vec<f32>]) -> f32 {
    got.iter().flatten().zip(want.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max)
}

/// Logits of every position, the prompt fed `chunk` tokens at a time. With
/// LongRoPE the first pass reaches past the original context: a pass's end
/// picks its factors (as in transformers), so passes within it would rotate
/// by the short factors where the whole prompt uses the long ones.
fn chunked(model: &Model, cache: &mut KvCache, tokens: &[u32], chunk: usize) -> Vec<Vec<f32>> {
    let first = model.config().block.ropes[0].longrope.as_ref().map_or(chunk, |l| chunk.max(l.original_context + 1));
    let (head, rest) = tokens.split_at(first.min(tokens.len()));
    std::iter::once(head)
        .chain(rest.chunks(chunk))
        .filter(|c| !c.is_empty())
        .flat_map(|c| model.forward(c, cache, Logits::All).unwrap().to_vec2::<f32>().unwrap())
        .collect()
}

/// Each family's block (Llama 3 RoPE scaling, Mistral with and without a
/// window, Qwen2 biases, Qwen3 q/k norms with head_dim ≠ hidden/heads,
/// SmolLM3's layers without RoPE, Gemma 3's local and global layers as a text
/// model and inside its image-text checkpoint, Qwen3-MoE's routed experts,
/// Qwen3.5's gated delta-rule layers beside gated attention, as a text model,
/// inside its image-text checkpoint and with shared experts)
/// against transformers' own logits: the whole prompt at once, in chunks,
/// and token by token through the cache; then each quantized cache.
#[test]
fn every_family_matches_transformers_logits_through_every_cache() {
    let golden = golden();
    let tokens = tokens(&golden);
    for family in golden["families"].as_array().unwrap() {
        let name = family["family"].as_str().unwrap();
        let model = load(name);
        let want = logits(family);
        let mut whole = cache(&model, None, tokens.len());
        let got: Vec<Vec<f32>> = model.forward(&tokens, &mut whole, Logits::All).unwrap().to_vec2().unwrap();
        eprintln!("{name} f32: whole prompt off by {:.2e}", worst(&got, &want));
        assert!(worst(&got, &want) <= FAMILY_LOGIT_TOLERANCE, "{name}: whole prompt off by {}", worst(&got, &want));
        for chunk in [CHUNK, 1] {
            let got = chunked(&model, &mut cache(&model, None, tokens.len()), &tokens, chunk);
            let off = worst(&got, &want);
            eprintln!("{name} f32: chunks of {chunk} off by {off:.2e}");
            assert!(off <= FAMILY_LOGIT_TOLERANCE, "{name}: chunks of {chunk} off by {off}");
        }
        let routed = model.config().block.moe.as_ref().is_some_and(|m| m.top_k < m.experts);
        let fp8 = if routed { ROUTED_FP8_LOGIT_TOLERANCE } else { FP8_LOGIT_TOLERANCE };
        for (scheme, tolerance) in [(KvScheme::Int8, INT8_LOGIT_TOLERANCE), (KvScheme::Fp8, fp8)] {
            let at_once = chunked(&model, &mut cache(&model, Some(scheme), tokens.len()), &tokens, tokens.len());
            let off = worst(&at_once, &want);
            eprintln!("{name} {}: max logit difference {off:.4}", scheme.as_str());
            assert!(off <= tolerance, "{name} {}: off by {off}", scheme.as_str());
            // Chunks that wrap a window's slots read the rows a whole pass reads.
            let in_chunks = chunked(&model, &mut cache(&model, Some(scheme), tokens.len()), &tokens, CHUNK);
            let off = worst(&in_chunks, &at_once);
            eprintln!("{name} {}: chunks of {CHUNK} against the whole prompt: {off:.5}", scheme.as_str());
            assert!(off <= SAME_CACHE_TOLERANCE, "{name} {}: chunks of {CHUNK} differ by {off}", scheme.as_str());
        }
    }
}

/// A sliding-window layer holds its window, not the context: bytes exact.
#[test]
fn windowed_layers_allocate_only_their_window() {
    let capacity = 64;
    for (name, windowed) in [("mistral_window", 2), ("gemma3_text", 2), ("gemma3", 2), ("gpt_oss", 1), ("mistral", 0)] {
        let model = load(name);
        let cfg = model.config();
        for kv in [None, Some(KvScheme::Int8), Some(KvScheme::Fp8)] {
            let cache = cache(&model, kv, capacity);
            // Per layer and position: K and V rows (f32 or one byte each), plus two f32 scales per KV head.
            let row = (cfg.kv_heads * cfg.head_dim) as u64;
            let per_position = match kv {
                None => 2 * row * 4,
                Some(_) => 2 * row + 2 * cfg.kv_heads as u64 * 4,
            };
            let positions = (cfg.layers - windowed) * capacity + windowed * 8;
            assert_eq!(cache.allocated_bytes(), per_position * positions as u64, "{name} {kv:?}");
        }
    }
}

/// Gemma 4's cache: the layers that share an earlier layer's keys store
/// nothing, the global layers store their wider heads (and, with keys as
/// values, their fewer KV heads), the local ones their window. Bytes exact,
/// from the configs' numbers.
#[test]
fn gemma4_stores_only_the_layers_that_own_their_keys() {
    let capacity = 64;
    // (model, [(stored layers, KV heads, head width, positions kept)]): gemma4_text's layers 3 and 4
    // share layers 1's and 2's; gemma4_moe's global layer has one KV head.
    let cases =
        [("gemma4_text", [(2, 2, 16, 8), (1, 2, 32, capacity)]), ("gemma4_moe", [(2, 2, 16, 8), (1, 1, 32, capacity)])];
    for (name, layers) in cases {
        let model = load(name);
        for kv in [None, Some(KvScheme::Int8), Some(KvScheme::Fp8)] {
            let bytes: usize = layers
                .iter()
                .map(|&(n, heads, d, kept)| {
                    // K and V: f32 values, or one byte each plus an f32 scale per head.
                    let per_position = match kv {
                        None => 2 * heads * d * 4,
                        Some(_) => 2 * heads * d + 2 * heads * 4,
                    };
                    n * kept * per_position
                })
                .sum();
            assert_eq!(cache(&model, kv, capacity).allocated_bytes(), bytes as u64, "{name} {kv:?}");
        }
    }
}

/// The reference Qwen3.5 models' gated delta-rule layers keep only their f32
/// state (the convolution's last 3 inputs of 160 channels and 4 heads of
/// 16 × 24: 8,064 bytes each), no KV rows; the one full-attention layer keeps
/// rows in every scheme. Bytes exact.
#[test]
fn linear_attention_layers_hold_a_fixed_state_and_no_kv_rows() {
    let capacity = 64;
    let states = 3 * (3 * 160 + 4 * 16 * 24) * 4;
    for name in ["qwen3_5_text", "qwen3_5", "qwen3_5_moe_text"] {
        let model = load(name);
        // One KV layer: K and V rows of 2 heads × 32 (f32, or bytes and two f32 scales per head).
        for (kv, per_position) in
            [(None, 2 * 64 * 4), (Some(KvScheme::Int8), 2 * 64 + 2 * 2 * 4), (Some(KvScheme::Fp8), 144)]
        {
            let cache = cache(&model, kv, capacity);
            assert_eq!(cache.allocated_bytes(), per_position * capacity as u64 + states, "{name} {kv:?}");
        }
    }
}

/// A recurrent layer keeps only the state after its last position: a cache
/// cannot roll back into its prompt (so chat runs the prompt again), and
/// after `reset` the prompt gives transformers' logits again.
#[test]
fn a_recurrent_cache_refuses_to_roll_back() {
    let golden = golden();
    let tokens = tokens(&golden);
    let family = golden["families"].as_array().unwrap().iter().find(|f| f["family"] == "qwen3_5_text").unwrap();
    let model = load("qwen3_5_text");
    let mut kv = cache(&model, None, tokens.len());
    model.forward(&tokens[..10], &mut kv, Logits::Last).unwrap();
    assert!(!kv.truncate(9), "the state at position 9 is gone");
    assert_eq!(kv.len(), 10);
    assert!(kv.truncate(10) && kv.truncate(64), "keeping every stored position needs no older state");
    // An attention-only cache (no window) still rolls back.
    let qwen3 = load("qwen3");
    let mut attention_only = cache(&qwen3, None, tokens.len());
    qwen3.forward(&tokens[..10], &mut attention_only, Logits::Last).unwrap();
    assert!(attention_only.truncate(9));
    kv.reset();
    let got: Vec<Vec<f32>> = model.forward(&tokens, &mut kv, Logits::All).unwrap().to_vec2().unwrap();
    let off = worst(&got, &logits(family));
    assert!(off <= FAMILY_LOGIT_TOLERANCE, "after reset: off by {off}");
}

/// The reference models pulled and run by the CLI on every scheme, and what
/// `show` says of their windows and recurrent layers.
#[test]
fn the_cli_pulls_and_runs_every_family_on_every_scheme() {
    let ctx = crate::support::TestContext::new();
    let golden = golden();
    for family in golden["families"].as_array().unwrap() {
        let name = family["family"].as_str().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for file in ["config.json", "model.safetensors"] {
            std::fs::copy(root().join(name).join(file), dir.path().join(file)).unwrap();
        }
        let tokenizer = crate::support::models::word_tokenizer(128);
        std::fs::write(dir.path().join("tokenizer.json"), tokenizer).unwrap();
        ctx.run(&["-q", "pull", dir.path().to_str().unwrap(), "--name", name]).success();
        for tag in ["", ":kv_int8", ":kv_fp8"] {
            let model = format!("{name}{tag}");
            let out = ctx.run(&[
                "run",
                &model,
                "--raw",
                "--device",
                "cpu",
                "--max-tokens",
                "3",
                "--json",
                "w3 w17 w99 w4 w58 w120 w7 w7 w33 w64",
            ]);
            let done: Value = serde_json::from_str(out.success().stdout.lines().last().unwrap()).unwrap();
            assert_eq!(done["type"], "done", "{model}: {}", out.stdout);
            let said = out.stderr.contains(
                "note: the checkpoint's image encoder is not loaded: llmctl runs its text model, for text prompts",
            );
            assert_eq!(said, matches!(name, "gemma3" | "gemma4" | "qwen3_5"), "{model}: {}", out.stderr);
        }
    }
    let show = ctx.run(&["show", "gemma3", "--json"]).success().json();
    assert_eq!(show["architecture"], "gemma3");
    assert_eq!(show["kv_cache"]["selected"]["sliding_window"], serde_json::json!({"layers": 2, "window": 8}));
    let text = ctx.run(&["show", "mistral_window:kv_int8"]).success().stdout.clone();
    assert!(text.contains("; 2 of 2 layers keep only their last 8 tokens"), "{text}");
    // Gemma 4: layers 3 and 4 share layers 1's and 2's cache; the global layer 2 stores heads of 32, the local
    // layers 0 and 1 heads of 16 for their window of 8. In f32: 2 × 256 + 512 B per token, at the context of 256
    // 2 × 256 × 8 + 512 × 256 bytes.
    let show = ctx.run(&["show", "gemma4_text", "--json"]).success().json();
    let selected = &show["kv_cache"]["selected"];
    assert_eq!((selected["bytes_per_token"].as_u64(), selected["context_length"].as_u64()), (Some(1024), Some(256)));
    assert_eq!(selected["bytes"].as_u64(), Some(2 * 256 * 8 + 512 * 256), "{selected}");
    assert_eq!(selected["stored_layers"].as_u64(), Some(3), "{selected}");
    let text = ctx.run(&["show", "gemma4_text"]).success().stdout.clone();
    assert!(text.contains("; 3 of 5 layers hold a KV cache; 2 of 3 layers keep only their last 8 tokens"), "{text}");
    assert!(text.contains("  cached layers    2 × 2 KV heads of 16 (last 8 tokens), 1 × 2 KV heads of 32\n"), "{text}");
    // Qwen3.5: one of four layers stores KV rows (2 heads × 32, f32 or INT8 with a scale per head);
    // three keep 8,064 bytes of state each, whatever the scheme.
    let show = ctx.run(&["show", "qwen3_5_text:kv_int8", "--json"]).success().json();
    let (dense, int8) = (&show["kv_cache"]["unquantized"], &show["kv_cache"]["selected"]);
    assert_eq!(dense["recurrent"], serde_json::json!({"layers": 3, "state_bytes": 24_192}));
    assert_eq!((dense["bytes_per_token"].as_u64(), int8["bytes_per_token"].as_u64()), (Some(512), Some(144)));
    let context = int8["context_length"].as_u64().unwrap();
    assert_eq!(int8["bytes"].as_u64().unwrap(), 144 * context + 24_192);
    assert_eq!(dense["bytes"].as_u64().unwrap(), 512 * context + 24_192);
    let text = ctx.run(&["show", "qwen3_5_moe_text"]).success().stdout.clone();
    assert!(text.contains("; 1 of 4 layers hold KV rows, 3 a fixed recurrent state of 24.2 kB in all"), "{text}");
    // `bench` allocates what `show` promises, and says which layers hold KV rows.
    let bench = ["bench", "qwen3_5_text:kv_int8", "--ctx", "16", "--gen", "2", "--device", "cpu"];
    let out = ctx.run(&bench).success().stdout.clone();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1], "KV rows in 1 of 4 layers; 3 keep a fixed recurrent state of 24.2 kB (counted in KV CACHE)");
    let json = ctx.run(&[&bench[..], &["--json"]].concat()).success().json();
    assert_eq!(json["recurrent"], serde_json::json!({"layers": 3, "state_bytes": 24_192}));
    let rows: Vec<(Option<&str>, Option<u64>)> =
        json["speed"].as_array().unwrap().iter().map(|r| (r["kv"].as_str(), r["kv_cache_bytes"].as_u64())).collect();
    assert_eq!(rows, [(Some("f32"), Some(512 * 16 + 24_192)), (Some("kv_int8"), Some(144 * 16 + 24_192))]);
}

/// gpt-oss as OpenAI publishes it, experts in MXFP4 blocks: dequantized at
/// load, it computes what transformers computes from the weights its own
/// MXFP4 code dequantizes them to (the `gpt_oss_mxfp4` reference), and `run`
/// says so on stderr.
#[test]
fn mxfp4_experts_are_dequantized_and_said_so() {
    let ctx = crate::support::TestContext::new();
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(root().join("gpt_oss_mxfp4").join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("tokenizer.json"), crate::support::models::word_tokenizer(128)).unwrap();
    ctx.run(&["-q", "pull", dir.path().to_str().unwrap(), "--name", "oss"]).success();
    let out = ctx.run(&["run", "oss", "--raw", "--device", "cpu", "--max-tokens", "2", "w3 w17 w99"]);
    assert!(
        out.success().stderr.contains(
            "note: the experts' MXFP4 blocks are dequantized to f32 as they load (llmctl has no MXFP4 kernel)"
        ),
        "{}",
        out.stderr
    );
}

/// A batched matrix product sums each row's products in another order than
/// a one-row product may: f32 rounding, measured ≤ 4e-6 on these models
/// with unquantized caches. Through a quantized cache that last bit can move
/// a value across a code's rounding boundary, as for chunks
/// (`SAME_CACHE_TOLERANCE`; measured ≤ 6.2e-6, and 4.4e-3 once, gemma3 INT8).
const BATCHED_LOGIT_TOLERANCE: f32 = 1e-5;

/// Several sequences decoded together (`Model::decode_rows`, the step a
/// server batches), each at its own length and with its own cache scheme,
/// give each one's logits decoded alone: every family, windows wrapping,
/// recurrent layers advancing their own state.
#[test]
fn sequences_decoded_together_match_each_decoded_alone() {
    let golden = golden();
    let tokens = tokens(&golden);
    let schemes = [None, Some(KvScheme::Int8), Some(KvScheme::Fp8)];
    for family in golden["families"].as_array().unwrap() {
        let name = family["family"].as_str().unwrap();
        let model = load(name);
        // Prompts of 11, 3 and 9 tokens (past the windows of 8), each from its own offset.
        let prompts = [&tokens[..11], &tokens[5..8], &tokens[2..11]];
        let (mut together, mut alone): (Vec<KvCache>, Vec<KvCache>) =
            schemes.iter().map(|&kv| (cache(&model, kv, 32), cache(&model, kv, 32))).unzip();
        for ((a, b), prompt) in together.iter_mut().zip(alone.iter_mut()).zip(prompts) {
            model.forward(prompt, a, Logits::Last).unwrap();
            model.forward(prompt, b, Logits::Last).unwrap();
        }
        let mut worst_by_scheme = [0f32; 3];
        for step in 0..6 {
            let next: Vec<u32> = (0..3).map(|i| tokens[(7 * i + step + 13) % tokens.len()]).collect();
            let mut caches: Vec<&mut KvCache> = together.iter_mut().collect();
            let batched: Vec<Vec<f32>> = model.decode_rows(&next, &mut caches).unwrap().to_vec2().unwrap();
            for (i, cache) in alone.iter_mut().enumerate() {
                let one: Vec<Vec<f32>> = model.forward(&next[i..=i], cache, Logits::Last).unwrap().to_vec2().unwrap();
                worst_by_scheme[i] = worst_by_scheme[i].max(worst(&batched[i..=i], &one));
            }
        }
        eprintln!("{name}: batched against alone (none, int8, fp8) {worst_by_scheme:?}");
        let [dense, int8, fp8] = worst_by_scheme;
        assert!(dense <= BATCHED_LOGIT_TOLERANCE, "{name}: batched decode off by {dense}");
        assert!(int8.max(fp8) <= SAME_CACHE_TOLERANCE, "{name}: batched quantized decode off by {}", int8.max(fp8));
        assert!(together.iter().zip(&alone).all(|(a, b)| a.len() == b.len()), "{name}: lengths differ");
    }
    // A full cache among the batch: the step is refused, naming the context, and no cache moves.
    let model = load("llama3");
    let (mut full, mut room) = (cache(&model, None, 3), cache(&model, None, 8));
    model.forward(&tokens[..3], &mut full, Logits::Last).unwrap();
    model.forward(&tokens[..3], &mut room, Logits::Last).unwrap();
    let err = model.decode_rows(&[5, 6], &mut [&mut room, &mut full]).unwrap_err().to_string();
    assert_eq!(err, "the context is full: 4 tokens do not fit in 3 (`--ctx-size`)");
    assert_eq!((room.len(), full.len()), (3, 3));
    let err = model.decode_rows(&[5], &mut [&mut room, &mut full]).unwrap_err().to_string();
    assert_eq!(err.lines().next(), Some("1 tokens for 2 caches"));
}

/// Collects a sequence's tokens; asks to stop after `stop_after` of them (a client gone).
struct Collect {
    tokens: std::rc::Rc<std::cell::RefCell<Vec<u32>>>,
    stop_after: Option<usize>,
}

impl llmctl::engine::generate::TokenSink for Collect {
    fn token(&mut self, id: u32, _text: &str) -> std::io::Result<()> {
        self.tokens.borrow_mut().push(id);
        Ok(())
    }

    fn stop_requested(&self) -> bool {
        self.stop_after.is_some_and(|n| self.tokens.borrow().len() >= n)
    }
}

/// Continuous batching (`engine::batch`): 16 sequences of different prompts,
/// schemes and token limits, joining in two waves while others run, one
/// stopped by its sink midway and one whose context fills, each generate
/// exactly the tokens, and end for the same reason, as `generate` alone.
#[test]
fn sixteen_sequences_batched_generate_what_each_generates_alone() {
    use llmctl::engine::batch::Batch;
    use llmctl::engine::decoder::CachedModel;
    use llmctl::engine::generate::{GenerateOptions, StopReason, generate};
    use llmctl::engine::sampling::SamplingParams;
    use llmctl::engine::text::{AddBos, TextCodec, TextParts};
    let golden = golden();
    let tokens = tokens(&golden);
    let tokenizer = tokenizers::Tokenizer::from_bytes(crate::support::models::word_tokenizer(128)).unwrap();
    // Token 2 stops, as an EOS would.
    let parts =
        TextParts { tokenizer, bos: None, eos: None, add_bos: AddBos::No, chat_template: None, eos_ids: vec![2] };
    let text = TextCodec::from_parts(parts).unwrap();
    let schemes = [None, Some(KvScheme::Int8), Some(KvScheme::Fp8)];
    for name in ["llama3", "gemma3_text", "gemma4_text", "qwen3_5_text", "qwen3_moe"] {
        let model = load(name);
        // (prompt, scheme, max tokens, capacity, stop after)
        type Plan = (Vec<u32>, Option<KvScheme>, usize, usize, Option<usize>);
        let plans: Vec<Plan> = (0..16)
            .map(|i| {
                let (from, len) = (i % 7, 2 + (i * 5) % 13);
                let prompt = tokens.iter().cycle().skip(from).take(len).copied().collect();
                let capacity = if i == 9 { len + 3 } else { 64 };
                (prompt, schemes[i % 3], 4 + i % 6, capacity, (i == 5).then_some(2))
            })
            .collect();
        let alone: Vec<(Vec<u32>, StopReason)> = plans
            .iter()
            .map(|(prompt, kv, max, capacity, stop)| {
                let collected = std::rc::Rc::default();
                let mut sink = Collect { tokens: std::rc::Rc::clone(&collected), stop_after: *stop };
                let mut c = cache(&model, *kv, *capacity);
                let options = GenerateOptions { max_tokens: *max, sampling: SamplingParams::greedy() };
                let stats =
                    generate(&mut CachedModel { model: &model, cache: &mut c }, &text, prompt, 0, &options, &mut sink)
                        .unwrap();
                (collected.borrow().clone(), stats.stop_reason)
            })
            .collect();
        let mut batch = Batch::new();
        let mut ids = Vec::new();
        let mut outputs = Vec::new();
        let mut ended = std::collections::BTreeMap::new();
        for (wave, range) in [(0, 0..8), (1, 8..16)] {
            for (prompt, kv, max, capacity, stop) in &plans[range] {
                let collected: std::rc::Rc<std::cell::RefCell<Vec<u32>>> = std::rc::Rc::default();
                let sink = Collect { tokens: std::rc::Rc::clone(&collected), stop_after: *stop };
                let options = GenerateOptions { max_tokens: *max, sampling: SamplingParams::greedy() };
                let id = batch.admit(prompt.clone(), cache(&model, *kv, *capacity), &options, sink).ok().unwrap();
                ids.push(id);
                outputs.push(collected);
            }
            // The first wave runs a few steps before the second joins.
            for _ in 0..if wave == 0 { 10 } else { 1000 } {
                if batch.is_empty() {
                    break;
                }
                let outcome = batch.step(&model, &text).unwrap();
                assert!(outcome.failed.is_empty(), "{name}: a sequence failed");
                for f in outcome.finished {
                    ended.insert(f.id, (f.stop_reason, f.generated_tokens));
                }
            }
        }
        assert!(batch.is_empty(), "{name}: sequences left running");
        for (i, ((want, reason), id)) in alone.iter().zip(&ids).enumerate() {
            let got = outputs[i].borrow().clone();
            assert_eq!(&got, want, "{name}: sequence {i}'s tokens");
            assert_eq!(ended[id], (*reason, want.len()), "{name}: sequence {i}'s end");
        }
        let reasons: std::collections::BTreeSet<String> = alone.iter().map(|(_, r)| format!("{r:?}")).collect();
        eprintln!("{name}: 16 batched sequences as alone; ends seen {reasons:?}");
        assert!(reasons.contains("Interrupted") && reasons.contains("ContextFull"), "{name}: {reasons:?}");
        // Cancelled (a client gone) while joining or running: its cache comes back, the others run on.
        let options = GenerateOptions { max_tokens: 50, sampling: SamplingParams::greedy() };
        let sink = || Collect { tokens: std::rc::Rc::default(), stop_after: None };
        let a = batch.admit(tokens[..4].to_vec(), cache(&model, None, 64), &options, sink()).ok().unwrap();
        let b = batch.admit(tokens[..6].to_vec(), cache(&model, None, 64), &options, sink()).ok().unwrap();
        batch.step(&model, &text).unwrap();
        // `a` prefilled, sampled its first token and decoded its second in that step; `b` waits to join.
        let (ca, cb) = (batch.cancel(a).unwrap(), batch.cancel(b).unwrap());
        assert_eq!((ca.stop_reason, ca.generated_tokens, ca.prompt_tokens), (StopReason::Interrupted, 2, 4));
        assert_eq!((cb.stop_reason, cb.generated_tokens, cb.prompt_tokens), (StopReason::Interrupted, 0, 6));
        assert!(batch.cancel(a).is_none());
        assert!(batch.is_empty());
        let refused = batch.admit(tokens[..10].to_vec(), cache(&model, None, 8), &options, sink());
        let message = refused.err().map(|r| r.error.to_string());
        assert_eq!(message.as_deref(), Some("the context is full: 10 tokens do not fit in 8 (`--ctx-size`)"));
    }
}
