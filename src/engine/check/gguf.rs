//! The tensors and metadata candle-transformers' GGUF loaders read, per
//! architecture llmctl runs (`quantized_llama`, `quantized_qwen2`,
//! `quantized_qwen3` in candle-transformers 0.11), with the shapes the
//! metadata gives them. Shapes are in GGUF order, fastest dimension first,
//! as llama.cpp's tools print them.

use candle_core::quantized::gguf_file::{Content, Value};

use super::WeightCheckError;

/// The sizes a loader derives from the metadata.
struct Sizes {
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    /// 0 or 1: a dense MLP; more: that many experts (llama only).
    experts: usize,
    /// Qwen2: biases on the Q, K and V projections.
    qkv_bias: bool,
    /// Qwen3: RMS norms on queries and keys per head.
    qk_norm: bool,
}

pub(super) fn check(content: &Content) -> Result<(), WeightCheckError> {
    let arch = content.metadata.get("general.architecture").and_then(|v| v.to_string().ok());
    let Some(arch @ ("llama" | "qwen2" | "qwen3")) = arch.map(String::as_str) else { return Ok(()) };
    let sizes = sizes(content, arch)?;
    Tensors { content }.check(&sizes, ffn_length(content, arch))
}

/// A key as the loaders read it: candle's `to_u32`/`to_f32` take only that exact type.
fn u32_key(content: &Content, key: &str) -> Result<usize, WeightCheckError> {
    let value = content.metadata.get(key).and_then(|v| v.to_u32().ok());
    value.map(|v| v as usize).ok_or_else(|| WeightCheckError::GgufKey { key: key.into(), ty: "u32" })
}

fn f32_key(content: &Content, key: &str) -> Result<(), WeightCheckError> {
    match content.metadata.get(key).map(Value::to_f32) {
        Some(Ok(_)) => Ok(()),
        _ => Err(WeightCheckError::GgufKey { key: key.into(), ty: "f32" }),
    }
}

fn sizes(content: &Content, arch: &str) -> Result<Sizes, WeightCheckError> {
    let key = |suffix: &str| format!("{arch}.{suffix}");
    let u32_of = |suffix: &str| u32_key(content, &key(suffix));
    let (heads, kv_heads) = (u32_of("attention.head_count")?, u32_of("attention.head_count_kv")?);
    let (hidden, layers) = (u32_of("embedding_length")?, u32_of("block_count")?);
    f32_key(content, &key("attention.layer_norm_rms_epsilon"))?;
    let inconsistent = |what: String| Err(WeightCheckError::GgufMetadata(what));
    if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return inconsistent(format!(
            "`{}` {heads} is not a multiple of `{}` {kv_heads}",
            key("attention.head_count"),
            key("attention.head_count_kv")
        ));
    }
    let head_dim = if arch == "qwen3" {
        u32_of("context_length")?;
        f32_key(content, &key("rope.freq_base"))?;
        u32_of("attention.key_length")?
    } else if !hidden.is_multiple_of(heads) {
        return inconsistent(format!(
            "`{}` {hidden} is not a multiple of `{}` {heads}",
            key("embedding_length"),
            key("attention.head_count")
        ));
    } else {
        hidden / heads
    };
    match arch {
        "llama" => {
            let rope = u32_of("rope.dimension_count")?;
            if rope != head_dim {
                return inconsistent(format!(
                    "`{}` is {rope}, but the head dimension (`{}` / `{}`) is {head_dim}",
                    key("rope.dimension_count"),
                    key("embedding_length"),
                    key("attention.head_count")
                ));
            }
        }
        "qwen2" => {
            u32_of("context_length")?;
        }
        _ => {}
    }
    // As candle's llama loader: an expert count that is not a `u32` reads as none.
    let experts = match arch {
        "llama" => content.metadata.get(&key("expert_count")).and_then(|v| v.to_u32().ok()).unwrap_or(0) as usize,
        _ => 0,
    };
    let vocab = content.metadata.get("tokenizer.ggml.tokens").and_then(|v| v.to_vec().ok()).map_or(0, Vec::len);
    Ok(Sizes {
        hidden,
        layers,
        heads,
        kv_heads,
        head_dim,
        vocab,
        experts,
        qkv_bias: arch == "qwen2",
        qk_norm: arch == "qwen3",
    })
}

/// `feed_forward_length` when the file gives it (the loaders do not read it,
/// so any integer type will do); else whatever the tensors agree on.
fn ffn_length(content: &Content, arch: &str) -> Option<usize> {
    let value = content.metadata.get(&format!("{arch}.feed_forward_length"))?;
    value.to_u32().map(|v| v as usize).or_else(|_| value.to_u64().map(|v| v as usize)).ok()
}

struct Tensors<'a> {
    content: &'a Content,
}

impl Tensors<'_> {
    /// The tensor's shape in GGUF order, if it is there.
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let info = self.content.tensor_infos.get(name)?;
        Some(info.shape.dims().iter().rev().copied().collect())
    }

    fn expect(&self, name: &str, expected: &[usize]) -> Result<(), WeightCheckError> {
        match self.shape(name) {
            None => Err(WeightCheckError::GgufMissingTensor { tensor: name.into() }),
            Some(found) if found != expected => {
                Err(WeightCheckError::GgufShape { tensor: name.into(), expected: expected.to_vec(), found })
            }
            Some(_) => Ok(()),
        }
    }

    fn check(&self, s: &Sizes, ffn: Option<usize>) -> Result<(), WeightCheckError> {
        self.expect("token_embd.weight", &[s.hidden, s.vocab])?;
        self.expect("output_norm.weight", &[s.hidden])?;
        // Every loader falls back to the embedding when there is no output matrix.
        if self.shape("output.weight").is_some() {
            self.expect("output.weight", &[s.hidden, s.vocab])?;
        }
        (0..s.layers).try_for_each(|layer| self.block(&format!("blk.{layer}"), s, ffn))
    }

    fn block(&self, p: &str, s: &Sizes, ffn: Option<usize>) -> Result<(), WeightCheckError> {
        let (q, kv) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
        self.expect(&format!("{p}.attn_norm.weight"), &[s.hidden])?;
        self.expect(&format!("{p}.ffn_norm.weight"), &[s.hidden])?;
        self.expect(&format!("{p}.attn_q.weight"), &[s.hidden, q])?;
        self.expect(&format!("{p}.attn_k.weight"), &[s.hidden, kv])?;
        self.expect(&format!("{p}.attn_v.weight"), &[s.hidden, kv])?;
        self.expect(&format!("{p}.attn_output.weight"), &[q, s.hidden])?;
        if s.qkv_bias {
            self.expect(&format!("{p}.attn_q.bias"), &[q])?;
            self.expect(&format!("{p}.attn_k.bias"), &[kv])?;
            self.expect(&format!("{p}.attn_v.bias"), &[kv])?;
        }
        if s.qk_norm {
            self.expect(&format!("{p}.attn_q_norm.weight"), &[s.head_dim])?;
            self.expect(&format!("{p}.attn_k_norm.weight"), &[s.head_dim])?;
        }
        if s.experts <= 1 {
            return self.mlp(&format!("{p}.ffn_"), ".weight", s, ffn);
        }
        self.expect(&format!("{p}.ffn_gate_inp.weight"), &[s.hidden, s.experts])?;
        (0..s.experts).try_for_each(|e| self.mlp(&format!("{p}.ffn_"), &format!(".{e}.weight"), s, ffn))
    }

    /// Gate, up and down projections named `{p}gate{suffix}` and so on.
    fn mlp(&self, p: &str, suffix: &str, s: &Sizes, ffn: Option<usize>) -> Result<(), WeightCheckError> {
        let gate = format!("{p}gate{suffix}");
        // Without `feed_forward_length`, the gate's width is taken as given.
        let ffn = ffn.or_else(|| self.shape(&gate).and_then(|d| d.get(1).copied())).unwrap_or(0);
        self.expect(&gate, &[s.hidden, ffn])?;
        self.expect(&format!("{p}up{suffix}"), &[s.hidden, ffn])?;
        self.expect(&format!("{p}down{suffix}"), &[ffn, s.hidden])
    }
}
