//! GGUF through llmctl's decoder, against transformers: each tiny family of
//! `tests/reference/tiny` written as a GGUF file the way llama.cpp's
//! `convert_hf_to_gguf.py` writes it (llama.cpp's names, a Llama's Q and K
//! rows interleaved per head, Llama 3's scaling as a `rope_freqs` tensor),
//! loaded from that file alone and run; its logits must be transformers'.

#![allow(clippy::print_stderr, reason = "the quantized products' distances are reported (seen with --nocapture)")]

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value as G};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use llmctl::engine::gguf_weights::{self, GgufWeights, Mode};
use llmctl::engine::kv_cache::{CacheShape, KvCache};
use llmctl::engine::model::{Logits, Model};
use llmctl::kv_size::{CacheLayout, DenseDtype};
use serde_json::Value;

use crate::support::tiny_reference;

/// f32 weights against transformers' f32 logits, as for safetensors.
const GGUF_LOGIT_TOLERANCE: f32 = 1e-4;

fn gguf_tensor_name(hf: &str) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (layer, part) = rest.split_once('.').unwrap();
    let (stem, suffix) = part.rsplit_once('.').unwrap();
    let g = match stem {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        other => panic!("no GGUF name for {other}"),
    };
    format!("blk.{layer}.{g}.{suffix}")
}

/// llama.cpp's `LlamaModel.permute`: `reshape(n, 2, d/2, …).swapaxes(1, 2)`.
fn interleave(w: &Tensor, heads: usize) -> Tensor {
    let rows = w.dim(0).unwrap();
    let rest: Vec<usize> = w.dims()[1..].to_vec();
    let mut split = vec![heads, 2, rows / heads / 2];
    split.extend(&rest);
    let mut back = vec![rows];
    back.extend(&rest);
    w.reshape(split).unwrap().transpose(1, 2).unwrap().contiguous().unwrap().reshape(back).unwrap()
}

/// llama.cpp's converter's `rope_freqs` for Llama 3 scaling: each frequency's divisor.
fn llama3_rope_factors(rope: &Value, head_dim: usize) -> Vec<f32> {
    let f = |k: &str| rope[k].as_f64().unwrap();
    let (base, factor, low, high, old) = (
        f("rope_theta"),
        f("factor"),
        f("low_freq_factor"),
        f("high_freq_factor"),
        f("original_max_position_embeddings"),
    );
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / base.powf(2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < old / high {
                1.0
            } else if wavelen > old / low {
                factor as f32
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect()
}

/// Writes `dir`'s tiny model as a GGUF file of `dtype` matrices, or with
/// `dequantized` of those matrices' values stored as f32.
fn write_gguf(dir: &Path, out: &Path, dtype: GgmlDType, dequantized: bool) {
    write_gguf_as(dir, out, dtype, dequantized, None, &[])
}

/// [`write_gguf`] under GGUF architecture `arch` (else the family's own),
/// with `extra` metadata keys (`{arch}.` prefixed) after the converter's.
fn write_gguf_as(dir: &Path, out: &Path, dtype: GgmlDType, dequantized: bool, arch: Option<&str>, extra: &[(&str, G)]) {
    let cfg: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let model_type = cfg["model_type"].as_str().unwrap();
    let arch = arch.unwrap_or(if model_type == "mistral" { "llama" } else { model_type });
    let n = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let (hidden, heads, kv_heads) = (n("hidden_size"), n("num_attention_heads"), n("num_key_value_heads"));
    let head_dim = cfg["head_dim"].as_u64().map_or(hidden / heads, |d| d as usize);
    let rope = &cfg["rope_parameters"];
    let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, w) in &weights {
        let mut w = w.to_dtype(DType::F32).unwrap();
        if arch == "llama" && name.contains("q_proj") {
            w = interleave(&w, heads);
        } else if arch == "llama" && name.contains("k_proj") {
            w = interleave(&w, kv_heads);
        }
        // Matrices in `dtype`; norms and biases stay f32, as llama.cpp keeps them.
        let ty = if w.rank() == 2 { dtype } else { GgmlDType::F32 };
        let q = QTensor::quantize(&w, ty).unwrap();
        // The same values as f32: what the quantized products should compute.
        let q = if dequantized {
            QTensor::quantize(&q.dequantize(&Device::Cpu).unwrap(), GgmlDType::F32).unwrap()
        } else {
            q
        };
        tensors.push((gguf_tensor_name(name), q));
    }
    if rope["rope_type"] == "llama3" {
        let factors = Tensor::new(llama3_rope_factors(rope, head_dim), &Device::Cpu).unwrap();
        tensors.push(("rope_freqs.weight".into(), QTensor::quantize(&factors, GgmlDType::F32).unwrap()));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let u = |v: usize| G::U32(v as u32);
    let mut meta: Vec<(String, G)> = vec![
        ("general.architecture".into(), G::String(arch.into())),
        (key("embedding_length"), u(hidden)),
        (key("block_count"), u(n("num_hidden_layers"))),
        (key("feed_forward_length"), u(n("intermediate_size"))),
        (key("attention.head_count"), u(heads)),
        (key("attention.head_count_kv"), u(kv_heads)),
        (key("attention.key_length"), u(head_dim)),
        (key("attention.value_length"), u(head_dim)),
        (key("rope.dimension_count"), u(head_dim)),
        (key("context_length"), u(n("max_position_embeddings"))),
        (key("attention.layer_norm_rms_epsilon"), G::F32(cfg["rms_norm_eps"].as_f64().unwrap() as f32)),
        (key("rope.freq_base"), G::F32(rope["rope_theta"].as_f64().unwrap() as f32)),
    ];
    meta.extend(extra.iter().map(|(k, v)| (key(k), v.clone())));
    let tokens: Vec<G> = (0..n("vocab_size")).map(|i| G::String(format!("t{i}"))).collect();
    meta.push(("tokenizer.ggml.tokens".into(), G::Array(tokens)));
    let meta_refs: Vec<(&str, &G)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(out).unwrap();
    gguf_file::write(&mut file, &meta_refs, &tensor_refs).unwrap();
}

fn load(path: &Path, positions: usize) -> Model {
    let header = llmctl::formats::gguf::read_header_from_path(path).unwrap();
    let config = gguf_weights::config(&header).unwrap();
    let paths = [path.to_path_buf()];
    let weights = GgufWeights::open(&paths, &[header], &config, DType::F32, &Device::Cpu, Mode::Load).unwrap();
    Model::load(&weights, config, positions).unwrap()
}

fn cache(model: &Model, capacity: usize) -> KvCache {
    let cfg = model.config();
    let shape = CacheShape { layers: cfg.layers, kv_heads: cfg.kv_heads, head_dim: cfg.head_dim, capacity };
    KvCache::new(CacheLayout::Dense(DenseDtype::F32), shape, DType::F32, &Device::Cpu).unwrap()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

/// The reference families llmctl runs as GGUF (llama.cpp's `llama`, `qwen2`, `qwen3` blocks).
fn in_gguf(family: &Value) -> bool {
    matches!(family["family"].as_str(), Some("llama3" | "mistral" | "qwen2" | "qwen3"))
}

#[test]
fn every_family_as_gguf_matches_transformers_logits() {
    let (root, golden) = (tiny_reference::root(), tiny_reference::golden());
    let tokens = tiny_reference::tokens(&golden);
    let tmp = tempfile::tempdir().unwrap();
    for family in golden["families"].as_array().unwrap().iter().filter(|f| in_gguf(f)) {
        let name = family["family"].as_str().unwrap();
        let path = tmp.path().join(format!("{name}.gguf"));
        write_gguf(&root.join(name), &path, GgmlDType::F32, false);
        let model = load(&path, 64);
        let want: Vec<f32> = tiny_reference::logits(family).concat();
        let mut kv = cache(&model, tokens.len());
        let got: Vec<f32> =
            model.forward(&tokens, &mut kv, Logits::All).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let worst = max_difference(&got, &want);
        assert!(worst <= GGUF_LOGIT_TOLERANCE, "{name} as GGUF: max logit difference {worst}");
        // Token by token through the cache: the last position's logits.
        let mut kv = cache(&model, tokens.len());
        let mut last = Vec::new();
        for &t in &tokens {
            last = model.forward(&[t], &mut kv, Logits::Last).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        }
        let vocab = last.len();
        let worst = max_difference(&last, &want[want.len() - vocab..]);
        assert!(worst <= GGUF_LOGIT_TOLERANCE, "{name} as GGUF, token by token: last logits differ by {worst}");
    }
}

/// A `llama` GGUF with Q/K/V biases (Qwen2's block, which llama.cpp would
/// write under its own name; here under `llama`, so the biases of Q and K
/// are interleaved like their rows): it must give transformers' Qwen2
/// logits, which needs the biases put back in Hugging Face order too.
#[test]
fn a_llama_gguf_with_biases_has_them_uninterleaved_with_their_rows() {
    let (root, golden) = (tiny_reference::root(), tiny_reference::golden());
    let tokens = tiny_reference::tokens(&golden);
    let family = golden["families"].as_array().unwrap().iter().find(|f| f["family"] == "qwen2").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("qwen2-as-llama.gguf");
    write_gguf_as(&root.join("qwen2"), &path, GgmlDType::F32, false, Some("llama"), &[]);
    let model = load(&path, 64);
    let want: Vec<f32> = tiny_reference::logits(family).concat();
    let mut kv = cache(&model, tokens.len());
    let got: Vec<f32> = model.forward(&tokens, &mut kv, Logits::All).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let worst = max_difference(&got, &want);
    assert!(worst <= GGUF_LOGIT_TOLERANCE, "Qwen2 as a llama GGUF: max logit difference {worst}");
}

/// Q8_0 matrices go through candle's quantized products, which quantize
/// the activations to 8-bit blocks as llama.cpp does. On these random tiny
/// models (logits of magnitude ~6) that rounding moves logits by up to
/// 0.33 against dense f32 products of the same dequantized weights — the
/// size of Q8_0's own weight rounding (0.22–0.41 against transformers) —
/// so the bound is one of that order; a wrong layout or scale is off by
/// whole units.
const Q8_0_PRODUCT_TOLERANCE: f32 = 0.5;
/// Q4_1 blocks re-rounded to Q8_0 on the CPU: Q8_0's rounding of the Q4_1
/// values on top of the activations'.
const Q4_1_PRODUCT_TOLERANCE: f32 = 0.6;

#[test]
fn quantized_products_match_dense_products_of_the_same_weights() {
    let (root, golden) = (tiny_reference::root(), tiny_reference::golden());
    let tokens = tiny_reference::tokens(&golden);
    let tmp = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    for family in golden["families"].as_array().unwrap().iter().filter(|f| in_gguf(f)) {
        let name = family["family"].as_str().unwrap();
        // Q4_1 has no SIMD kernel in candle: on the CPU its blocks are re-rounded to Q8_0 at load.
        for (dtype, tolerance) in [(GgmlDType::Q8_0, Q8_0_PRODUCT_TOLERANCE), (GgmlDType::Q4_1, Q4_1_PRODUCT_TOLERANCE)]
        {
            let run = |dequantized: bool| {
                let path = tmp.path().join(format!("{name}-{dtype:?}-{dequantized}.gguf"));
                write_gguf(&root.join(name), &path, dtype, dequantized);
                let model = load(&path, 64);
                let mut kv = cache(&model, tokens.len());
                model.forward(&tokens, &mut kv, Logits::All).unwrap().to_vec2::<f32>().unwrap()
            };
            let (quantized, dense) = (run(false), run(true));
            let worst = quantized.iter().zip(&dense).map(|(q, d)| max_difference(q, d)).fold(0f32, f32::max);
            report.push((format!("{name} {dtype:?}"), worst));
            assert!(worst <= tolerance, "{name}: {dtype:?} products differ from dense ones by {worst}");
        }
    }
    eprintln!("quantized vs dense products, max logit difference: {report:?}");
}

/// A GGUF whose tensor is of a type llmctl cannot compute with (IQ4_NL:
/// as large as Q4_0, so only the type id in the header changes) is refused
/// at import, naming the tensor and type, and nothing is stored.
#[test]
fn a_tensor_type_llmctl_cannot_compute_with_is_refused_at_import() {
    let root = tiny_reference::root();
    let ctx = crate::support::TestContext::new();
    let path = ctx.root.path().join("Tiny-IQ4_NL.gguf");
    write_gguf(&root.join("llama3"), &path, GgmlDType::Q4_0, false);
    let mut bytes = std::fs::read(&path).unwrap();
    let name = b"blk.0.ffn_down.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    // Then: dimension count (u32), the dimensions (u64 each), the type (u32).
    let dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let ty = at + 4 + 8 * dims;
    assert_eq!(u32::from_le_bytes(bytes[ty..ty + 4].try_into().unwrap()), 2, "Q4_0's id");
    bytes[ty..ty + 4].copy_from_slice(&20u32.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let out = ctx.run(&["pull", path.to_str().unwrap(), "--name", "tiny"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("tensor `blk.0.ffn_down.weight` is stored as `IQ4_NL`, which llmctl cannot compute with"),
        "{}",
        out.stderr
    );
    assert!(ctx.run(&["list", "--json"]).json().as_array().unwrap().is_empty(), "nothing stored");
}

/// Metadata the decoder cannot follow is refused at import with the
/// loader's own message (YaRN scaling is not implemented).
#[test]
fn metadata_the_decoder_cannot_follow_is_refused_at_import() {
    let root = tiny_reference::root();
    let ctx = crate::support::TestContext::new();
    let path = ctx.root.path().join("Tiny-yarn.gguf");
    write_gguf_as(
        &root.join("qwen2"),
        &path,
        GgmlDType::F32,
        false,
        None,
        &[("rope.scaling.type", G::String("yarn".into()))],
    );
    ctx.run(&["pull", path.to_str().unwrap(), "--name", "tiny"]).assert(
        1,
        "",
        "importing [ROOT]/Tiny-yarn.gguf as tiny\nerror: cannot record the pulled model\n\
         \x20 caused by: `Tiny-yarn.gguf` is not a usable GGUF file\n\
         \x20 caused by: unsupported GGUF rope scaling `yarn`: llmctl supports `none` and `linear`\n\
         hint: the files are not a usable model; nothing was stored; convert the model again with a current llama.cpp, or pull another GGUF file of it\n",
    );
}
