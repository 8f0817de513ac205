//! The decoder (Llama, Mistral, Qwen2, Qwen3): immutable weights, memory-mapped
//! from safetensors; the KV cache is passed in, never owned.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder};

use super::attention::{KEY_BLOCK, attend};
use super::config::{Family, ModelConfig};
use super::kv_cache::{KvCache, rotate};
use super::linear::Projection;
use super::rope::Rope;

/// Bytes of attention scores one prefill chunk may hold (f32), so long
/// prompts never materialize a full T×T matrix per head.
const ATTENTION_BUDGET_BYTES: usize = 64 << 20;

struct Attention {
    q: Projection,
    k: Projection,
    v: Projection,
    o: Projection,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
}

struct Mlp {
    gate: Projection,
    up: Projection,
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

fn linear(vb: &VarBuilder, name: &str, din: usize, dout: usize, bias: bool) -> Result<Projection> {
    candle_nn::linear_b(din, dout, bias, vb.pp(name)).map(Projection::new)
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Attention> {
        let (h, d, q_out, kv_out) =
            (cfg.hidden_size, cfg.head_dim, cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim);
        let qk_norm = cfg.family == Family::Qwen3;
        let norm = |name: &str| candle_nn::rms_norm(d, cfg.rms_norm_eps, vb.pp(name));
        Ok(Attention {
            q: linear(&vb, "q_proj", h, q_out, cfg.qkv_bias)?,
            k: linear(&vb, "k_proj", h, kv_out, cfg.qkv_bias)?,
            v: linear(&vb, "v_proj", h, kv_out, cfg.qkv_bias)?,
            o: linear(&vb, "o_proj", q_out, h, false)?,
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
        let q = model.rope.apply(&per_head(x, &self.q, self.q_norm.as_ref(), cfg.heads, cfg.head_dim)?, start)?;
        let k = model.rope.apply(&per_head(x, &self.k, self.k_norm.as_ref(), cfg.kv_heads, cfg.head_dim)?, start)?;
        let v = self.v.forward(x)?.reshape((t, cfg.kv_heads, cfg.head_dim))?.transpose(0, 1)?;
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

/// Projects `x` (T, hidden) into per-head (1, heads, T, D), normed per head when asked.
fn per_head(x: &Tensor, proj: &Projection, norm: Option<&RmsNorm>, heads: usize, d: usize) -> Result<Tensor> {
    let t = x.dim(0)?;
    let mut y = proj.forward(x)?.reshape((t, heads, d))?;
    if let Some(norm) = norm {
        y = norm.forward(&y)?;
    }
    y.transpose(0, 1)?.unsqueeze(0)
}

impl Mlp {
    fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Mlp> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Mlp {
            gate: linear(&vb, "gate_proj", h, i, false)?,
            up: linear(&vb, "up_proj", h, i, false)?,
            down: linear(&vb, "down_proj", i, h, false)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.down.forward(&Projection::gated(x, &self.gate, &self.up)?)
    }
}

impl Block {
    fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Block> {
        Ok(Block {
            input_norm: candle_nn::rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            attention: Attention::load(vb.pp("self_attn"), cfg)?,
            post_norm: candle_nn::rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("post_attention_layernorm"))?,
            mlp: Mlp::load(vb.pp("mlp"), cfg)?,
        })
    }
}

impl Model {
    /// Builds the model from `vb` (weights in `dtype` on its device); RoPE
    /// tables cover `positions`.
    pub fn load(vb: VarBuilder, cfg: ModelConfig, positions: usize) -> Result<Model> {
        let (dtype, device) = (vb.dtype(), vb.device().clone());
        let embed = candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("model.embed_tokens"))?;
        let blocks =
            (0..cfg.layers).map(|i| Block::load(vb.pp(format!("model.layers.{i}")), &cfg)).collect::<Result<_>>()?;
        let norm = candle_nn::rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("model.norm"))?;
        let lm_head = if cfg.tie_word_embeddings || !vb.contains_tensor("lm_head.weight") {
            Projection::new(Linear::new(embed.embeddings().clone(), None))
        } else {
            linear(&vb, "lm_head", cfg.hidden_size, cfg.vocab_size, false)?
        };
        let rope = Rope::new(&cfg, positions, dtype, &device)?;
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
