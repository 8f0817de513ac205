//! The import checks against hand-made headers: a correct model passes, each
//! kind of disagreement is named, and nothing but headers is read.

use std::collections::{BTreeMap, HashMap};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};
use safetensors::Dtype;

use super::*;

const CONFIG: &str = r#"{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
    "num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":256,"vocab_size":32,
    "tie_word_embeddings":true}"#;

/// The headers of the model `CONFIG` describes (head_dim 16, KV width 32).
fn llama_tensors(hidden: usize, ffn: usize, vocab: usize, layers: usize) -> BTreeMap<String, TensorHeader> {
    let kv = hidden / 2;
    let mut shapes = vec![("model.embed_tokens.weight".to_string(), vec![vocab, hidden])];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("input_layernorm", vec![hidden]),
            ("post_attention_layernorm", vec![hidden]),
            ("self_attn.q_proj", vec![hidden, hidden]),
            ("self_attn.k_proj", vec![kv, hidden]),
            ("self_attn.v_proj", vec![kv, hidden]),
            ("self_attn.o_proj", vec![hidden, hidden]),
            ("mlp.gate_proj", vec![ffn, hidden]),
            ("mlp.up_proj", vec![ffn, hidden]),
            ("mlp.down_proj", vec![hidden, ffn]),
        ] {
            shapes.push((format!("{p}.{name}.weight"), shape));
        }
    }
    shapes.push(("model.norm.weight".into(), vec![hidden]));
    let header = |shape| TensorHeader { dtype: Dtype::BF16, shape, shard: "model.safetensors".into() };
    shapes.into_iter().map(|(name, shape)| (name, header(shape))).collect()
}

fn tiny() -> BTreeMap<String, TensorHeader> {
    llama_tensors(64, 128, 32, 2)
}

fn check(tensors: &BTreeMap<String, TensorHeader>) -> Result<(), WeightCheckError> {
    check_safetensors(CONFIG.as_bytes(), None, tensors).map(drop)
}

#[test]
fn a_model_whose_headers_match_its_config_passes() {
    check(&tiny()).unwrap();
    // An untied output matrix is checked when present.
    let mut untied = tiny();
    let embed = untied["model.embed_tokens.weight"].clone();
    untied.insert("lm_head.weight".into(), embed);
    let config = CONFIG.replace("true", "false");
    check_safetensors(config.as_bytes(), None, &untied).unwrap();
    untied.get_mut("lm_head.weight").unwrap().shape = vec![31, 64];
    let err = check_safetensors(config.as_bytes(), None, &untied).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor `lm_head.weight` in `model.safetensors` has the wrong shape for `config.json`: expected [32, 64], found [31, 64]"
    );
}

#[test]
fn a_wrong_shape_names_the_tensor_and_both_shapes() {
    let mut tensors = tiny();
    tensors.get_mut("model.layers.1.self_attn.k_proj.weight").unwrap().shape = vec![64, 64];
    let err = check(&tensors).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor `model.layers.1.self_attn.k_proj.weight` in `model.safetensors` has the wrong shape for `config.json`: expected [32, 64], found [64, 64]"
    );
    assert!(matches!(err, WeightCheckError::Tensor(TensorProblem::Shape { .. })));
}

#[test]
fn a_missing_tensor_is_named() {
    let mut tensors = tiny();
    tensors.remove("model.layers.1.mlp.down_proj.weight");
    assert_eq!(
        check(&tensors).unwrap_err().to_string(),
        "the weights have no tensor `model.layers.1.mlp.down_proj.weight`, which `config.json` calls for"
    );
}

#[test]
fn a_dtype_candle_cannot_load_is_named() {
    let mut tensors = tiny();
    tensors.get_mut("model.norm.weight").unwrap().dtype = Dtype::BOOL;
    assert_eq!(
        check(&tensors).unwrap_err().to_string(),
        "tensor `model.norm.weight` in `model.safetensors` is stored as `BOOL`, which candle cannot load"
    );
}

#[test]
fn vocab_size_must_match_the_embedding_and_cover_the_tokenizer() {
    let small_vocab = CONFIG.replace("\"vocab_size\":32", "\"vocab_size\":16");
    let err = check_safetensors(small_vocab.as_bytes(), None, &tiny()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor `model.embed_tokens.weight` in `model.safetensors` has the wrong shape for `config.json`: expected [16, 64], found [32, 64]"
    );
    let fits = br#"{"added_tokens":[{"id":31}],"model":{"type":"WordLevel","vocab":{"a":0}}}"#;
    check_safetensors(CONFIG.as_bytes(), Some(fits), &tiny()).unwrap();
    let beyond = br#"{"added_tokens":[{"id":32}],"model":{"type":"WordLevel","vocab":{"a":0}}}"#;
    let err = check_safetensors(CONFIG.as_bytes(), Some(beyond), &tiny()).unwrap_err();
    assert!(matches!(err, WeightCheckError::TokenId { id: 32, vocab_size: 32 }), "{err}");
    // A tokenizer this check cannot read is left to `run`, which names the problem.
    check_safetensors(CONFIG.as_bytes(), Some(b"{\"model\":{\"vocab\":3}}"), &tiny()).unwrap();
}

#[test]
fn config_problems_run_would_refuse_are_refused_and_other_families_pass() {
    let dynamic = CONFIG.replace("\"vocab_size\":32", "\"vocab_size\":32,\"rope_scaling\":{\"type\":\"dynamic\"}");
    let err = check_safetensors(dynamic.as_bytes(), None, &tiny()).unwrap_err();
    assert!(matches!(err, WeightCheckError::Config(ConfigError::RopeScaling(_))), "{err}");
    // An architecture llmctl does not run is stored unchecked; one it runs gives its config back.
    let gemma = CONFIG.replace("\"llama\"", "\"gemma\"");
    assert!(check_safetensors(gemma.as_bytes(), None, &BTreeMap::new()).unwrap().is_none());
    let config = check_safetensors(CONFIG.as_bytes(), None, &tiny()).unwrap().unwrap();
    assert_eq!((config.layers, config.sliding_window()), (2, None));
}

/// Building the model allocates one element per tensor, whatever the shapes
/// claim: here 2^35 parameters (128 GiB in f32) are checked at once.
#[test]
fn the_check_allocates_nothing_for_the_weights() {
    let (hidden, ffn, vocab) = (1 << 14, 1 << 16, 1 << 17);
    let config = format!(
        r#"{{"model_type":"llama","hidden_size":{hidden},"intermediate_size":{ffn},"num_hidden_layers":8,
        "num_attention_heads":128,"num_key_value_heads":64,"max_position_embeddings":256,"vocab_size":{vocab}}}"#
    );
    let started = std::time::Instant::now();
    check_safetensors(config.as_bytes(), None, &llama_tensors(hidden, ffn, vocab, 8)).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}

/// The data section is never read: weights of garbage (NaN bytes) pass, as
/// their values are not the check's business (each blob's sha256 is).
#[test]
fn garbage_weight_data_behind_a_valid_header_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tiny()
        .into_iter()
        .map(|(name, h)| {
            let bytes = vec![0xff; h.shape.iter().product::<usize>() * 2];
            (name, h.shape, bytes)
        })
        .collect();
    let views = data.iter().map(|(name, shape, bytes)| {
        (name.clone(), safetensors::tensor::TensorView::new(Dtype::BF16, shape.clone(), bytes).unwrap())
    });
    safetensors::serialize_to_file(views, None, &path).unwrap();
    let mut summary = crate::formats::safetensors::WeightSummary::default();
    summary.add_shard("model.safetensors", &path).unwrap();
    assert_eq!(summary.tensors(), &tiny());
    check(summary.tensors()).unwrap();
}

/// The header of a llama GGUF: hidden 64, 4 heads, 2 KV heads, 2 blocks, ffn 128, 32 tokens.
fn llama_gguf() -> Content {
    let u32_value = |v: u32| Value::U32(v);
    let mut metadata: HashMap<String, Value> = [
        ("general.architecture", Value::String("llama".into())),
        ("llama.embedding_length", u32_value(64)),
        ("llama.block_count", u32_value(2)),
        ("llama.attention.head_count", u32_value(4)),
        ("llama.attention.head_count_kv", u32_value(2)),
        ("llama.rope.dimension_count", u32_value(16)),
        ("llama.feed_forward_length", u32_value(128)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    metadata.insert("tokenizer.ggml.tokens".into(), Value::Array(vec![Value::String("t".into()); 32]));
    let mut tensors = vec![("token_embd.weight".to_string(), vec![64, 32]), ("output_norm.weight".into(), vec![64])];
    for l in 0..2 {
        for (name, dims) in [
            ("attn_norm", vec![64]),
            ("ffn_norm", vec![64]),
            ("attn_q", vec![64, 64]),
            ("attn_k", vec![64, 32]),
            ("attn_v", vec![64, 32]),
            ("attn_output", vec![64, 64]),
            ("ffn_gate", vec![64, 128]),
            ("ffn_up", vec![64, 128]),
            ("ffn_down", vec![128, 64]),
        ] {
            tensors.push((format!("blk.{l}.{name}.weight"), dims));
        }
    }
    let info = |mut dims: Vec<usize>| {
        // candle holds shapes slowest dimension first.
        dims.reverse();
        TensorInfo { ggml_dtype: GgmlDType::F32, shape: dims.into(), offset: 0 }
    };
    let tensor_infos = tensors.into_iter().map(|(name, dims)| (name, info(dims))).collect();
    Content { magic: VersionedMagic::GgufV3, metadata, tensor_infos, tensor_data_offset: 0 }
}

fn set_dims(content: &mut Content, name: &str, mut dims: Vec<usize>) {
    dims.reverse();
    content.tensor_infos.get_mut(name).unwrap().shape = dims.into();
}

#[test]
fn a_gguf_whose_tensors_match_its_metadata_passes() {
    let mut content = llama_gguf();
    gguf::check(&content).unwrap();
    content.tensor_infos.insert(
        "output.weight".into(),
        TensorInfo { ggml_dtype: GgmlDType::Q4_0, shape: vec![32, 64].into(), offset: 0 },
    );
    gguf::check(&content).unwrap();
}

#[test]
fn gguf_shape_and_missing_tensor_errors_name_the_tensor() {
    let mut content = llama_gguf();
    set_dims(&mut content, "blk.1.ffn_down.weight", vec![64, 128]);
    assert_eq!(
        gguf::check(&content).unwrap_err().to_string(),
        "tensor `blk.1.ffn_down.weight` has the wrong shape for the GGUF metadata: expected [128, 64], found [64, 128]"
    );
    let mut content = llama_gguf();
    set_dims(&mut content, "output_norm.weight", vec![63]);
    assert!(matches!(gguf::check(&content), Err(WeightCheckError::GgufShape { .. })));
    let mut content = llama_gguf();
    content.tensor_infos.remove("blk.0.attn_k.weight");
    assert_eq!(gguf::check(&content).unwrap_err().to_string(), "the GGUF file has no tensor `blk.0.attn_k.weight`");
    // The token count is the vocabulary: the embedding must have as many rows.
    let mut content = llama_gguf();
    content.metadata.insert("tokenizer.ggml.tokens".into(), Value::Array(vec![Value::String("t".into()); 33]));
    assert!(
        matches!(gguf::check(&content), Err(WeightCheckError::GgufShape { tensor, .. }) if tensor == "token_embd.weight")
    );
}

#[test]
fn gguf_metadata_the_loader_reads_must_be_there_and_agree() {
    let mut content = llama_gguf();
    content.metadata.remove("llama.rope.dimension_count");
    assert_eq!(
        gguf::check(&content).unwrap_err().to_string(),
        "GGUF metadata has no `llama.rope.dimension_count` of type `u32`, which llmctl's loader reads"
    );
    let mut content = llama_gguf();
    content.metadata.insert("llama.attention.head_count".into(), Value::U32(3));
    assert_eq!(
        gguf::check(&content).unwrap_err().to_string(),
        "GGUF metadata is inconsistent: `llama.attention.head_count` 3 is not a multiple of `llama.attention.head_count_kv` 2"
    );
    let mut content = llama_gguf();
    content.metadata.insert("llama.rope.dimension_count".into(), Value::U32(8));
    assert!(matches!(gguf::check(&content), Err(WeightCheckError::GgufMetadata(_))));
}

#[test]
fn gguf_architectures_llmctl_does_not_run_pass() {
    let mut content = llama_gguf();
    content.metadata.insert("general.architecture".into(), Value::String("gemma3".into()));
    content.tensor_infos.clear();
    gguf::check(&content).unwrap();
}

/// `llama_gguf` as another architecture: its keys renamed, with what that loader reads besides.
fn as_arch(arch: &str) -> Content {
    let mut content = llama_gguf();
    let keys: Vec<String> = content.metadata.keys().filter(|k| k.starts_with("llama.")).cloned().collect();
    for key in keys {
        let value = content.metadata.remove(&key).unwrap();
        content.metadata.insert(key.replacen("llama", arch, 1), value);
    }
    content.metadata.insert("general.architecture".into(), Value::String(arch.into()));
    content.metadata.insert(format!("{arch}.context_length"), Value::U32(256));
    content
}

fn add_tensor(content: &mut Content, name: String, dims: Vec<usize>) {
    content.tensor_infos.insert(name, TensorInfo { ggml_dtype: GgmlDType::F32, shape: dims.into(), offset: 0 });
}

#[test]
fn qwen2_ggufs_need_their_biases_and_qwen3_ggufs_their_norms() {
    let mut qwen2 = as_arch("qwen2");
    assert_eq!(gguf::check(&qwen2).unwrap_err().to_string(), "the GGUF file has no tensor `blk.0.attn_q.bias`");
    for l in 0..2 {
        add_tensor(&mut qwen2, format!("blk.{l}.attn_q.bias"), vec![64]);
        add_tensor(&mut qwen2, format!("blk.{l}.attn_k.bias"), vec![32]);
        add_tensor(&mut qwen2, format!("blk.{l}.attn_v.bias"), vec![32]);
    }
    gguf::check(&qwen2).unwrap();

    let mut qwen3 = as_arch("qwen3");
    assert!(matches!(gguf::check(&qwen3), Err(WeightCheckError::GgufKey { key, .. }) if key == "qwen3.rope.freq_base"));
    qwen3.metadata.insert("qwen3.rope.freq_base".into(), Value::F32(1e6));
    qwen3.metadata.insert("qwen3.attention.key_length".into(), Value::U32(16));
    for l in 0..2 {
        add_tensor(&mut qwen3, format!("blk.{l}.attn_q_norm.weight"), vec![16]);
        add_tensor(&mut qwen3, format!("blk.{l}.attn_k_norm.weight"), vec![16]);
    }
    gguf::check(&qwen3).unwrap();
    // Qwen3's head dimension is its own key, not hidden / heads.
    qwen3.metadata.insert("qwen3.attention.key_length".into(), Value::U32(32));
    assert!(
        matches!(gguf::check(&qwen3), Err(WeightCheckError::GgufShape { tensor, .. }) if tensor == "blk.0.attn_q.weight")
    );
}

/// `attention_bias` biases all four of Llama's attention projections, as
/// transformers builds them: the output projection's bias is required too.
#[test]
fn a_llama_with_attention_bias_needs_its_output_bias() {
    let config = CONFIG.replace("\"tie_word_embeddings\":true", "\"tie_word_embeddings\":true,\"attention_bias\":true");
    let mut tensors = tiny();
    let bf16 = |n: usize| TensorHeader { dtype: Dtype::BF16, shape: vec![n], shard: "model.safetensors".into() };
    for l in 0..2 {
        for (name, n) in [("q_proj", 64), ("k_proj", 32), ("v_proj", 32)] {
            tensors.insert(format!("model.layers.{l}.self_attn.{name}.bias"), bf16(n));
        }
    }
    let err = check_safetensors(config.as_bytes(), None, &tensors).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the weights have no tensor `model.layers.0.self_attn.o_proj.bias`, which `config.json` calls for"
    );
    for l in 0..2 {
        tensors.insert(format!("model.layers.{l}.self_attn.o_proj.bias"), bf16(64));
    }
    check_safetensors(config.as_bytes(), None, &tensors).unwrap();
}

/// gpt-oss's MXFP4 experts come in blocks of 32 values: an expert width that
/// is not a whole number of blocks is refused at import, naming the tensor.
#[test]
fn mxfp4_experts_must_be_whole_blocks() {
    let config = r#"{"model_type":"gpt_oss","hidden_size":64,"intermediate_size":16,"num_hidden_layers":1,
        "num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"max_position_embeddings":256,
        "vocab_size":32,"num_local_experts":2,"num_experts_per_tok":1,"sliding_window":8}"#;
    let header =
        |dtype, shape: &[usize]| TensorHeader { dtype, shape: shape.to_vec(), shard: "model.safetensors".into() };
    let p = "model.layers.0";
    let mut tensors: BTreeMap<String, TensorHeader> = [
        ("model.embed_tokens.weight".to_string(), header(Dtype::BF16, &[32, 64])),
        ("model.norm.weight".into(), header(Dtype::BF16, &[64])),
        ("lm_head.weight".into(), header(Dtype::BF16, &[32, 64])),
    ]
    .into();
    for (name, shape) in [
        ("input_layernorm.weight", &[64][..]),
        ("post_attention_layernorm.weight", &[64]),
        ("self_attn.q_proj.weight", &[64, 64]),
        ("self_attn.q_proj.bias", &[64]),
        ("self_attn.k_proj.weight", &[32, 64]),
        ("self_attn.k_proj.bias", &[32]),
        ("self_attn.v_proj.weight", &[32, 64]),
        ("self_attn.v_proj.bias", &[32]),
        ("self_attn.o_proj.weight", &[64, 64]),
        ("self_attn.o_proj.bias", &[64]),
        ("self_attn.sinks", &[4]),
        ("mlp.router.weight", &[2, 64]),
        ("mlp.router.bias", &[2]),
        ("mlp.experts.gate_up_proj_bias", &[2, 32]),
        ("mlp.experts.down_proj_bias", &[2, 64]),
    ] {
        tensors.insert(format!("{p}.{name}"), header(Dtype::BF16, shape));
    }
    // gate_up's 64 input columns are 2 blocks; down's 16 are half of one.
    tensors.insert(format!("{p}.mlp.experts.gate_up_proj_blocks"), header(Dtype::U8, &[2, 32, 2, 16]));
    tensors.insert(format!("{p}.mlp.experts.gate_up_proj_scales"), header(Dtype::U8, &[2, 32, 2]));
    let err = check_safetensors(config.as_bytes(), None, &tensors).unwrap_err();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    // (candle appends a backtrace to its message when RUST_BACKTRACE is set; llmctl's printer drops it.)
    assert_eq!(
        text.lines().next().unwrap(),
        "building the model from its headers failed: `model.layers.0.mlp.experts.down_proj_blocks`: 16 columns are not whole MXFP4 blocks of 32"
    );
}
