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
            assert_eq!(said, matches!(name, "gemma3" | "gemma4"), "{model}: {}", out.stderr);
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
