//! Fuzzing the engine with tiny hostile models: random configs (families,
//! among them windowed, routed, fused and per-layer ones with lists of the
//! wrong length, head counts that do or do not divide, odd or absent head dimensions,
//! zero or huge RoPE bases, one-token contexts, biases, q/k norms, tied or
//! untied embeddings) with tensors that match them or are mutated (one
//! missing, one reshaped, a stray one, NaN weights, half-precision dtypes,
//! tokenizers larger than the embedding). Each model is imported with the
//! CLI and, when the import accepts it, run raw, in chat-less generation,
//! with a random context size and each KV cache. Every command must end
//! with exit 0, or with a clean error (exit 1 or 2, `error:` on stderr);
//! never a panic or an abort.
//!
//! `LLMCTL_FUZZ_MODELS` sets the number of models (default 24; `tests/fuzz/run.sh`
//! runs more). `LLMCTL_FUZZ_SEED` replays a run.

#![allow(clippy::print_stderr, reason = "the test reports what it tried (seen with --nocapture)")]

use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::{Value, json};

use crate::support::TestContext;
use crate::support::models;
use crate::support::rng::Rng;

/// A random model: its config, and the tensors (name, shape) that config needs.
struct Plan {
    config: Value,
    tensors: Vec<(String, Vec<usize>)>,
    vocab: usize,
}

fn plan(rng: &mut Rng) -> Plan {
    let family = *rng.pick(&[
        "llama",
        "mistral",
        "qwen2",
        "qwen3",
        "gemma3_text",
        "qwen3_moe",
        "smollm3",
        "phi3",
        "gpt_oss",
        "gemma4_text",
        "qwen3_5_text",
        "qwen3_5_moe_text",
    ]);
    let qwen35 = family.starts_with("qwen3_5");
    let heads = 1 + rng.below(4) as usize;
    let kv_heads = if rng.chance(6) { 1 + rng.below(4) as usize } else { *rng.pick(&[1, heads]) };
    let head_dim = *rng.pick(&[2usize, 4, 6, 8, 3]);
    let hidden = if rng.chance(8) { heads * head_dim + 1 } else { heads * head_dim };
    let explicit_head_dim = rng.chance(3);
    let layers = 1 + rng.below(3) as usize;
    let ffn = 1 + rng.below(24) as usize;
    let vocab = 3 + rng.below(40) as usize;
    let tied = rng.chance(2);
    let mut config = json!({
        "model_type": family,
        "hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "max_position_embeddings": *rng.pick(&[1u64, 2, 8, 256, 1 << 40]),
        "vocab_size": if rng.chance(8) { vocab - 1 } else { vocab },
        "rms_norm_eps": *rng.pick(&[1e-5, 0.0, 1.0]),
        "rope_theta": *rng.pick(&[10000.0, 1.0, 0.0, -5.0, 1e30]),
        "tie_word_embeddings": tied, "torch_dtype": "float32",
        "bos_token_id": 1, "eos_token_id": *rng.pick(&[2u64, 0, 1000]),
    });
    if explicit_head_dim {
        config["head_dim"] = json!(head_dim);
    }
    if rng.chance(5) {
        config["rope_scaling"] = json!({"rope_type": "llama3", "factor": *rng.pick(&[8.0, 0.0, -1.0]),
            "low_freq_factor": 1.0, "high_freq_factor": *rng.pick(&[4.0, 1.0]), "original_max_position_embeddings": 8});
    }
    let gemma4 = family == "gemma4_text";
    if matches!(family, "mistral" | "gemma3_text" | "gpt_oss" | "gemma4_text") && rng.chance(2) {
        config["sliding_window"] = json!(*rng.pick(&[1u64, 4, 4096]));
    }
    // Per-layer lists, of the right length or not, with a layer type no block computes now and then.
    let types = ["sliding_attention", "full_attention", "linear_attention"];
    if matches!(family, "gemma3_text" | "gpt_oss" | "gemma4_text") && rng.chance(2) {
        let n = if rng.chance(8) { layers + 1 } else { layers };
        let pick = |rng: &mut Rng| {
            let known = if rng.chance(10) { 3 } else { 2 };
            *rng.pick(&types[..known])
        };
        config["layer_types"] = json!((0..n).map(|_| pick(rng)).collect::<Vec<_>>());
    }
    // Qwen3.5: linear-attention layers among full ones (all linear by default in so few layers),
    // with key heads that do or do not divide the value heads, and a conv kernel of one now and then.
    let (key_heads, key_dim, value_heads, value_dim, kernel) = (
        1 + rng.below(2) as usize,
        *rng.pick(&[2usize, 4]),
        *rng.pick(&[1usize, 2, 3, 4]),
        *rng.pick(&[2usize, 4]),
        *rng.pick(&[1usize, 2, 4]),
    );
    if qwen35 {
        config["linear_num_key_heads"] = json!(key_heads);
        config["linear_key_head_dim"] = json!(key_dim);
        config["linear_num_value_heads"] = json!(value_heads);
        config["linear_value_head_dim"] = json!(value_dim);
        config["linear_conv_kernel_dim"] = json!(kernel);
        if rng.chance(2) {
            let n = if rng.chance(8) { layers + 1 } else { layers };
            let pick = |rng: &mut Rng| {
                let from = if rng.chance(10) { 0 } else { 1 };
                *rng.pick(&types[from..])
            };
            config["layer_types"] = json!((0..n).map(|_| pick(rng)).collect::<Vec<_>>());
        }
    }
    let linear_layers: Vec<bool> = (0..layers)
        .map(|l| qwen35 && config.get("layer_types").and_then(|t| t.get(l)).is_none_or(|t| t == "linear_attention"))
        .collect();
    let linear = |l: usize| linear_layers[l];
    if family == "gemma3_text" {
        config["hidden_activation"] = json!("gelu_pytorch_tanh");
        config["query_pre_attn_scalar"] = json!(*rng.pick(&[16.0, 1.0, 0.0]));
        config["final_logit_softcapping"] = json!(*rng.pick(&[Value::Null, json!(30.0), json!(0.0)]));
    }
    // Gemma 4: wider global heads, keys as values, shared KV, double-wide MLPs, per-layer inputs, experts.
    let global_head_dim = *rng.pick(&[2usize, 4, 8, 4, 3]);
    let global_kv = if rng.chance(2) { Some(*rng.pick(&[1usize, heads, 3])) } else { None };
    let k_eq_v = rng.chance(2);
    let shared = if rng.chance(2) { 0 } else { rng.below(layers as u64 + 1) as usize };
    let double = rng.chance(2);
    let per_layer = *rng.pick(&[0usize, 2, 4]);
    let moe_block = rng.chance(3);
    if gemma4 {
        config["hidden_activation"] = json!("gelu_pytorch_tanh");
        config["global_head_dim"] = json!(global_head_dim);
        if let Some(k) = global_kv {
            config["num_global_key_value_heads"] = json!(k);
        }
        config["attention_k_eq_v"] = json!(k_eq_v);
        config["num_kv_shared_layers"] = json!(shared);
        config["use_double_wide_mlp"] = json!(double);
        config["hidden_size_per_layer_input"] = json!(per_layer);
        config["vocab_size_per_layer_input"] = json!(vocab);
        config["final_logit_softcapping"] = json!(*rng.pick(&[Value::Null, json!(30.0), json!(0.0)]));
        if moe_block {
            config["enable_moe_block"] = json!(true);
        }
    }
    if family == "smollm3" && rng.chance(2) {
        let n = if rng.chance(6) { layers + 1 } else { layers };
        config["no_rope_layers"] = json!((0..n).map(|_| rng.below(2)).collect::<Vec<_>>());
    }
    if family == "phi3" {
        config["partial_rotary_factor"] = json!(*rng.pick(&[1.0, 0.5, 0.3, 0.0]));
        if rng.chance(2) {
            let n = 1 + rng.below(4) as usize;
            config["original_max_position_embeddings"] = json!(*rng.pick(&[1u64, 4]));
            config["rope_scaling"] =
                json!({"type": "longrope", "short_factor": vec![1.0; n], "long_factor": vec![2.0; n]});
        }
    }
    if family == "gpt_oss" && rng.chance(2) {
        config["rope_scaling"] = json!({"rope_type": "yarn", "factor": *rng.pick(&[32.0, 1.0, 0.0]),
            "original_max_position_embeddings": *rng.pick(&[4u64, 1, 0]), "truncate": rng.chance(2)});
    }
    let experts = 1 + rng.below(4) as usize;
    let moe_ffn = 1 + rng.below(8) as usize;
    if gemma4 && moe_block {
        config["num_experts"] = json!(experts);
        config["top_k_experts"] = json!(rng.below(experts as u64 + 2));
        config["moe_intermediate_size"] = json!(moe_ffn);
    }
    if matches!(family, "qwen3_moe" | "gpt_oss" | "qwen3_5_moe_text") {
        config["shared_expert_intermediate_size"] = json!(moe_ffn + 1);
        config["num_experts"] = json!(experts);
        config["num_local_experts"] = json!(experts);
        config["num_experts_per_tok"] = json!(rng.below(experts as u64 + 2));
        config["moe_intermediate_size"] = json!(moe_ffn);
        config["mlp_only_layers"] = json!(if rng.chance(3) { vec![0] } else { vec![] });
    }
    let mlp_only = |l: usize| config["mlp_only_layers"].as_array().is_some_and(|a| a.contains(&json!(l)));
    let d = if explicit_head_dim { head_dim } else { hidden / heads };
    let (q, kv) = (heads * d, kv_heads * d);
    let mut tensors = vec![("model.embed_tokens.weight".to_string(), vec![vocab, hidden])];
    if gemma4 && per_layer > 0 {
        tensors.push(("model.embed_tokens_per_layer.weight".into(), vec![vocab, layers * per_layer]));
        tensors.push(("model.per_layer_model_projection.weight".into(), vec![layers * per_layer, hidden]));
        tensors.push(("model.per_layer_projection_norm.weight".into(), vec![per_layer]));
    }
    // What each Gemma 4 layer is, as the config says (the last layer is global).
    let types = config["layer_types"].as_array().cloned().unwrap_or_default();
    let global = |l: usize| l + 1 == layers || types.get(l).is_some_and(|t| t == "full_attention");
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        let mut push = |name: &str, shape: Vec<usize>| tensors.push((format!("{p}.{name}"), shape));
        push("input_layernorm.weight", vec![hidden]);
        push("post_attention_layernorm.weight", vec![hidden]);
        if gemma4 {
            let d = if global(l) { global_head_dim } else { d };
            let kv = if global(l) && k_eq_v { global_kv.unwrap_or(kv_heads) } else { kv_heads };
            push("self_attn.q_proj.weight", vec![heads * d, hidden]);
            push("self_attn.q_norm.weight", vec![d]);
            if l + shared < layers {
                push("self_attn.k_proj.weight", vec![kv * d, hidden]);
                push("self_attn.k_norm.weight", vec![d]);
                if !(global(l) && k_eq_v) {
                    push("self_attn.v_proj.weight", vec![kv * d, hidden]);
                }
            }
            push("self_attn.o_proj.weight", vec![hidden, heads * d]);
            for norm in ["pre_feedforward_layernorm", "post_feedforward_layernorm"] {
                push(&format!("{norm}.weight"), vec![hidden]);
            }
            let ffn = if double && l + shared >= layers && shared < layers { 2 * ffn } else { ffn };
            push("mlp.gate_proj.weight", vec![ffn, hidden]);
            push("mlp.up_proj.weight", vec![ffn, hidden]);
            push("mlp.down_proj.weight", vec![hidden, ffn]);
            if per_layer > 0 {
                push("per_layer_input_gate.weight", vec![per_layer, hidden]);
                push("per_layer_projection.weight", vec![hidden, per_layer]);
                push("post_per_layer_input_norm.weight", vec![hidden]);
            }
            push("layer_scalar", vec![1]);
            if moe_block {
                push("router.proj.weight", vec![experts, hidden]);
                push("router.scale", vec![hidden]);
                push("router.per_expert_scale", vec![experts]);
                push("experts.gate_up_proj", vec![experts, 2 * moe_ffn, hidden]);
                push("experts.down_proj", vec![experts, hidden, moe_ffn]);
                for norm in
                    ["post_feedforward_layernorm_1", "pre_feedforward_layernorm_2", "post_feedforward_layernorm_2"]
                {
                    push(&format!("{norm}.weight"), vec![hidden]);
                }
            }
            continue;
        }
        if linear(l) {
            let (keys, values) = (key_heads * key_dim, value_heads * value_dim);
            push("linear_attn.in_proj_qkv.weight", vec![2 * keys + values, hidden]);
            push("linear_attn.in_proj_z.weight", vec![values, hidden]);
            push("linear_attn.in_proj_b.weight", vec![value_heads, hidden]);
            push("linear_attn.in_proj_a.weight", vec![value_heads, hidden]);
            push("linear_attn.conv1d.weight", vec![2 * keys + values, 1, kernel]);
            push("linear_attn.A_log", vec![value_heads]);
            push("linear_attn.dt_bias", vec![value_heads]);
            push("linear_attn.norm.weight", vec![value_dim]);
            push("linear_attn.out_proj.weight", vec![hidden, values]);
        } else if qwen35 {
            push("self_attn.q_proj.weight", vec![2 * q, hidden]);
            push("self_attn.k_proj.weight", vec![kv, hidden]);
            push("self_attn.v_proj.weight", vec![kv, hidden]);
        } else if family == "phi3" {
            push("self_attn.qkv_proj.weight", vec![q + 2 * kv, hidden]);
        } else {
            push("self_attn.q_proj.weight", vec![q, hidden]);
            push("self_attn.k_proj.weight", vec![kv, hidden]);
            push("self_attn.v_proj.weight", vec![kv, hidden]);
        }
        if !linear(l) {
            push("self_attn.o_proj.weight", vec![hidden, q]);
        }
        if matches!(family, "qwen2" | "gpt_oss") {
            push("self_attn.q_proj.bias", vec![q]);
            push("self_attn.k_proj.bias", vec![kv]);
            push("self_attn.v_proj.bias", vec![kv]);
        }
        if family == "gpt_oss" {
            push("self_attn.o_proj.bias", vec![hidden]);
            push("self_attn.sinks", vec![heads]);
        }
        if matches!(family, "qwen3" | "qwen3_moe" | "gemma3_text") || (qwen35 && !linear(l)) {
            push("self_attn.q_norm.weight", vec![d]);
            push("self_attn.k_norm.weight", vec![d]);
        }
        if family == "gemma3_text" {
            push("pre_feedforward_layernorm.weight", vec![hidden]);
            push("post_feedforward_layernorm.weight", vec![hidden]);
        }
        match family {
            "gpt_oss" => {
                push("mlp.router.weight", vec![experts, hidden]);
                push("mlp.router.bias", vec![experts]);
                push("mlp.experts.gate_up_proj", vec![experts, hidden, 2 * ffn]);
                push("mlp.experts.gate_up_proj_bias", vec![experts, 2 * ffn]);
                push("mlp.experts.down_proj", vec![experts, ffn, hidden]);
                push("mlp.experts.down_proj_bias", vec![experts, hidden]);
            }
            "qwen3_5_moe_text" => {
                push("mlp.gate.weight", vec![experts, hidden]);
                for e in 0..experts {
                    push(&format!("mlp.experts.{e}.gate_proj.weight"), vec![moe_ffn, hidden]);
                    push(&format!("mlp.experts.{e}.up_proj.weight"), vec![moe_ffn, hidden]);
                    push(&format!("mlp.experts.{e}.down_proj.weight"), vec![hidden, moe_ffn]);
                }
                push("mlp.shared_expert.gate_proj.weight", vec![moe_ffn + 1, hidden]);
                push("mlp.shared_expert.up_proj.weight", vec![moe_ffn + 1, hidden]);
                push("mlp.shared_expert.down_proj.weight", vec![hidden, moe_ffn + 1]);
                push("mlp.shared_expert_gate.weight", vec![1, hidden]);
            }
            "qwen3_moe" if !mlp_only(l) => {
                push("mlp.gate.weight", vec![experts, hidden]);
                for e in 0..experts {
                    push(&format!("mlp.experts.{e}.gate_proj.weight"), vec![moe_ffn, hidden]);
                    push(&format!("mlp.experts.{e}.up_proj.weight"), vec![moe_ffn, hidden]);
                    push(&format!("mlp.experts.{e}.down_proj.weight"), vec![hidden, moe_ffn]);
                }
            }
            "phi3" => {
                push("mlp.gate_up_proj.weight", vec![2 * ffn, hidden]);
                push("mlp.down_proj.weight", vec![hidden, ffn]);
            }
            _ => {
                push("mlp.gate_proj.weight", vec![ffn, hidden]);
                push("mlp.up_proj.weight", vec![ffn, hidden]);
                push("mlp.down_proj.weight", vec![hidden, ffn]);
            }
        }
    }
    tensors.push(("model.norm.weight".into(), vec![hidden]));
    if !tied {
        tensors.push(("lm_head.weight".into(), vec![vocab, hidden]));
    }
    Plan { config, tensors, vocab }
}

/// Mutates the plan's tensors now and then; returns what was done.
fn mutate(rng: &mut Rng, tensors: &mut Vec<(String, Vec<usize>)>) -> Option<String> {
    let i = rng.below(tensors.len() as u64) as usize;
    match rng.below(8) {
        0 => Some(format!("dropped {}", tensors.remove(i).0)),
        1 => {
            let dim = rng.below(tensors[i].1.len() as u64) as usize;
            tensors[i].1[dim] += 1;
            Some(format!("reshaped {} to {:?}", tensors[i].0, tensors[i].1))
        }
        2 => {
            tensors.push(("model.layers.99.stray.weight".into(), vec![2]));
            Some("added a stray tensor".into())
        }
        3 => {
            tensors[i].1.push(1);
            Some(format!("gave {} an extra dimension", tensors[i].0))
        }
        _ => None,
    }
}

fn safetensors_bytes(rng: &mut Rng, tensors: &[(String, Vec<usize>)]) -> Vec<u8> {
    let dtype = *rng.pick(&[Dtype::F32, Dtype::F32, Dtype::F16, Dtype::BF16]);
    let poison = rng.chance(6);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let bytes = (0..n)
                .flat_map(|_| {
                    let v = if poison && rng.chance(4) { f32::NAN } else { (rng.below(2001) as f32 - 1000.0) / 5000.0 };
                    match dtype {
                        Dtype::F16 => half_bits(v, true).to_vec(),
                        Dtype::BF16 => half_bits(v, false).to_vec(),
                        _ => v.to_le_bytes().to_vec(),
                    }
                })
                .collect();
            (name.clone(), shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(name, shape, bytes)| (name.clone(), TensorView::new(dtype, shape.clone(), bytes).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// Little-endian f16 or bf16 bits of `v` (truncating; exactness does not matter here).
fn half_bits(v: f32, f16: bool) -> [u8; 2] {
    let bits = v.to_bits();
    if !f16 {
        return ((bits >> 16) as u16).to_le_bytes();
    }
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mant = ((bits >> 13) & 0x3ff) as u16;
    let h = if v.is_nan() {
        0x7e00
    } else if exp <= 0 {
        sign
    } else if exp >= 31 {
        sign | 0x7c00
    } else {
        sign | ((exp as u16) << 10) | mant
    };
    h.to_le_bytes()
}

/// A word-level tokenizer of `n` tokens: `<unk>`, `<s>`, `</s>`, `w3`, `w4`, …
fn tokenizer(n: usize) -> String {
    let vocab: serde_json::Map<String, Value> = ["<unk>".to_string(), "<s>".into(), "</s>".into()]
        .into_iter()
        .chain((3..n).map(|i| format!("w{i}")))
        .enumerate()
        .map(|(i, w)| (w, json!(i)))
        .collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    })
    .to_string()
}

/// What `run` says when a model the import should have refused reaches the
/// engine: the import checks names, shapes and configs as `run` would.
const IMPORT_SHOULD_HAVE_REFUSED: [&str; 4] =
    ["shape mismatch", "cannot find tensor", "index-select invalid index", "odd head dimension"];

/// Asserts the command ended cleanly; returns its exit code.
fn clean(out: &crate::support::Transcript, context: &str) -> i32 {
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
        "{context}: panic\n{}",
        out.stderr
    );
    match out.code {
        0 => {}
        1 | 2 => {
            assert!(out.stderr.contains("error: "), "{context}: exit {} without an error\n{}", out.code, out.stderr)
        }
        code => panic!("{context}: exit {code}\n{}", out.stderr),
    }
    out.code
}

#[test]
fn hostile_tiny_models_import_and_run_cleanly_or_fail_with_an_error() {
    let runs: u64 = std::env::var("LLMCTL_FUZZ_MODELS").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let seed: u64 = std::env::var("LLMCTL_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261201);
    let mut rng = Rng(seed);
    let ctx = TestContext::new();
    let (mut refused, mut ran, mut run_errors) = (0, 0, 0);
    // What users were told, the deepest cause with numbers blanked, and how often (seen with --nocapture).
    let mut said = std::collections::BTreeMap::<String, usize>::new();
    let mut tally = |out: &crate::support::Transcript| {
        if let Some(line) = out.stderr.lines().rfind(|l| l.starts_with("error: ") || l.starts_with("  caused by: ")) {
            // Numbers blanked, tensor names and shapes cut, so that like messages group.
            let mut shape = String::new();
            for c in line.split(" in `").next().unwrap_or(line).chars() {
                let c = if c.is_ascii_digit() { '#' } else { c };
                if !(c == '#' && shape.ends_with('#')) {
                    shape.push(c);
                }
            }
            *said.entry(shape).or_default() += 1;
        }
    };
    for i in 0..runs {
        let mut plan = plan(&mut rng);
        let mutation = mutate(&mut rng, &mut plan.tensors);
        let token_count = if rng.chance(5) { plan.vocab + 1 + rng.below(8) as usize } else { plan.vocab };
        let context = format!("model {i} (seed {seed}): {} {mutation:?}, {token_count} tokens", plan.config);
        let dir = ctx.root.path().join(format!("m{i}"));
        let files = vec![
            ("config.json".to_string(), plan.config.to_string().into_bytes()),
            ("model.safetensors".to_string(), safetensors_bytes(&mut rng, &plan.tensors)),
            ("tokenizer.json".to_string(), tokenizer(token_count).into_bytes()),
            ("tokenizer_config.json".to_string(), br#"{"eos_token": "</s>"}"#.to_vec()),
        ];
        models::write_dir(&dir, &files);
        let name = format!("fuzz/m{i}");
        let pulled = ctx.run(&["pull", dir.to_str().unwrap(), "--name", &name]);
        tally(&pulled);
        if clean(&pulled, &context) != 0 {
            refused += 1;
            assert!(ctx.run(&["list", "--names"]).stdout.lines().all(|l| l != name), "{context}: refused yet stored");
            continue;
        }
        for tag in ["", ":kv_int8", ":kv_fp8"] {
            let reference = format!("{name}{tag}");
            let ctx_size = (1 + rng.below(12)).to_string();
            let mut args = vec!["run", &reference, "--raw", "--max-tokens", "4", "--seed", "1"];
            if rng.chance(2) {
                args.extend(["--ctx-size", &ctx_size]);
            }
            if rng.chance(3) {
                args.extend(["--temperature", "0.8"]);
            }
            let prompt = rng.pick(&["w3 w4", "<s> w3", "w3 w3 w3 w3 w3 w3 w3 w3 w3 w3 w3", "zzz"]).to_string();
            args.push(&prompt);
            let out = ctx.run(&args);
            tally(&out);
            if let Some(missed) = IMPORT_SHOULD_HAVE_REFUSED.iter().find(|m| out.stderr.contains(*m)) {
                panic!(
                    "{context}, {args:?}: `run` found what the import should have refused ({missed})\n{}",
                    out.stderr
                );
            }
            match clean(&out, &format!("{context}, {args:?}")) {
                0 => ran += 1,
                _ => run_errors += 1,
            }
        }
        ctx.run(&["rm", &name]).success();
    }
    eprintln!("{runs} hostile models: {refused} refused at import; runs: {ran} completed, {run_errors} clean errors");
    for (line, count) in &said {
        eprintln!("{count:>5}  {line}");
    }
}
