//! The decoder (Llama, Mistral, Qwen2, Qwen3): immutable weights, from
//! safetensors (memory-mapped) or a GGUF file (quantized matrices kept
//! quantized), see `weights`; the KV cache is passed in, never owned.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, RmsNorm};

use super::attention::{KEY_BLOCK, attend};
use super::config::{Family, ModelConfig};
use super::kv_cache::{KvCache, rotate};
use super::linear::{Projection, Projections};
use super::rope::Rope;
use super::weights::Weights;

/// Bytes of attention scores one prefill chunk may hold (f32), so long
/// prompts never materialize a full T×T matrix per head.
const ATTENTION_BUDGET_BYTES: usize = 64 << 20;

struct Attention {
    /// Q, K and V.
    qkv: Projections,
    o: Projection,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
}

struct Mlp {
    /// Gate and up.
    gate_up: Projections,
    down: Projection,
}

struct Block {
    input_norm: RmsNorm,
    attention: Attention,
    post_norm: RmsNorm,
    mlp: Mlp,
}

pub struct Model {
    cfg: ModelConfig,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Projection,
    rope: Rope,
    dtype: DType,
}

/// Which positions' logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    Last,
    All,
}

fn rms_norm(w: &dyn Weights, name: &str, size: usize, eps: f64) -> Result<RmsNorm> {
    Ok(RmsNorm::new(w.tensor(&format!("{name}.weight"), size.into())?, eps))
}

impl Attention {
    fn load(w: &dyn Weights, p: &str, cfg: &ModelConfig) -> Result<Attention> {
        let (h, d, q_out, kv_out) =
            (cfg.hidden_size, cfg.head_dim, cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim);
        let qk_norm = cfg.family == Family::Qwen3;
        let norm = |name: &str| rms_norm(w, &format!("{p}.{name}"), d, cfg.rms_norm_eps);
        let names = ["q_proj", "k_proj", "v_proj"].map(|n| format!("{p}.{n}"));
        let names = names.each_ref().map(String::as_str);
        Ok(Attention {
            qkv: w.projections(&names, h, &[q_out, kv_out, kv_out], cfg.qkv_bias)?,
            o: w.projection(&format!("{p}.o_proj"), q_out, h, false)?,
            q_norm: if qk_norm { Some(norm("q_norm")?) } else { None },
            k_norm: if qk_norm { Some(norm("k_norm")?) } else { None },
        })
    }

    /// `rotation`: the cache's rotation in the compute dtype (see `KvCache::rotation`).
    fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        cache: &mut KvCache,
        rotation: Option<&Tensor>,
        model: &Model,
    ) -> Result<Tensor> {
        let (cfg, start, t) = (&model.cfg, cache.len(), x.dim(0)?);
        let [q, k, v]: [Tensor; 3] =
            self.qkv.forward(x)?.try_into().map_err(|_| candle_core::Error::Msg("Q, K, V".into()))?;
        let q = model.rope.apply(&per_head(&q, self.q_norm.as_ref(), cfg.heads, cfg.head_dim)?, start)?;
        let k = model.rope.apply(&per_head(&k, self.k_norm.as_ref(), cfg.kv_heads, cfg.head_dim)?, start)?;
        let v = v.reshape((t, cfg.kv_heads, cfg.head_dim))?.transpose(0, 1)?;
        cache.append(layer, &k.squeeze(0)?, &v)?;
        let q = q.squeeze(0)?;
        // One new position: fused kernels where the device has them (they
        // rotate q and the output themselves); else the blockwise path.
        let fused = if t == 1 { cache.decode_attention(layer, &q, start + 1)? } else { None };
        let y = match fused {
            Some(y) => y,
            None => {
                let q = rotate(&q, rotation)?;
                rotate(&attend(&q, start, KEY_BLOCK, |from, to| cache.read(layer, from, to, model.dtype))?, rotation)?
            }
        };
        self.o.forward(&y.transpose(0, 1)?.reshape((t, cfg.heads * cfg.head_dim))?)
    }
}

/// A projection's output (T, heads × D) as per-head (1, heads, T, D), normed per head when asked.
fn per_head(y: &Tensor, norm: Option<&RmsNorm>, heads: usize, d: usize) -> Result<Tensor> {
    let t = y.dim(0)?;
    let mut y = y.reshape((t, heads, d))?;
    if let Some(norm) = norm {
        y = norm.forward(&y)?;
    }
    y.transpose(0, 1)?.unsqueeze(0)
}

impl Mlp {
    fn load(w: &dyn Weights, p: &str, cfg: &ModelConfig) -> Result<Mlp> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let names = [format!("{p}.gate_proj"), format!("{p}.up_proj")];
        Ok(Mlp {
            gate_up: w.projections(&names.each_ref().map(String::as_str), h, &[i, i], false)?,
            down: w.projection(&format!("{p}.down_proj"), i, h, false)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.down.forward(&self.gate_up.gated(x)?)
    }
}

impl Block {
    fn load(w: &dyn Weights, p: &str, cfg: &ModelConfig) -> Result<Block> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Block {
            input_norm: rms_norm(w, &format!("{p}.input_layernorm"), h, eps)?,
            attention: Attention::load(w, &format!("{p}.self_attn"), cfg)?,
            post_norm: rms_norm(w, &format!("{p}.post_attention_layernorm"), h, eps)?,
            mlp: Mlp::load(w, &format!("{p}.mlp"), cfg)?,
        })
    }
}

impl Model {
    /// Builds the model from `w` (dense tensors in its dtype on its
    /// device); RoPE tables cover `positions`.
    pub fn load(w: &dyn Weights, cfg: ModelConfig, positions: usize) -> Result<Model> {
        let (dtype, device) = (w.dtype(), w.device().clone());
        let (vocab, hidden) = (cfg.vocab_size, cfg.hidden_size);
        let embed = Embedding::new(w.tensor("model.embed_tokens.weight", (vocab, hidden).into())?, hidden);
        let blocks =
            (0..cfg.layers).map(|i| Block::load(w, &format!("model.layers.{i}"), &cfg)).collect::<Result<_>>()?;
        let norm = rms_norm(w, "model.norm", hidden, cfg.rms_norm_eps)?;
        let lm_head = if cfg.tie_word_embeddings || !w.contains("lm_head.weight") {
            w.tied_head("model.embed_tokens", embed.embeddings())?
        } else {
            w.projection("lm_head", hidden, vocab, false)?
        };
        let rope = Rope::new(&cfg, w.rope_factors()?.as_deref(), positions, dtype, &device)?;
        Ok(Model { cfg, embed, blocks, norm, lm_head, rope, dtype })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        self.embed.embeddings().device()
    }

    /// Runs `tokens` (at the cache's current end) through the model in
    /// memory-bounded chunks; returns f32 logits (rows: `Logits::All` → one per
    /// token, `Last` → one).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, logits: Logits) -> Result<Tensor> {
        let mut outputs = Vec::new();
        let mut done = 0;
        while done < tokens.len() {
            let chunk = self.chunk_len(cache.len(), tokens.len() - done);
            let is_last = done + chunk == tokens.len();
            let hidden = self.forward_chunk(&tokens[done..done + chunk], cache)?;
            if logits == Logits::All || is_last {
                let rows = if logits == Logits::All { hidden } else { hidden.narrow(0, chunk - 1, 1)? };
                outputs.push(self.lm_head.forward(&rows)?.to_dtype(DType::F32)?);
            }
            done += chunk;
        }
        Tensor::cat(&outputs, 0)
    }

    /// The longest chunk whose f32 scores for one key block (heads × chunk ×
    /// block) fit the budget.
    fn chunk_len(&self, start: usize, remaining: usize) -> usize {
        let per_query = self.cfg.heads * (start + remaining).min(KEY_BLOCK) * 4;
        (ATTENTION_BUDGET_BYTES / per_query.max(1)).clamp(1, remaining)
    }

    /// Final-normed hidden states (T, hidden) for one chunk.
    fn forward_chunk(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let ids = Tensor::new(tokens, self.device())?;
        let mut x = self.embed.forward(&ids)?;
        // Converted once per pass, not once per layer.
        let rotation = cache.rotation().map(|r| r.to_dtype(self.dtype)).transpose()?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let a = block.attention.forward(&block.input_norm.forward(&x)?, layer, cache, rotation.as_ref(), self)?;
            x = (x + a)?;
            x = (&x + block.mlp.forward(&block.post_norm.forward(&x)?)?)?;
        }
        cache.commit(tokens.len());
        self.norm.forward(&x)
    }
}
