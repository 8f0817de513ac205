//! SmolLM2-135M-Instruct as a Hugging Face safetensors directory, made from
//! the Q4_1 GGUF (see `../shared/models.md`): every tensor dequantized with
//! candle's GGUF reader, llama.cpp's Q/K row interleaving undone, names
//! mapped, and `tokenizer.json` built from the GGUF vocabulary with the
//! `smollm` pre-tokenizer (digits split one by one, then byte-level BPE).
//! Cached next to the GGUF; rebuilt when `VERSION` changes.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};
use serde_json::json;

const VERSION: u32 = 1;
const HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;

/// The converted model directory for `dtype` (`f32` or `bf16`).
pub fn smollm2_dir(dtype: &str) -> PathBuf {
    let gguf = super::models::smollm2_gguf();
    let root = gguf.parent().unwrap().to_path_buf();
    let dir = root.join(format!("smollm2-{dtype}-v{VERSION}"));
    let lock = OpenOptions::new().create(true).truncate(false).write(true).open(root.join(".convert.lock")).unwrap();
    lock.lock().unwrap();
    if !dir.join("complete").is_file() {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        convert(&gguf, &dir, if dtype == "bf16" { DType::BF16 } else { DType::F32 });
        fs::write(dir.join("complete"), b"").unwrap();
    }
    dir
}

fn convert(gguf: &Path, dir: &Path, dtype: DType) {
    let mut file = File::open(gguf).unwrap();
    let content = Content::read(&mut file).unwrap();
    let mut tensors = HashMap::new();
    for name in content.tensor_infos.keys() {
        let weight = content.tensor(&mut file, name, &Device::Cpu).unwrap().dequantize(&Device::Cpu).unwrap();
        let (hf_name, weight) = hf_tensor(name, weight);
        tensors.insert(hf_name, weight.to_dtype(dtype).unwrap());
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    let md = &content.metadata;
    write_json(dir, "config.json", config(dtype));
    write_json(dir, "tokenizer.json", tokenizer(md));
    write_json(dir, "tokenizer_config.json", tokenizer_config(md));
    write_json(dir, "generation_config.json", json!({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}));
}

fn write_json(dir: &Path, name: &str, value: serde_json::Value) {
    fs::write(dir.join(name), serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

/// The Hugging Face name of a GGUF tensor, with Q and K rows un-interleaved.
fn hf_tensor(name: &str, weight: Tensor) -> (String, Tensor) {
    let fixed = [("token_embd.weight", "model.embed_tokens.weight"), ("output_norm.weight", "model.norm.weight")];
    if let Some((_, hf)) = fixed.iter().find(|(g, _)| *g == name) {
        return (hf.to_string(), weight);
    }
    let rest = name.strip_prefix("blk.").unwrap();
    let (layer, part) = rest.split_once('.').unwrap();
    let (hf_part, weight) = match part {
        "attn_norm.weight" => ("input_layernorm.weight", weight),
        "ffn_norm.weight" => ("post_attention_layernorm.weight", weight),
        "attn_q.weight" => ("self_attn.q_proj.weight", unpermute(&weight, HEADS)),
        "attn_k.weight" => ("self_attn.k_proj.weight", unpermute(&weight, KV_HEADS)),
        "attn_v.weight" => ("self_attn.v_proj.weight", weight),
        "attn_output.weight" => ("self_attn.o_proj.weight", weight),
        "ffn_gate.weight" => ("mlp.gate_proj.weight", weight),
        "ffn_up.weight" => ("mlp.up_proj.weight", weight),
        "ffn_down.weight" => ("mlp.down_proj.weight", weight),
        other => panic!("unexpected GGUF tensor {other}"),
    };
    (format!("model.layers.{layer}.{hf_part}"), weight)
}

/// llama.cpp stores each head's rows as adjacent RoPE pairs (2i, 2i+1);
/// Hugging Face keeps halves (i, i + hd/2). Row h*hd + j*hd/2 + i of the
/// result is row h*hd + 2i + j of the input.
fn unpermute(w: &Tensor, heads: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    w.reshape((heads, HEAD_DIM / 2, 2, cols)).unwrap().transpose(1, 2).unwrap().reshape((rows, cols)).unwrap()
}

fn config(dtype: DType) -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM,
        "max_position_embeddings": 8192, "vocab_size": 49152, "rms_norm_eps": 1e-5,
        // Written out: candle's and our default (10000) would be silently wrong.
        "rope_theta": 100000.0, "tie_word_embeddings": true,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
        "torch_dtype": if dtype == DType::BF16 { "bfloat16" } else { "float32" }
    })
}

fn strings(md: &HashMap<String, Value>, key: &str) -> Vec<String> {
    md[key].to_vec().unwrap().iter().map(|v| v.to_string().unwrap().clone()).collect()
}

fn tokenizer(md: &HashMap<String, Value>) -> serde_json::Value {
    let tokens = strings(md, "tokenizer.ggml.tokens");
    let types: Vec<i32> =
        md["tokenizer.ggml.token_type"].to_vec().unwrap().iter().map(|v| v.to_i32().unwrap()).collect();
    let vocab: serde_json::Map<String, serde_json::Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    // Control tokens (type 3) are matched whole in text and never split.
    let added: Vec<serde_json::Value> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| types[*i] == 3)
        .map(|(i, t)| json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": strings(md, "tokenizer.ggml.merges")}
    })
}

fn tokenizer_config(md: &HashMap<String, Value>) -> serde_json::Value {
    let template = md["tokenizer.chat_template"].to_string().unwrap();
    json!({
        "add_bos_token": false, "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
        "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>", "chat_template": template
    })
}
