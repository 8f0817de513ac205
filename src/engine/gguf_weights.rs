//! A GGUF file as the decoder's weights: its metadata as a `ModelConfig`,
//! its tensors by their Hugging Face names. Quantized matrices stay in
//! their ggml blocks (candle `QTensor`s); norms, biases and the token
//! embedding become dense tensors in the compute dtype. llama.cpp stores a
//! Llama's Q and K rows interleaved for its adjacent-pair RoPE; they are
//! put back in Hugging Face order as they load, so one decoder and one
//! RoPE serve both formats.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, ggml_file::qtensor_from_ggml};
use candle_core::{DType, Device, Result, Shape, Tensor};
use memmap2::Mmap;

use super::config::{BlockSpec, Family, LayerSpec, ModelConfig, RopeScaling, RopeSpec};
use super::linear::{Projection, Projections};
use super::weights::Weights;
use crate::formats::gguf::{GgufHeader, GgufValue, TensorInfo};

/// GGUF architectures the decoder runs.
pub const SUPPORTED: &str = "llama, qwen2, qwen3";

#[derive(Debug, thiserror::Error)]
pub enum GgufModelError {
    #[error("unsupported GGUF architecture `{0}`: llmctl runs GGUF models of {SUPPORTED}")]
    Architecture(String),
    #[error("GGUF metadata has no `{0}`")]
    MissingKey(String),
    #[error("GGUF metadata is inconsistent: {0}")]
    Inconsistent(String),
    #[error("unsupported GGUF rope scaling `{0}`: llmctl supports `none` and `linear`")]
    RopeScaling(String),
}

/// How llama.cpp's converter laid out one architecture's tensors.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Q and K rows interleaved per head (llama.cpp's `llama` architecture).
    interleaved_qk: bool,
}

/// The decoder's configuration from a GGUF header.
pub fn config(header: &GgufHeader) -> std::result::Result<ModelConfig, GgufModelError> {
    let arch = header.architecture().unwrap_or_default();
    let family = match arch {
        "llama" => Family::Llama,
        "qwen2" => Family::Qwen2,
        "qwen3" => Family::Qwen3,
        other => return Err(GgufModelError::Architecture(other.into())),
    };
    let key = |suffix: &str| format!("{arch}.{suffix}");
    let int = |suffix: &str| {
        header.arch_u64(suffix).map(|v| v as usize).ok_or_else(|| GgufModelError::MissingKey(key(suffix)))
    };
    let float = |suffix: &str| header.get(&key(suffix)).and_then(GgufValue::as_f64);
    let (hidden, heads) = (int("embedding_length")?, int("attention.head_count")?);
    let kv_heads = header.arch_u64("attention.head_count_kv").map_or(heads, |v| v as usize);
    let inconsistent = |what: String| Err(GgufModelError::Inconsistent(what));
    if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return inconsistent(format!(
            "`{}` {heads} is not a multiple of `{}` {kv_heads}",
            key("attention.head_count"),
            key("attention.head_count_kv")
        ));
    }
    let head_dim = match header.arch_u64("attention.key_length") {
        Some(d) => d as usize,
        None if hidden.is_multiple_of(heads) => hidden / heads,
        None => {
            return inconsistent(format!(
                "`{}` {hidden} is not a multiple of `{}` {heads}",
                key("embedding_length"),
                key("attention.head_count")
            ));
        }
    };
    if let Some(v) = header.arch_u64("attention.value_length").filter(|&v| v as usize != head_dim) {
        return inconsistent(format!("`{}` {v} differs from the key length {head_dim}", key("attention.value_length")));
    }
    if let Some(rot) = header.arch_u64("rope.dimension_count").filter(|&r| r as usize != head_dim) {
        return inconsistent(format!(
            "`{}` is {rot}, but the head dimension is {head_dim}; partial rotary embeddings are not implemented",
            key("rope.dimension_count")
        ));
    }
    let tensor = |name: &str| header.tensors.iter().find(|t| t.name == name);
    let vocab = header.get("tokenizer.ggml.tokens").and_then(GgufValue::as_array).map(<[_]>::len);
    let vocab = vocab.or_else(|| tensor("token_embd.weight").and_then(|t| t.dims.get(1)).map(|&d| d as usize));
    let intermediate = match header.arch_u64("feed_forward_length") {
        Some(n) => n as usize,
        None => tensor("blk.0.ffn_gate.weight")
            .and_then(|t| t.dims.get(1))
            .map(|&d| d as usize)
            .ok_or_else(|| GgufModelError::MissingKey(key("feed_forward_length")))?,
    };
    let layers = int("block_count")?;
    let rope_scaling = match header.get(&key("rope.scaling.type")).and_then(GgufValue::as_str) {
        None | Some("none") => None,
        Some("linear") => Some(RopeScaling {
            rope_type: Some("linear".into()),
            legacy_type: None,
            rope_theta: None,
            factor: float("rope.scaling.factor"),
            ..RopeScaling::default()
        }),
        Some(other) => return Err(GgufModelError::RopeScaling(other.into())),
    };
    Ok(ModelConfig {
        family,
        hidden_size: hidden,
        intermediate_size: intermediate,
        layers,
        heads,
        kv_heads,
        head_dim,
        max_context: int("context_length")?,
        vocab_size: vocab.ok_or_else(|| GgufModelError::MissingKey("tokenizer.ggml.tokens".into()))?,
        rms_norm_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
        tie_word_embeddings: tensor("output.weight").is_none(),
        qkv_bias: tensor("blk.0.attn_q.bias").is_some(),
        eos_token_ids: Vec::new(),
        block: BlockSpec::llama(
            LayerSpec::uniform(head_dim, kv_heads, intermediate),
            layers,
            RopeSpec {
                theta: float("rope.freq_base").unwrap_or(10_000.0),
                scaling: rope_scaling,
                rotary_dim: head_dim,
                longrope: None,
                rotated_pairs: None,
            },
            family == Family::Qwen3,
        ),
    })
}

/// The GGUF name of a Hugging Face tensor name.
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let (stem, suffix) = part.rsplit_once('.')?;
    let gguf = match stem {
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
        _ => return None,
    };
    Some(format!("blk.{layer}.{gguf}.{suffix}"))
}

/// candle's name for a ggml type it can compute with.
fn candle_type(info: &TensorInfo) -> Option<GgmlDType> {
    Some(match info.ggml_type.name()? {
        "F32" => GgmlDType::F32,
        "F16" => GgmlDType::F16,
        "BF16" => GgmlDType::BF16,
        "Q4_0" => GgmlDType::Q4_0,
        "Q4_1" => GgmlDType::Q4_1,
        "Q5_0" => GgmlDType::Q5_0,
        "Q5_1" => GgmlDType::Q5_1,
        "Q8_0" => GgmlDType::Q8_0,
        "Q2_K" => GgmlDType::Q2K,
        "Q3_K" => GgmlDType::Q3K,
        "Q4_K" => GgmlDType::Q4K,
        "Q5_K" => GgmlDType::Q5K,
        "Q6_K" => GgmlDType::Q6K,
        "Q8_K" => GgmlDType::Q8K,
        _ => return None,
    })
}

/// One file of a (possibly split) GGUF model, mapped.
struct Part {
    map: Mmap,
    data_offset: u64,
}

/// Whether tensors are read or only checked against the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Load,
    /// Every tensor the decoder asks for is checked (present, shaped as the
    /// metadata says, of a type candle computes with) and answered with a
    /// broadcast zero: no weight is read, nothing is allocated.
    HeadersOnly,
}

pub struct GgufWeights {
    parts: Vec<Part>,
    /// Tensor name → (part, description).
    tensors: HashMap<String, (usize, TensorInfo)>,
    layout: Layout,
    /// Rows of one head's Q and K (the head dimension) and head counts.
    heads: (usize, usize, usize),
    dtype: DType,
    device: Device,
    mode: Mode,
    /// Types re-rounded to Q8_0 as they loaded (see `computable`).
    rerounded: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

fn bad(message: String) -> candle_core::Error {
    candle_core::Error::Msg(message)
}

impl GgufWeights {
    /// The model in `paths` (one file, or a split model's parts in order,
    /// with `headers` read from each), its dense tensors in `dtype`.
    pub fn open(
        paths: &[PathBuf],
        headers: &[GgufHeader],
        cfg: &ModelConfig,
        dtype: DType,
        device: &Device,
        mode: Mode,
    ) -> Result<GgufWeights> {
        let mut parts = Vec::new();
        let mut tensors = HashMap::new();
        let arch = headers.first().and_then(|h| h.architecture().map(str::to_string)).unwrap_or_default();
        for (index, (path, header)) in paths.iter().zip(headers).enumerate() {
            if mode == Mode::Load {
                parts.push(Part { map: map(path)?, data_offset: header.data_offset });
            }
            for info in &header.tensors {
                if let Some((first, _)) = tensors.insert(info.name.clone(), (index, info.clone())) {
                    let name = &info.name;
                    return Err(bad(format!("tensor `{name}` is in part {} and part {}", first + 1, index + 1)));
                }
            }
        }
        Ok(GgufWeights {
            parts,
            tensors,
            layout: Layout { interleaved_qk: arch == "llama" },
            heads: (cfg.head_dim, cfg.heads, cfg.kv_heads),
            dtype,
            device: device.clone(),
            mode,
            rerounded: Default::default(),
        })
    }

    /// The tensor behind a Hugging Face name, checked to have `shape` (row-major).
    fn info(&self, hf: &str, shape: &[usize]) -> Result<(usize, &TensorInfo, GgmlDType)> {
        let name = gguf_name(hf).ok_or_else(|| bad(format!("no GGUF tensor stands for `{hf}`")))?;
        let (part, info) =
            self.tensors.get(&name).ok_or_else(|| bad(format!("the GGUF file has no tensor `{name}`")))?;
        let found: Vec<usize> = info.dims.iter().rev().map(|&d| d as usize).collect();
        if found != shape {
            // Shapes as llama.cpp prints them: fastest dimension first.
            let gguf_order = |s: &[usize]| format!("{:?}", s.iter().rev().collect::<Vec<_>>());
            return Err(bad(format!(
                "tensor `{name}` has the wrong shape for the GGUF metadata: expected {}, found {}",
                gguf_order(shape),
                gguf_order(&found)
            )));
        }
        let ty = candle_type(info).ok_or_else(|| {
            bad(format!(
                "tensor `{name}` is stored as `{}`, which llmctl cannot compute with",
                info.ggml_type.name().unwrap_or("an unknown type")
            ))
        })?;
        Ok((*part, info, ty))
    }

    /// The tensor's bytes, Q/K rows (and their biases' values) back in
    /// Hugging Face order where llama.cpp interleaved them.
    fn bytes(&self, hf: &str, part: usize, info: &TensorInfo) -> Result<std::borrow::Cow<'_, [u8]>> {
        let size = info.byte_size().map_err(|e| bad(e.to_string()))? as usize;
        let part = &self.parts[part];
        let start = (part.data_offset + info.offset) as usize;
        let bytes = part
            .map
            .get(start..start.saturating_add(size))
            .ok_or_else(|| bad(format!("tensor `{}` lies beyond the end of its file", info.name)))?;
        let heads = match (self.layout.interleaved_qk, hf.rsplit_once('.').map(|(stem, _)| stem)) {
            (true, Some(stem)) if stem.ends_with("self_attn.q_proj") => self.heads.1,
            (true, Some(stem)) if stem.ends_with("self_attn.k_proj") => self.heads.2,
            _ => return Ok(bytes.into()),
        };
        // The slowest dimension: a matrix's rows, a bias's values.
        let rows = info.dims.last().copied().unwrap_or(1) as usize;
        Ok(uninterleave(bytes, rows, heads, self.heads.0).into())
    }

    fn qtensor(&self, hf: &str, shape: &[usize]) -> Result<(QTensor, GgmlDType)> {
        let (part, info, ty) = self.info(hf, shape)?;
        let bytes = self.bytes(hf, part, info)?;
        Ok((qtensor_from_ggml(ty, &bytes, shape.to_vec(), &self.device)?, ty))
    }

    fn dense(&self, hf: &str, shape: &[usize]) -> Result<Tensor> {
        if self.mode == Mode::HeadersOnly {
            self.info(hf, shape)?;
            return Tensor::zeros((), self.dtype, &self.device)?.broadcast_as(shape);
        }
        let (q, _) = self.qtensor(hf, shape)?;
        q.dequantize(&self.device)?.to_dtype(self.dtype)
    }

    /// A matrix as the decoder multiplies by it: float types dense, quantized ones as they are.
    fn matrix(&self, hf: &str, shape: &[usize]) -> Result<Projection> {
        if self.mode == Mode::HeadersOnly {
            return Ok(Projection::new(candle_nn::Linear::new(self.dense(hf, shape)?, None)));
        }
        let (q, ty) = self.qtensor(hf, shape)?;
        Ok(match ty {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                Projection::new(candle_nn::Linear::new(q.dequantize(&self.device)?.to_dtype(self.dtype)?, None))
            }
            _ => Projection::quantized(self.computable(q)?, None),
        })
    }

    /// The product over `q`'s blocks. candle's CPU kernels have no SIMD path
    /// for Q4_1, Q5_0 and Q5_1 (a scalar loop 4–5× slower than its Q8_0 one),
    /// so on the CPU those blocks are re-rounded to Q8_0 as they load: 8 bits
    /// for their 4 or 5, an error far below their own rounding's.
    fn computable(&self, q: QTensor) -> Result<QMatMul> {
        let scalar_only = matches!(q.dtype(), GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1);
        let q = if scalar_only && self.device.is_cpu() {
            self.rerounded.borrow_mut().insert(format!("{:?}", q.dtype()));
            QTensor::quantize(&q.dequantize(&self.device)?, GgmlDType::Q8_0)?
        } else {
            q
        };
        QMatMul::from_arc(Arc::new(q))
    }

    /// What was computed otherwise than stored, for the user to be told.
    pub fn conversions(&self) -> Vec<String> {
        let types: Vec<String> = self.rerounded.borrow().iter().cloned().collect();
        if types.is_empty() {
            return Vec::new();
        }
        vec![format!(
            "{} blocks are computed as Q8_0 on the CPU (candle has no fast kernel for them)",
            types.join(", ")
        )]
    }

    /// `{name}.bias` (un-interleaved by `bytes` as its matrix's rows are).
    fn bias(&self, name: &str, dout: usize) -> Result<Tensor> {
        self.dense(&format!("{name}.bias"), &[dout])
    }
}

fn map(path: &Path) -> Result<Mmap> {
    let file = File::open(path)?;
    // SAFETY: store blobs are immutable once written (replaced only by rename).
    Ok(unsafe { Mmap::map(&file) }?)
}

/// llama.cpp's converter stores row `h·d + 2i + j` of a Llama Q or K matrix
/// where Hugging Face has row `h·d + j·d/2 + i` (`i < d/2`, `j ∈ {0, 1}`,
/// per head `h` of dimension `d`); rows are whole ggml blocks, so this
/// moves bytes, never values.
fn uninterleave(bytes: &[u8], rows: usize, heads: usize, head_dim: usize) -> Vec<u8> {
    if rows != heads * head_dim || head_dim < 2 || !bytes.len().is_multiple_of(rows) {
        return bytes.to_vec();
    }
    let row = bytes.len() / rows;
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(bytes.len());
    for r in 0..rows {
        let (h, within) = (r / head_dim, r % head_dim);
        let (j, i) = (within / half, within % half);
        let src = h * head_dim + 2 * i + j;
        out.extend_from_slice(&bytes[src * row..(src + 1) * row]);
    }
    out
}

impl Weights for GgufWeights {
    fn dtype(&self) -> DType {
        self.dtype
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn contains(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|g| self.tensors.contains_key(&g))
    }

    fn tensor(&self, name: &str, shape: Shape) -> Result<Tensor> {
        self.dense(name, shape.dims())
    }

    fn projection(&self, name: &str, din: usize, dout: usize, bias: bool) -> Result<Projection> {
        let weight = self.matrix(&format!("{name}.weight"), &[dout, din])?;
        if !bias {
            return Ok(weight);
        }
        let bias = self.bias(name, dout)?;
        Ok(match weight {
            Projection::Dense(linear) => Projection::new(candle_nn::Linear::new(linear.weight().clone(), Some(bias))),
            Projection::Quantized { weight, .. } => Projection::quantized(weight, Some(bias)),
        })
    }

    /// Matrices of one quantized type are stacked row on row (rows are whole
    /// blocks) into one product: one pass over the input instead of two or three.
    fn projections(&self, names: &[&str], din: usize, douts: &[usize], bias: bool) -> Result<Projections> {
        let each = || {
            let each = names.iter().zip(douts).map(|(name, &dout)| self.projection(name, din, dout, bias));
            Ok(Projections::Each(each.collect::<Result<_>>()?))
        };
        if self.mode == Mode::HeadersOnly {
            return each();
        }
        let mut infos = Vec::new();
        for (name, &dout) in names.iter().zip(douts) {
            let hf = format!("{name}.weight");
            let (part, info, ty) = self.info(&hf, &[dout, din])?;
            infos.push((hf, part, info, ty));
        }
        let ty = infos[0].3;
        if matches!(ty, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) || infos.iter().any(|i| i.3 != ty) {
            return each();
        }
        let mut bytes = Vec::new();
        for (hf, part, info, _) in &infos {
            bytes.extend_from_slice(&self.bytes(hf, *part, info)?);
        }
        let rows: usize = douts.iter().sum();
        let weight = self.computable(qtensor_from_ggml(ty, &bytes, vec![rows, din], &self.device)?)?;
        let bias = if bias {
            let parts = names.iter().zip(douts).map(|(name, &dout)| self.bias(name, dout));
            Some(Tensor::cat(&parts.collect::<Result<Vec<_>>>()?, 0)?)
        } else {
            None
        };
        Ok(Projections::Stacked { projection: Projection::quantized(weight, bias), widths: douts.to_vec() })
    }

    /// The token embedding's own blocks, multiplied as stored (as llama.cpp does).
    fn tied_head(&self, embedding_name: &str, embeddings: &Tensor) -> Result<Projection> {
        self.matrix(&format!("{embedding_name}.weight"), embeddings.dims())
    }

    fn rope_factors(&self) -> Result<Option<Vec<f32>>> {
        let Some((part, info)) = self.tensors.get("rope_freqs.weight") else { return Ok(None) };
        if self.mode == Mode::HeadersOnly {
            return Ok(Some(vec![1.0; self.heads.0 / 2]));
        }
        let ty = candle_type(info).filter(|t| *t == GgmlDType::F32);
        let ty = ty.ok_or_else(|| bad("tensor `rope_freqs.weight` is not `F32`".into()))?;
        let bytes = self.bytes("rope_freqs.weight", *part, info)?;
        let dims: Vec<usize> = info.dims.iter().map(|&d| d as usize).collect();
        let factors = qtensor_from_ggml(ty, &bytes, dims, &Device::Cpu)?.dequantize(&Device::Cpu)?;
        Ok(Some(factors.flatten_all()?.to_vec1::<f32>()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uninterleaving_inverts_llama_cpps_permutation() {
        // Two heads of dimension 4, one byte per row: GGUF row order is
        // HF rows 0,2,1,3 | 4,6,5,7.
        let gguf = [0u8, 2, 1, 3, 4, 6, 5, 7];
        assert_eq!(uninterleave(&gguf, 8, 2, 4), [0, 1, 2, 3, 4, 5, 6, 7]);
        // Rows of several bytes move whole.
        let gguf: Vec<u8> = [0u8, 2, 1, 3].iter().flat_map(|&r| [r, r + 10]).collect();
        assert_eq!(uninterleave(&gguf, 4, 1, 4), [0, 10, 1, 11, 2, 12, 3, 13]);
    }

    /// A llama header: hidden 64, 4 heads, 2 KV heads, 2 blocks, ffn 128, 32 tokens.
    fn llama(extra: &[(&str, GgufValue)], without: &[&str]) -> GgufHeader {
        let mut metadata: Vec<(String, GgufValue)> = [
            ("general.architecture", GgufValue::String("llama".into())),
            ("llama.embedding_length", GgufValue::U32(64)),
            ("llama.block_count", GgufValue::U32(2)),
            ("llama.feed_forward_length", GgufValue::U32(128)),
            ("llama.attention.head_count", GgufValue::U32(4)),
            ("llama.attention.head_count_kv", GgufValue::U32(2)),
            ("llama.context_length", GgufValue::U32(256)),
            ("tokenizer.ggml.tokens", GgufValue::Array(vec![GgufValue::String("t".into()); 32])),
        ]
        .into_iter()
        .filter(|(k, _)| !without.contains(k))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        metadata.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        GgufHeader { version: 3, metadata, tensors: Vec::new(), alignment: 32, data_offset: 0 }
    }

    fn config_error(header: &GgufHeader) -> String {
        config(header).unwrap_err().to_string()
    }

    #[test]
    fn metadata_the_decoder_cannot_follow_is_named() {
        let cfg = config(&llama(&[], &[])).unwrap();
        assert_eq!((cfg.head_dim, cfg.kv_heads, cfg.max_context, cfg.vocab_size), (16, 2, 256, 32));
        assert_eq!(
            config_error(&llama(
                &[("general.architecture", GgufValue::String("gemma3".into()))],
                &["general.architecture"]
            )),
            "unsupported GGUF architecture `gemma3`: llmctl runs GGUF models of llama, qwen2, qwen3"
        );
        assert_eq!(config_error(&llama(&[], &["llama.block_count"])), "GGUF metadata has no `llama.block_count`");
        assert_eq!(
            config_error(&llama(
                &[("llama.attention.head_count_kv", GgufValue::U32(3))],
                &["llama.attention.head_count_kv"]
            )),
            "GGUF metadata is inconsistent: `llama.attention.head_count` 4 is not a multiple of `llama.attention.head_count_kv` 3"
        );
        assert_eq!(
            config_error(&llama(&[("llama.attention.value_length", GgufValue::U32(8))], &[])),
            "GGUF metadata is inconsistent: `llama.attention.value_length` 8 differs from the key length 16"
        );
        assert_eq!(
            config_error(&llama(&[("llama.rope.dimension_count", GgufValue::U32(8))], &[])),
            "GGUF metadata is inconsistent: `llama.rope.dimension_count` is 8, but the head dimension is 16; \
             partial rotary embeddings are not implemented"
        );
        assert_eq!(
            config_error(&llama(&[("llama.rope.scaling.type", GgufValue::String("yarn".into()))], &[])),
            "unsupported GGUF rope scaling `yarn`: llmctl supports `none` and `linear`"
        );
    }

    #[test]
    fn hugging_face_names_map_to_llama_cpps() {
        assert_eq!(gguf_name("model.layers.3.self_attn.o_proj.weight").unwrap(), "blk.3.attn_output.weight");
        assert_eq!(gguf_name("model.layers.0.self_attn.q_proj.bias").unwrap(), "blk.0.attn_q.bias");
        assert_eq!(gguf_name("model.layers.1.post_attention_layernorm.weight").unwrap(), "blk.1.ffn_norm.weight");
        assert_eq!(gguf_name("lm_head.weight").unwrap(), "output.weight");
        assert_eq!(gguf_name("model.layers.1.mlp.experts.weight"), None);
    }
}
