//! Tiny random-weight GGUF models around a real vocabulary: every
//! `tokenizer.*` key of one of llama.cpp's vocabulary files
//! (`tests/support/llama_cpp.rs`), the architecture's metadata as llama.cpp's
//! converter writes it, and Q8_0 weights (F32 norms and biases) of the shape
//! below. Deterministic: the same arguments give the same bytes.

use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::rng::Rng;

pub const HIDDEN: usize = 64;
pub const LAYERS: usize = 2;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const FFN: usize = 128;
pub const CONTEXT: u32 = 256;
/// llama.cpp's `LLAMA_FTYPE_MOSTLY_Q8_0`.
const FILE_TYPE_Q8_0: u32 = 7;

/// An architecture llmctl runs, with the vocabulary file its family uses.
#[derive(Clone, Copy, Debug)]
pub enum Arch {
    /// Llama 3: `ggml-vocab-llama-bpe.gguf`.
    Llama,
    /// Qwen2: `ggml-vocab-qwen2.gguf` (biases on Q, K and V).
    Qwen2,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }

    pub fn vocab_file(self) -> &'static str {
        match self {
            Arch::Llama => "ggml-vocab-llama-bpe.gguf",
            Arch::Qwen2 => "ggml-vocab-qwen2.gguf",
        }
    }
}

fn random(rng: &mut Rng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    // Uniform in [-0.1, 0.1): small enough that the logits stay tame.
    let values: Vec<f32> = (0..n).map(|_| (rng.next() >> 40) as f32 / (1u64 << 24) as f32 * 0.2 - 0.1).collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Weights (2-D) as Q8_0, norms (all ones) and biases as F32.
fn tensor(rng: &mut Rng, name: &str, shape: &[usize]) -> QTensor {
    let dtype = if shape.len() == 1 { GgmlDType::F32 } else { GgmlDType::Q8_0 };
    let values = match name.ends_with("norm.weight") {
        true => Tensor::ones(shape, candle_core::DType::F32, &Device::Cpu).unwrap(),
        false => random(rng, shape),
    };
    QTensor::quantize(&values, dtype).unwrap()
}

/// llama.cpp's tensor names, with candle's shapes (rows first).
fn shapes(arch: Arch, vocab: usize) -> Vec<(String, Vec<usize>)> {
    let kv = KV_HEADS * (HIDDEN / HEADS);
    let mut shapes = vec![("token_embd.weight".to_string(), vec![vocab, HIDDEN])];
    for layer in 0..LAYERS {
        let blk = |name: &str, shape: &[usize]| (format!("blk.{layer}.{name}"), shape.to_vec());
        shapes.extend([
            blk("attn_norm.weight", &[HIDDEN]),
            blk("attn_q.weight", &[HIDDEN, HIDDEN]),
            blk("attn_k.weight", &[kv, HIDDEN]),
            blk("attn_v.weight", &[kv, HIDDEN]),
            blk("attn_output.weight", &[HIDDEN, HIDDEN]),
            blk("ffn_norm.weight", &[HIDDEN]),
            blk("ffn_gate.weight", &[FFN, HIDDEN]),
            blk("ffn_up.weight", &[FFN, HIDDEN]),
            blk("ffn_down.weight", &[HIDDEN, FFN]),
        ]);
        if let Arch::Qwen2 = arch {
            shapes.extend([blk("attn_q.bias", &[HIDDEN]), blk("attn_k.bias", &[kv]), blk("attn_v.bias", &[kv])]);
        }
    }
    shapes.push(("output_norm.weight".into(), vec![HIDDEN]));
    shapes.push(("output.weight".into(), vec![vocab, HIDDEN]));
    shapes
}

fn architecture_metadata(arch: Arch, vocab: usize) -> Vec<(String, Value)> {
    let name = arch.name();
    let key = |suffix: &str| format!("{name}.{suffix}");
    vec![
        ("general.architecture".into(), Value::String(name.into())),
        ("general.name".into(), Value::String(format!("tiny-{name}"))),
        ("general.file_type".into(), Value::U32(FILE_TYPE_Q8_0)),
        ("general.quantization_version".into(), Value::U32(2)),
        (key("vocab_size"), Value::U32(vocab as u32)),
        (key("context_length"), Value::U32(CONTEXT)),
        (key("embedding_length"), Value::U32(HIDDEN as u32)),
        (key("feed_forward_length"), Value::U32(FFN as u32)),
        (key("block_count"), Value::U32(LAYERS as u32)),
        (key("attention.head_count"), Value::U32(HEADS as u32)),
        (key("attention.head_count_kv"), Value::U32(KV_HEADS as u32)),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        (key("rope.dimension_count"), Value::U32((HIDDEN / HEADS) as u32)),
        (key("rope.freq_base"), Value::F32(10_000.0)),
    ]
}

/// Writes a tiny `arch` model with the vocabulary of `vocab_dir`'s file for it to `path`.
pub fn write(path: &Path, arch: Arch, vocab_dir: &Path, seed: u64) {
    let mut vocab_file = File::open(vocab_dir.join(arch.vocab_file())).unwrap();
    let vocab_content = gguf_file::Content::read(&mut vocab_file).unwrap();
    let mut tokenizer: Vec<(String, Value)> =
        vocab_content.metadata.into_iter().filter(|(k, _)| k.starts_with("tokenizer.")).collect();
    tokenizer.sort_by(|a, b| a.0.cmp(&b.0));
    let vocab = tokenizer.iter().find(|(k, _)| k == "tokenizer.ggml.tokens").unwrap().1.to_vec().unwrap().len();
    let mut metadata = architecture_metadata(arch, vocab);
    metadata.extend(tokenizer);
    let mut rng = Rng(seed);
    let tensors: Vec<(QTensor, String)> =
        shapes(arch, vocab).into_iter().map(|(name, shape)| (tensor(&mut rng, &name, &shape), name)).collect();
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(t, k)| (k.as_str(), t)).collect();
    let mut out = std::io::BufWriter::new(File::create(path).unwrap());
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
}
