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
/// model and inside its image-text checkpoint, Qwen3-MoE's routed experts)
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
        assert!(worst(&got, &want) <= FAMILY_LOGIT_TOLERANCE, "{name}: whole prompt off by {}", worst(&got, &want));
        for chunk in [CHUNK, 1] {
            let got = chunked(&model, &mut cache(&model, None, tokens.len()), &tokens, chunk);
            let off = worst(&got, &want);
            assert!(off <= FAMILY_LOGIT_TOLERANCE, "{name}: chunks of {chunk} off by {off}");
        }
        for (scheme, tolerance) in [(KvScheme::Int8, INT8_LOGIT_TOLERANCE), (KvScheme::Fp8, FP8_LOGIT_TOLERANCE)] {
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

/// The reference models pulled and run by the CLI on every scheme, and what
/// `show` says of their windows.
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
            assert_eq!(said, name == "gemma3", "{model}: {}", out.stderr);
        }
    }
    let show = ctx.run(&["show", "gemma3", "--json"]).success().json();
    assert_eq!(show["architecture"], "gemma3");
    assert_eq!(show["kv_cache"]["selected"]["sliding_window"], serde_json::json!({"layers": 2, "window": 8}));
    let text = ctx.run(&["show", "mistral_window:kv_int8"]).success().stdout.clone();
    assert!(text.contains("; 2 of 2 layers keep only their last 8 tokens"), "{text}");
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
