//! The decoder (Llama, Mistral, Qwen2, Qwen3, Qwen3-MoE, SmolLM3, Phi-3,
//! gpt-oss, Gemma 3's and Qwen3.5's text models), one block with per-family parts
//! (Qwen3.5's linear-attention layers in `delta_net`): immutable weights, from
//! safetensors (memory-mapped) or a GGUF file (quantized matrices kept
//! quantized), see `weights`; the KV cache is passed in, never owned.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm};

use super::attention::{KEY_BLOCK, attend_with_sinks};
use super::config::{Activation, KvSource, LayerSpec, ModelConfig, MoeSpec, NormStyle, Routing};
use super::delta_net::GatedDeltaNet;
use super::kv_cache::{BlockPool, KvCache, LayerShape, rotate};
use super::linear::{Projection, Projections, activate};
use super::rope::Rope;
use super::weights::Weights;
use crate::kv_size::CacheLayout;

/// Bytes of attention scores one prefill chunk may hold (f32), so long
/// prompts never materialize a full T×T matrix per head.
const ATTENTION_BUDGET_BYTES: usize = 64 << 20;

struct Attention {
    /// Q, K and V; Q and K where values are keys; Q alone where the layer shares an earlier one's.
    qkv: Projections,
    o: Projection,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    /// Gemma 4's scale-less norm of the values.
    v_norm: Option<RmsNorm>,
    kv: KvSource,
    /// The stored layer it writes (or, sharing, reads): layers that share store nothing.
    cache_layer: usize,
    heads: usize,
    head_dim: usize,
    kv_heads: usize,
    /// Which of the model's rotary embeddings this layer applies, if any.
    rope: Option<usize>,
    /// Queries are multiplied by this so that the kernels' 1/√head_dim
    /// scale becomes the family's (Gemma's `query_pre_attn_scalar`).
    query_scale: Option<f64>,
    /// gpt-oss's sink logit per head (f32).
    sinks: Option<Tensor>,
    /// Qwen3.5: each head's query is followed by a gate on its output.
    output_gate: bool,
}

/// A gated MLP: `down(act(x · gateᵀ) * (x · upᵀ))`.
struct Mlp {
    /// Gate and up.
    gate_up: Projections,
    down: Projection,
    activation: Activation,
}

/// Routed experts: a softmax router picks `top_k` MLPs per token.
struct Experts {
    router: Projection,
    experts: Vec<Mlp>,
    spec: MoeSpec,
    /// Gemma 4's router: its input's scale (times 1/√hidden, folded in) and each expert's weight.
    gemma4: Option<Gemma4Router>,
    /// Qwen3.5-MoE: an MLP every token goes through, scaled by the sigmoid of its gate (one logit).
    shared: Option<(Mlp, Projection)>,
}

struct Gemma4Router {
    norm: RmsNorm,
    per_expert_scale: Vec<f32>,
}

enum FeedForward {
    Dense(Mlp),
    Routed(Experts),
    /// Gemma 4: experts beside the MLP, on the block's input; each output
    /// normed (MLP, experts), the experts' input normed too.
    Both {
        mlp: Mlp,
        experts: Experts,
        mlp_norm: RmsNorm,
        experts_in: RmsNorm,
        experts_out: RmsNorm,
    },
}

/// Gemma 4's per-layer input, after the MLP: `x + norm(proj(act(gate(x)) * input))`.
struct PerLayerInput {
    gate: Projection,
    projection: Projection,
    norm: RmsNorm,
}

/// What a layer mixes positions with.
enum Mixer {
    Attention(Attention),
    /// Qwen3.5's linear attention, and the stored layer that keeps its state.
    Linear(GatedDeltaNet, usize),
}

struct Block {
    input_norm: RmsNorm,
    mixer: Mixer,
    /// Llama: the norm before the MLP. Gemma: the norm of the attention's output.
    post_norm: RmsNorm,
    /// Gemma only: the norms before and after the MLP.
    feedforward_norms: Option<(RmsNorm, RmsNorm)>,
    mlp: FeedForward,
    per_layer_input: Option<PerLayerInput>,
    /// Gemma 4's `layer_scalar`.
    scalar: Option<Tensor>,
}

/// Gemma 4's per-layer input embeddings (see `PerLayerInputs`).
struct PerLayerEmbeddings {
    embed: Embedding,
    /// √width, in the compute dtype.
    scale: Tensor,
    /// From the token's embedding; its output is scaled by 1/√hidden, then normed.
    projection: Projection,
    norm: RmsNorm,
    width: usize,
}

pub struct Model {
    cfg: ModelConfig,
    embed: Embedding,
    /// Gemma multiplies embeddings by √hidden (rounded to the compute dtype, as transformers does).
    embed_scale: Option<Tensor>,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Projection,
    ropes: Vec<Rope>,
    per_layer: Option<PerLayerEmbeddings>,
    /// The shapes of the layers that store keys and values, in order.
    cache_layers: Vec<LayerShape>,
    dtype: DType,
}

/// Which positions' logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    Last,
    All,
}

/// `{name}.weight` as an RMSNorm; Gemma 3's and Qwen3.5's norms scale by `1 + w`.
fn rms_norm(w: &dyn Weights, name: &str, size: usize, cfg: &ModelConfig) -> Result<RmsNorm> {
    let weight = w.tensor(&format!("{name}.weight"), size.into())?;
    let weight = match cfg.block.norms.offset() {
        false => weight,
        true => (weight.to_dtype(DType::F32)? + 1.0)?.to_dtype(weight.dtype())?,
    };
    Ok(RmsNorm::new(weight, cfg.rms_norm_eps))
}

/// An RMSNorm without a learned scale.
fn unscaled_norm(w: &dyn Weights, size: usize, cfg: &ModelConfig) -> Result<RmsNorm> {
    Ok(RmsNorm::new(Tensor::ones(size, w.dtype(), w.device())?, cfg.rms_norm_eps))
}

impl Attention {
    fn load(w: &dyn Weights, p: &str, cfg: &ModelConfig, spec: &LayerSpec, cache_layer: usize) -> Result<Attention> {
        let (h, d) = (cfg.hidden_size, spec.head_dim);
        let (q_out, kv_out) = (cfg.heads * d, spec.kv_heads * d);
        let qk_norm = cfg.block.qk_norm;
        let own_kv = spec.stores_kv();
        let norm = |name: &str| rms_norm(w, &format!("{p}.{name}"), d, cfg);
        let gate = cfg.block.output_gate;
        let q_width = if gate { 2 * q_out } else { q_out };
        let (names, widths) = match spec.kv {
            KvSource::Projected => (vec!["q_proj", "k_proj", "v_proj"], vec![q_width, kv_out, kv_out]),
            KvSource::ValuesAreKeys => (vec!["q_proj", "k_proj"], vec![q_width, kv_out]),
            KvSource::SharedWith(_) => (vec!["q_proj"], vec![q_width]),
        };
        let names: Vec<String> = names.iter().map(|n| format!("{p}.{n}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(Attention {
            qkv: fused_or_each(w, &format!("{p}.qkv_proj"), &names, h, &widths, cfg.qkv_bias)?,
            o: w.projection(&format!("{p}.o_proj"), q_out, h, cfg.block.output_bias)?,
            q_norm: if qk_norm { Some(norm("q_norm")?) } else { None },
            k_norm: if qk_norm && own_kv { Some(norm("k_norm")?) } else { None },
            v_norm: if cfg.block.v_norm && own_kv { Some(unscaled_norm(w, d, cfg)?) } else { None },
            kv: spec.kv,
            cache_layer,
            heads: cfg.heads,
            head_dim: d,
            kv_heads: spec.kv_heads,
            rope: spec.rope,
            query_scale: cfg.block.query_pre_attn_scalar.map(|s| (d as f64 / s).sqrt()),
            sinks: if cfg.block.sinks {
                Some(w.tensor(&format!("{p}.sinks"), cfg.heads.into())?.to_dtype(DType::F32)?)
            } else {
                None
            },
            output_gate: gate,
        })
    }

    /// `pass`: the cache's rotation, and where the whole forward pass ends (LongRoPE picks its factors by it).
    fn forward(&self, x: &Tensor, cache: &mut KvCache, pass: &Pass, model: &Model) -> Result<Tensor> {
        let projected = self.project(x)?;
        let y = self.attend(&projected, cache, pass, model)?;
        self.output(y, projected.gate)
    }

    /// One decode step of several sequences: `x` (N, hidden), row `i` at the end of `caches[i]`;
    /// the projections run once over all rows, attention over each sequence's own cache.
    fn forward_rows(&self, x: &Tensor, caches: &mut [&mut KvCache], passes: &[Pass], model: &Model) -> Result<Tensor> {
        let projected = self.project(x)?;
        let mut ys = Vec::with_capacity(caches.len());
        for (i, (cache, pass)) in caches.iter_mut().zip(passes).enumerate() {
            ys.push(self.attend(&projected.row(i)?, cache, pass, model)?);
        }
        self.output(Tensor::cat(&ys, 0)?, projected.gate)
    }

    /// Queries, keys and values of `x` (T, hidden), and Qwen3.5's output gate.
    fn project(&self, x: &Tensor) -> Result<Projected> {
        let (heads, d, t) = (self.heads, self.head_dim, x.dim(0)?);
        let mut qkv = self.qkv.forward(x)?.into_iter();
        let missing = |what: &str| candle_core::Error::Msg(format!("the attention's {what} projection"));
        let q = qkv.next().ok_or_else(|| missing("query"))?;
        // Qwen3.5: each head's query, then its output gate.
        let (q, gate) = match self.output_gate {
            false => (q, None),
            true => {
                let both = q.reshape((t, heads, 2, d))?;
                (both.narrow(2, 0, 1)?.reshape((t, heads * d))?, Some(both.narrow(2, 1, 1)?.reshape((t, heads * d))?))
            }
        };
        let kv = match self.kv {
            KvSource::SharedWith(_) => None,
            KvSource::ValuesAreKeys => {
                // Keys as values: the values are the keys' projection, before the keys' norm and rotation.
                let k = qkv.next().ok_or_else(|| missing("key"))?;
                Some((k.clone(), k))
            }
            KvSource::Projected => {
                let k = qkv.next().ok_or_else(|| missing("key"))?;
                Some((k, qkv.next().ok_or_else(|| missing("value"))?))
            }
        };
        Ok(Projected { q, kv, gate })
    }

    /// Attention of projected rows at the cache's end (their keys and values stored first):
    /// (T, heads × head_dim), before the output gate.
    fn attend(&self, p: &Projected, cache: &mut KvCache, pass: &Pass, model: &Model) -> Result<Tensor> {
        let (start, t) = (cache.len(), p.q.dim(0)?);
        let (d, layer) = (self.head_dim, self.cache_layer);
        let rotation = pass.rotation(d);
        let rope = self.rope.map(|i| &model.ropes[i]);
        let q = per_head(&p.q, self.q_norm.as_ref(), self.heads, d)?;
        let q = match rope {
            Some(rope) => rope.apply(&q, start, pass.end)?,
            None => q,
        };
        let q = match self.query_scale {
            Some(scale) => (q * scale)?,
            None => q,
        };
        if let Some((k, v)) = &p.kv {
            let k = per_head(k, self.k_norm.as_ref(), self.kv_heads, d)?;
            let k = match rope {
                Some(rope) => rope.apply(&k, start, pass.end)?,
                None => k,
            };
            let v = per_head(v, self.v_norm.as_ref(), self.kv_heads, d)?;
            cache.append(layer, &k.squeeze(0)?, &v.squeeze(0)?)?;
        }
        let q = q.squeeze(0)?;
        // One new position: fused kernels where the device has them (they
        // rotate q and the output themselves); else the blockwise path.
        // (The fused kernels know no sinks.)
        let fused = if t == 1 && self.sinks.is_none() { cache.decode_attention(layer, &q, start + 1)? } else { None };
        let y = match fused {
            Some(y) => y,
            None => {
                let q = rotate(&q, rotation)?;
                let window = cache.window(layer);
                let read = |from, to| cache.read(layer, from, to, model.dtype);
                rotate(&attend_with_sinks(&q, start, window, self.sinks.as_ref(), KEY_BLOCK, read)?, rotation)?
            }
        };
        y.transpose(0, 1)?.reshape((t, self.heads * d))
    }

    fn output(&self, y: Tensor, gate: Option<Tensor>) -> Result<Tensor> {
        match gate {
            Some(gate) => self.o.forward(&(y * candle_nn::ops::sigmoid(&gate)?)?),
            None => self.o.forward(&y),
        }
    }
}

/// One attention's projections of some rows.
struct Projected {
    q: Tensor,
    /// Keys and values, unless the layer reads an earlier layer's.
    kv: Option<(Tensor, Tensor)>,
    gate: Option<Tensor>,
}

impl Projected {
    /// Row `i` alone (the gate stays with the batch: it applies after attention).
    fn row(&self, i: usize) -> Result<Projected> {
        let kv = match &self.kv {
            Some((k, v)) => Some((k.narrow(0, i, 1)?, v.narrow(0, i, 1)?)),
            None => None,
        };
        Ok(Projected { q: self.q.narrow(0, i, 1)?, kv, gate: None })
    }
}

/// Projections of one input stored as one matrix (`fused`, as Phi's
/// `qkv_proj` and `gate_up_proj`: their rows one after another), else as `names`.
fn fused_or_each(
    w: &dyn Weights,
    fused: &str,
    names: &[&str],
    din: usize,
    douts: &[usize],
    bias: bool,
) -> Result<Projections> {
    if w.contains(&format!("{fused}.weight")) {
        let projection = w.projection(fused, din, douts.iter().sum(), bias)?;
        return Ok(Projections::Stacked { projection, widths: douts.to_vec() });
    }
    w.projections(names, din, douts, bias)
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
    fn load(w: &dyn Weights, p: &str, h: usize, i: usize, activation: Activation) -> Result<Mlp> {
        let names = [format!("{p}.gate_proj"), format!("{p}.up_proj")];
        Ok(Mlp {
            gate_up: fused_or_each(
                w,
                &format!("{p}.gate_up_proj"),
                &names.each_ref().map(String::as_str),
                h,
                &[i, i],
                false,
            )?,
            down: w.projection(&format!("{p}.down_proj"), i, h, false)?,
            activation,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.down.forward(&self.gate_up.gated(x, self.activation)?)
    }
}

impl Experts {
    fn load(w: &dyn Weights, p: &str, cfg: &ModelConfig, spec: &MoeSpec) -> Result<Experts> {
        let (h, act) = (cfg.hidden_size, cfg.block.activation);
        let experts = |router, experts, shared| Experts { router, experts, spec: spec.clone(), gemma4: None, shared };
        match spec.routing {
            Routing::TopKSoftmax => {
                let router = w.projection(&format!("{p}.router"), h, spec.experts, true)?;
                Ok(experts(router, gpt_oss_experts(w, p, h, spec, act)?, None))
            }
            Routing::Gemma4 => gemma4_experts(w, p, cfg, spec),
            Routing::SoftmaxTopK { .. } => {
                let each = if w.contains(&format!("{p}.experts.gate_up_proj")) {
                    fused_experts(w, p, h, spec, act)?
                } else {
                    (0..spec.experts)
                        .map(|e| Mlp::load(w, &format!("{p}.experts.{e}"), h, spec.intermediate_size, act))
                        .collect::<Result<_>>()?
                };
                let shared = match spec.shared_expert {
                    Some(i) => Some((
                        Mlp::load(w, &format!("{p}.shared_expert"), h, i, act)?,
                        w.projection(&format!("{p}.shared_expert_gate"), h, 1, false)?,
                    )),
                    None => None,
                };
                Ok(experts(w.projection(&format!("{p}.gate"), h, spec.experts, false)?, each, shared))
            }
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let routed = self.run(x, self.route(x)?)?;
        match &self.shared {
            Some((mlp, gate)) => {
                routed + mlp.forward(x)?.broadcast_mul(&candle_nn::ops::sigmoid(&gate.forward(x)?)?)?
            }
            None => Ok(routed),
        }
    }

    /// Each token's `top_k` experts and their weights from the router's
    /// softmax (renormalized over the chosen ones where the family does), as
    /// the tokens and weights routed to each expert.
    fn route(&self, x: &Tensor) -> Result<Vec<(Vec<u32>, Vec<f32>)>> {
        let input = match &self.gemma4 {
            Some(g) => g.norm.forward(x)?,
            None => x.clone(),
        };
        let logits = self.router.forward(&input)?.to_dtype(DType::F32)?;
        let rows: Vec<Vec<f32>> = match self.spec.routing {
            Routing::SoftmaxTopK { .. } | Routing::Gemma4 => candle_nn::ops::softmax_last_dim(&logits)?.to_vec2()?,
            Routing::TopKSoftmax => logits.to_vec2()?,
        };
        let mut routed: Vec<(Vec<u32>, Vec<f32>)> = vec![(Vec::new(), Vec::new()); self.experts.len()];
        for (token, row) in rows.iter().enumerate() {
            let mut order: Vec<usize> = (0..row.len()).collect();
            // Highest first; among equals the lower index, as torch.topk's CPU kernel.
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let chosen = &order[..self.spec.top_k];
            let sum: f32 = chosen.iter().map(|&e| row[e]).sum();
            let weights: Vec<f32> = match self.spec.routing {
                Routing::SoftmaxTopK { norm_top_k } => {
                    chosen.iter().map(|&e| if norm_top_k { row[e] / sum } else { row[e] }).collect()
                }
                Routing::Gemma4 => {
                    let scale = self.gemma4.as_ref().map_or(&[][..], |g| &g.per_expert_scale);
                    chosen.iter().map(|&e| row[e] / sum * scale.get(e).copied().unwrap_or(1.0)).collect()
                }
                Routing::TopKSoftmax => {
                    let max = row[chosen[0]];
                    let exps: Vec<f32> = chosen.iter().map(|&e| (row[e] - max).exp()).collect();
                    let sum: f32 = exps.iter().sum();
                    exps.iter().map(|x| x / sum).collect()
                }
            };
            for (&e, weight) in chosen.iter().zip(weights) {
                routed[e].0.push(token as u32);
                routed[e].1.push(weight);
            }
        }
        Ok(routed)
    }

    /// Each expert once over all the tokens routed to it, weighted; experts no token chose are not read.
    fn run(&self, x: &Tensor, routed: Vec<(Vec<u32>, Vec<f32>)>) -> Result<Tensor> {
        let mut out = x.zeros_like()?;
        for (expert, (tokens, weights)) in self.experts.iter().zip(routed) {
            if tokens.is_empty() {
                continue;
            }
            let n = tokens.len();
            let index = Tensor::from_vec(tokens, n, x.device())?;
            let weights = Tensor::from_vec(weights, (n, 1), x.device())?.to_dtype(x.dtype())?;
            let y = expert.forward(&x.index_select(&index, 0)?)?.broadcast_mul(&weights)?;
            out = out.index_add(&index, &y, 0)?;
        }
        Ok(out)
    }
}

/// Gemma 4's experts as transformers stores them: `experts.gate_up_proj`
/// (experts, 2·inter, hidden: the gate's rows, then the up's) and
/// `experts.down_proj` (experts, hidden, inter), beside `router.proj`,
/// `router.scale` and `router.per_expert_scale`.
fn gemma4_experts(w: &dyn Weights, p: &str, cfg: &ModelConfig, spec: &MoeSpec) -> Result<Experts> {
    let (h, n) = (cfg.hidden_size, spec.experts);
    let experts = fused_experts(w, p, h, spec, cfg.block.activation)?;
    // The router's input: RMS-normed, times `scale` and 1/√hidden (one scale, folded into the norm's).
    let scale = w.tensor(&format!("{p}.router.scale"), h.into())?;
    let scale = (scale.to_dtype(DType::F32)? * (h as f64).powf(-0.5))?.to_dtype(w.dtype())?;
    let per_expert = w.tensor(&format!("{p}.router.per_expert_scale"), n.into())?;
    // The import check's tensors hold no data (see `gpt_oss_experts`).
    let per_expert_scale =
        if per_expert.is_contiguous() { per_expert.to_dtype(DType::F32)?.to_vec1()? } else { vec![1.0; n] };
    Ok(Experts {
        router: w.projection(&format!("{p}.router.proj"), h, n, false)?,
        experts,
        spec: spec.clone(),
        gemma4: Some(Gemma4Router { norm: RmsNorm::new(scale, cfg.rms_norm_eps), per_expert_scale }),
        shared: None,
    })
}

/// gpt-oss's experts as transformers stores them: `gate_up_proj` (experts,
/// hidden, 2·inter) with gate and up columns interleaved, `down_proj`
/// (experts, inter, hidden), each with a bias; or as OpenAI publishes them,
/// in MXFP4 blocks (`*_blocks`, `*_scales`), dequantized here. As one gated
/// MLP per expert.
fn gpt_oss_experts(w: &dyn Weights, p: &str, h: usize, spec: &MoeSpec, act: Activation) -> Result<Vec<Mlp>> {
    let (n, i) = (spec.experts, spec.intermediate_size);
    let name = |n: &str| format!("{p}.experts.{n}");
    let (gate_up, down) = if w.contains(&name("gate_up_proj_blocks")) {
        (mxfp4(w, &name("gate_up_proj"), n, 2 * i, h)?, mxfp4(w, &name("down_proj"), n, h, i)?)
    } else {
        (w.tensor(&name("gate_up_proj"), (n, h, 2 * i).into())?, w.tensor(&name("down_proj"), (n, i, h).into())?)
    };
    let gate_up_bias = w.tensor(&name("gate_up_proj_bias"), (n, 2 * i).into())?;
    let down_bias = w.tensor(&name("down_proj_bias"), (n, h).into())?;
    // The import check's tensors are zero-stride broadcasts with no data: splitting
    // them by copies would allocate the whole model, so they are split as broadcasts too.
    let checking = !gate_up.is_contiguous();
    let nothing = |shape: &[usize]| Tensor::zeros((), gate_up.dtype(), gate_up.device())?.broadcast_as(shape);
    (0..n)
        .map(|e| {
            let linear = |weight: Tensor, bias: Tensor| Projection::new(Linear::new(weight, Some(bias)));
            if checking {
                let half = || -> Result<Projection> { Ok(linear(nothing(&[i, h])?, nothing(&[i])?)) };
                let down = linear(nothing(&[h, i])?, nothing(&[h])?);
                return Ok(Mlp { gate_up: Projections::Each(vec![half()?, half()?]), down, activation: act });
            }
            // Column 2j is gate j, column 2j+1 up j.
            let pairs = gate_up.get(e)?.reshape((h, i, 2))?;
            let biases = gate_up_bias.get(e)?.reshape((i, 2))?;
            let half = |k: usize| -> Result<Projection> {
                let weight = pairs.narrow(2, k, 1)?.squeeze(2)?.t()?.contiguous()?;
                Ok(linear(weight, biases.narrow(1, k, 1)?.squeeze(1)?.contiguous()?))
            };
            let down = linear(down.get(e)?.t()?.contiguous()?, down_bias.get(e)?.contiguous()?);
            Ok(Mlp { gate_up: Projections::Each(vec![half(0)?, half(1)?]), down, activation: act })
        })
        .collect()
}

/// Experts as transformers 5 holds them in memory (and a checkpoint saved
/// without its conversion mapping carries them): `experts.gate_up_proj`
/// (experts, 2·inter, hidden), each expert's gate rows then its up rows, and
/// `experts.down_proj` (experts, hidden, inter). As one gated MLP per expert.
fn fused_experts(w: &dyn Weights, p: &str, h: usize, spec: &MoeSpec, act: Activation) -> Result<Vec<Mlp>> {
    let (n, i) = (spec.experts, spec.intermediate_size);
    let gate_up = w.tensor(&format!("{p}.experts.gate_up_proj"), (n, 2 * i, h).into())?;
    let down = w.tensor(&format!("{p}.experts.down_proj"), (n, h, i).into())?;
    // The import check's data-less broadcasts stay views (see `gpt_oss_experts`).
    let checking = !gate_up.is_contiguous();
    let own = |t: Tensor| -> Result<Projection> {
        let t = if checking { t } else { t.contiguous()? };
        Ok(Projection::new(Linear::new(t, None)))
    };
    (0..n)
        .map(|e| {
            let rows = gate_up.get(e)?;
            let gate_up = Projections::Each(vec![own(rows.narrow(0, 0, i)?)?, own(rows.narrow(0, i, i)?)?]);
            Ok(Mlp { gate_up, down: own(down.get(e)?)?, activation: act })
        })
        .collect()
}

/// The values of MXFP4 (OCP Microscaling) codes, by their four bits: E2M1.
const FP4: [f32; 16] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0];

/// `{name}_blocks` (experts, rows, cols/32, 16): two FP4 codes a byte, low
/// nibble first, and `{name}_scales` (experts, rows, cols/32): each block's
/// E8M0 exponent (2^(e−127)); as (experts, cols, rows) in the compute dtype,
/// transformers' layout of the dequantized experts.
fn mxfp4(w: &dyn Weights, name: &str, experts: usize, rows: usize, cols: usize) -> Result<Tensor> {
    if !cols.is_multiple_of(32) {
        candle_core::bail!("`{name}_blocks`: {cols} columns are not whole MXFP4 blocks of 32");
    }
    let groups = cols / 32;
    let blocks = w.stored(&format!("{name}_blocks"), (experts, rows, groups, 16).into(), DType::U8)?;
    let scales = w.stored(&format!("{name}_scales"), (experts, rows, groups).into(), DType::U8)?;
    let (dtype, device) = (w.dtype(), w.device());
    if !blocks.is_contiguous() {
        // The import check's data-less tensors (see `gpt_oss_experts`).
        return Tensor::zeros((), dtype, device)?.broadcast_as((experts, cols, rows));
    }
    let codes: Vec<u8> = blocks.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?;
    let exponents: Vec<u8> = scales.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?;
    let mut values = vec![0f32; codes.len() * 2];
    for (block, (&e, out)) in codes.chunks(16).zip(exponents.iter().zip(values.chunks_mut(32))) {
        let scale = 2f64.powi(i32::from(e) - 127) as f32;
        for (k, &byte) in block.iter().enumerate() {
            out[2 * k] = FP4[usize::from(byte & 0x0F)] * scale;
            out[2 * k + 1] = FP4[usize::from(byte >> 4)] * scale;
        }
    }
    Tensor::from_vec(values, (experts, rows, cols), &Device::Cpu)?
        .transpose(1, 2)?
        .contiguous()?
        .to_dtype(dtype)?
        .to_device(device)
}

impl FeedForward {
    /// `x`: the MLP's normed input; `block_input`: the block's (Gemma 4's experts route it).
    fn forward(&self, x: &Tensor, block_input: &Tensor) -> Result<Tensor> {
        match self {
            FeedForward::Dense(mlp) => mlp.forward(x),
            FeedForward::Routed(experts) => experts.forward(x),
            FeedForward::Both { mlp, experts, mlp_norm, experts_in, experts_out } => {
                let dense = mlp_norm.forward(&mlp.forward(x)?)?;
                let routed = experts.run(&experts_in.forward(block_input)?, experts.route(block_input)?)?;
                dense + experts_out.forward(&routed)?
            }
        }
    }
}

impl Block {
    fn load(w: &dyn Weights, p: &str, cfg: &ModelConfig, spec: &LayerSpec, cache_layer: usize) -> Result<Block> {
        let h = cfg.hidden_size;
        let norm = |name: &str| rms_norm(w, &format!("{p}.{name}"), h, cfg);
        let dense = || Mlp::load(w, &format!("{p}.mlp"), h, spec.intermediate_size, cfg.block.activation);
        let mlp = match cfg.block.moe.as_ref().filter(|_| spec.moe) {
            Some(moe) if moe.routing == Routing::Gemma4 => FeedForward::Both {
                mlp: dense()?,
                experts: Experts::load(w, p, cfg, moe)?,
                mlp_norm: norm("post_feedforward_layernorm_1")?,
                experts_in: norm("pre_feedforward_layernorm_2")?,
                experts_out: norm("post_feedforward_layernorm_2")?,
            },
            Some(moe) => FeedForward::Routed(Experts::load(w, &format!("{p}.mlp"), cfg, moe)?),
            None => FeedForward::Dense(dense()?),
        };
        let feedforward_norms = match cfg.block.norms {
            NormStyle::Llama | NormStyle::OffsetLlama => None,
            NormStyle::Gemma { .. } => Some((norm("pre_feedforward_layernorm")?, norm("post_feedforward_layernorm")?)),
        };
        let per_layer_input = match cfg.block.per_layer_inputs {
            Some(inputs) => Some(PerLayerInput {
                gate: w.projection(&format!("{p}.per_layer_input_gate"), h, inputs.width, false)?,
                projection: w.projection(&format!("{p}.per_layer_projection"), inputs.width, h, false)?,
                norm: norm("post_per_layer_input_norm")?,
            }),
            None => None,
        };
        let scalar =
            if cfg.block.layer_scalar { Some(w.tensor(&format!("{p}.layer_scalar"), 1.into())?) } else { None };
        let mixer = match cfg.block.linear.filter(|_| spec.linear) {
            Some(linear) => {
                Mixer::Linear(GatedDeltaNet::load(w, &format!("{p}.linear_attn"), cfg, linear)?, cache_layer)
            }
            None => Mixer::Attention(Attention::load(w, &format!("{p}.self_attn"), cfg, spec, cache_layer)?),
        };
        Ok(Block {
            input_norm: norm("input_layernorm")?,
            mixer,
            post_norm: norm("post_attention_layernorm")?,
            feedforward_norms,
            mlp,
            per_layer_input,
            scalar,
        })
    }

    /// `per_layer`: this layer's slice of Gemma 4's per-layer inputs (T, width).
    fn forward(
        &self,
        x: &Tensor,
        per_layer: Option<&Tensor>,
        cache: &mut KvCache,
        pass: &Pass,
        model: &Model,
    ) -> Result<Tensor> {
        let normed = self.input_norm.forward(x)?;
        let a = match &self.mixer {
            Mixer::Attention(attention) => attention.forward(&normed, cache, pass, model)?,
            Mixer::Linear(linear, layer) => linear.forward(&normed, *layer, cache)?,
        };
        self.feed_forward(x, &a, per_layer, model)
    }

    /// One decode step of several sequences (see `Model::decode_rows`): row `i` of `x` at the end of `caches[i]`.
    fn forward_rows(
        &self,
        x: &Tensor,
        per_layer: Option<&Tensor>,
        caches: &mut [&mut KvCache],
        passes: &[Pass],
        model: &Model,
    ) -> Result<Tensor> {
        let normed = self.input_norm.forward(x)?;
        let a = match &self.mixer {
            Mixer::Attention(attention) => attention.forward_rows(&normed, caches, passes, model)?,
            Mixer::Linear(linear, layer) => {
                // Each sequence's recurrent state advances by its own row.
                let rows = caches
                    .iter_mut()
                    .enumerate()
                    .map(|(i, cache)| linear.forward(&normed.narrow(0, i, 1)?, *layer, cache))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&rows, 0)?
            }
        };
        self.feed_forward(x, &a, per_layer, model)
    }

    /// The rest of the block after its mixer's output `a`, row by row.
    fn feed_forward(&self, x: &Tensor, a: &Tensor, per_layer: Option<&Tensor>, model: &Model) -> Result<Tensor> {
        let x = match &self.feedforward_norms {
            None => {
                let x = (x + a)?;
                (&x + self.mlp.forward(&self.post_norm.forward(&x)?, &x)?)?
            }
            Some((pre, post)) => {
                let x = (x + self.post_norm.forward(a)?)?;
                (&x + post.forward(&self.mlp.forward(&pre.forward(&x)?, &x)?)?)?
            }
        };
        let x = match (&self.per_layer_input, per_layer) {
            (Some(p), Some(input)) => {
                let gated = (activate(&p.gate.forward(&x)?, model.cfg.block.activation)? * input)?;
                (&x + p.norm.forward(&p.projection.forward(&gated)?)?)?
            }
            _ => x,
        };
        match &self.scalar {
            Some(scalar) => x.broadcast_mul(scalar),
            None => Ok(x),
        }
    }
}

/// What every layer of one chunk shares.
struct Pass {
    /// The cache's rotation per head width, in the compute dtype (see `KvCache::rotation`), converted once per pass.
    rotations: Vec<(usize, Tensor)>,
    /// The position the whole forward call ends at.
    end: usize,
}

impl Pass {
    fn rotation(&self, head_dim: usize) -> Option<&Tensor> {
        self.rotations.iter().find(|(d, _)| *d == head_dim).map(|(_, r)| r)
    }
}

impl Model {
    /// One decode step of several sequences at once: `tokens[i]` at the end
    /// of `caches[i]` (each its own length and scheme). Every projection and
    /// MLP runs once over all the rows; attention (and a recurrent layer's
    /// state) over each sequence's own cache. f32 logits, (N, vocab).
    pub fn decode_rows(&self, tokens: &[u32], caches: &mut [&mut KvCache]) -> Result<Tensor> {
        if tokens.len() != caches.len() || tokens.is_empty() {
            candle_core::bail!("{} tokens for {} caches", tokens.len(), caches.len());
        }
        for cache in caches.iter() {
            cache.check_room(1).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        }
        let (mut x, per_layer) = self.embed(tokens)?;
        let passes = caches.iter().map(|c| self.pass(c, c.len() + 1)).collect::<Result<Vec<_>>>()?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let input = layer_input(per_layer.as_ref(), layer)?;
            x = block.forward_rows(&x, input.as_ref(), caches, &passes, self)?;
        }
        for cache in caches.iter_mut() {
            cache.commit(1)?;
        }
        self.soft_capped(self.lm_head.forward(&self.norm.forward(&x)?)?.to_dtype(DType::F32)?)
    }

    /// The tokens' embeddings (T, hidden), scaled where the family scales
    /// them, and Gemma 4's per-layer inputs (T, layers, width).
    fn embed(&self, tokens: &[u32]) -> Result<(Tensor, Option<Tensor>)> {
        let ids = Tensor::new(tokens, self.device())?;
        let mut x = self.embed.forward(&ids)?;
        if let Some(scale) = &self.embed_scale {
            x = x.broadcast_mul(scale)?;
        }
        let per_layer = self.per_layer.as_ref().map(|p| p.inputs(&ids, &x, self.cfg.layers)).transpose()?;
        Ok((x, per_layer))
    }

    /// What every layer of a pass over `cache` ending at `end` shares: the
    /// cache's rotations, converted once per pass, not once per layer.
    fn pass(&self, cache: &KvCache, end: usize) -> Result<Pass> {
        let mut rotations = Vec::new();
        for (layer, shape) in self.cache_layers.iter().enumerate() {
            if let Some(r) = cache.rotation_of(layer)
                && !rotations.iter().any(|(d, _)| *d == shape.head_dim)
            {
                rotations.push((shape.head_dim, r.to_dtype(self.dtype)?));
            }
        }
        Ok(Pass { rotations, end })
    }
}

/// Layer `layer`'s slice (T, width) of the per-layer inputs.
fn layer_input(per_layer: Option<&Tensor>, layer: usize) -> Result<Option<Tensor>> {
    per_layer.map(|p| p.narrow(1, layer, 1)?.squeeze(1)).transpose()
}

impl PerLayerEmbeddings {
    /// (T, layers, width): `(norm(proj(x) / √hidden) + embed(ids) · √width) / √2`, `x` the scaled token embeddings.
    fn inputs(&self, ids: &Tensor, x: &Tensor, layers: usize) -> Result<Tensor> {
        let t = ids.dim(0)?;
        let tokens = self.embed.forward(ids)?.broadcast_mul(&self.scale)?.reshape((t, layers, self.width))?;
        let hidden = x.dim(1)? as f64;
        let projected = (self.projection.forward(x)? * hidden.powf(-0.5))?.reshape((t, layers, self.width))?;
        (self.norm.forward(&projected)? + tokens)? * 0.5f64.sqrt()
    }
}

/// Where the text model's tensors are: `model.*` and `lm_head`, or inside an
/// image-text checkpoint under either name transformers has written.
fn text_prefix(w: &dyn Weights, cfg: &ModelConfig) -> (&'static str, &'static str) {
    if !cfg.block.multimodal {
        return ("model", "lm_head");
    }
    if w.contains("model.language_model.embed_tokens.weight") {
        ("model.language_model", "lm_head")
    } else {
        ("language_model.model", "language_model.lm_head")
    }
}

impl Model {
    /// Builds the model from `w` (dense tensors in its dtype on its
    /// device); RoPE tables cover `positions`.
    pub fn load(w: &dyn Weights, cfg: ModelConfig, positions: usize) -> Result<Model> {
        let (dtype, device) = (w.dtype(), w.device().clone());
        let (vocab, hidden) = (cfg.vocab_size, cfg.hidden_size);
        let (prefix, head) = text_prefix(w, &cfg);
        let embed_name = format!("{prefix}.embed_tokens");
        let embed = Embedding::new(w.tensor(&format!("{embed_name}.weight"), (vocab, hidden).into())?, hidden);
        // Layers that share an earlier layer's keys and values store none: the
        // stored layers are numbered among themselves.
        let mut cache_layers = Vec::new();
        let mut cache_index = Vec::with_capacity(cfg.layers);
        for spec in &cfg.block.layers {
            cache_index.push(match spec.kv {
                KvSource::SharedWith(source) => cache_index.get(source).copied().ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "a layer shares the keys of layer {source}, which is not before it"
                    ))
                })?,
                _ => {
                    // A recurrent layer keeps its state in place of KV rows.
                    let recurrent = cfg.block.linear.filter(|_| spec.linear).map(|s| GatedDeltaNet::state_shape(&s));
                    let (kv_heads, head_dim, window) = (spec.kv_heads, spec.head_dim, spec.window);
                    cache_layers.push(LayerShape { kv_heads, head_dim, window, recurrent });
                    cache_layers.len() - 1
                }
            });
        }
        let blocks = cfg
            .block
            .layers
            .iter()
            .enumerate()
            .map(|(i, spec)| Block::load(w, &format!("{prefix}.layers.{i}"), &cfg, spec, cache_index[i]))
            .collect::<Result<_>>()?;
        let norm = rms_norm(w, &format!("{prefix}.norm"), hidden, &cfg)?;
        let lm_head = if cfg.tie_word_embeddings || !w.contains(&format!("{head}.weight")) {
            w.tied_head(&embed_name, embed.embeddings())?
        } else {
            w.projection(head, hidden, vocab, false)?
        };
        // A GGUF file's `rope_freqs` belong to the (only) global embedding.
        let factors = w.rope_factors()?;
        let ropes = cfg
            .block
            .ropes
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let factors = if i == 0 { factors.as_deref() } else { None };
                Rope::new(spec, factors, positions, dtype, &device)
            })
            .collect::<Result<_>>()?;
        let embed_scale = match cfg.block.norms {
            NormStyle::Llama | NormStyle::OffsetLlama => None,
            NormStyle::Gemma { .. } => Some(Tensor::new(&[(hidden as f32).sqrt()], &device)?.to_dtype(dtype)?),
        };
        let per_layer = match cfg.block.per_layer_inputs {
            Some(inputs) => {
                let all = cfg.layers * inputs.width;
                let table = w.tensor(&format!("{prefix}.embed_tokens_per_layer.weight"), (inputs.vocab, all).into())?;
                Some(PerLayerEmbeddings {
                    embed: Embedding::new(table, all),
                    scale: Tensor::new(&[(inputs.width as f32).sqrt()], &device)?.to_dtype(dtype)?,
                    projection: w.projection(&format!("{prefix}.per_layer_model_projection"), hidden, all, false)?,
                    norm: rms_norm(w, &format!("{prefix}.per_layer_projection_norm"), inputs.width, &cfg)?,
                    width: inputs.width,
                })
            }
            None => None,
        };
        Ok(Model { cfg, embed, embed_scale, blocks, norm, lm_head, ropes, per_layer, cache_layers, dtype })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// A cache of `capacity` positions for this model, in `layout` (dense
    /// rows in `dtype`); sliding-window layers hold only their window,
    /// linear-attention layers only their recurrent state.
    pub fn new_cache(&self, layout: CacheLayout, capacity: usize, dtype: DType) -> Result<KvCache> {
        KvCache::layered(layout, &self.cache_layers, capacity, dtype, self.device())
    }

    /// A pool of `blocks` KV blocks for sequences of up to `context` positions.
    pub fn block_pool(&self, layout: CacheLayout, context: usize, blocks: usize, dtype: DType) -> Result<BlockPool> {
        BlockPool::new(layout, &self.cache_layers, context, blocks, dtype, self.device())
    }

    /// Bytes one block of such a pool takes.
    pub fn block_bytes(&self, layout: CacheLayout, context: usize) -> u64 {
        BlockPool::block_bytes(layout, &self.cache_layers, context)
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
        let end = cache.len() + tokens.len();
        while done < tokens.len() {
            let chunk = self.chunk_len(cache.len(), tokens.len() - done);
            let is_last = done + chunk == tokens.len();
            let hidden = self.forward_chunk(&tokens[done..done + chunk], cache, end)?;
            if logits == Logits::All || is_last {
                let rows = if logits == Logits::All { hidden } else { hidden.narrow(0, chunk - 1, 1)? };
                outputs.push(self.soft_capped(self.lm_head.forward(&rows)?.to_dtype(DType::F32)?)?);
            }
            done += chunk;
        }
        Tensor::cat(&outputs, 0)
    }

    /// `cap · tanh(logits / cap)` where the family caps its logits.
    fn soft_capped(&self, logits: Tensor) -> Result<Tensor> {
        match self.cfg.block.final_logit_softcapping {
            Some(cap) => (logits / cap)?.tanh()? * cap,
            None => Ok(logits),
        }
    }

    /// The longest chunk whose f32 scores for one key block (heads × chunk ×
    /// block) fit the budget.
    fn chunk_len(&self, start: usize, remaining: usize) -> usize {
        let per_query = self.cfg.heads * (start + remaining).min(KEY_BLOCK) * 4;
        (ATTENTION_BUDGET_BYTES / per_query.max(1)).clamp(1, remaining)
    }

    /// Final-normed hidden states (T, hidden) for one chunk.
    fn forward_chunk(&self, tokens: &[u32], cache: &mut KvCache, end: usize) -> Result<Tensor> {
        let (mut x, per_layer) = self.embed(tokens)?;
        let pass = self.pass(cache, end)?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let input = layer_input(per_layer.as_ref(), layer)?;
            x = block.forward(&x, input.as_ref(), cache, &pass, self)?;
        }
        cache.commit(tokens.len())?;
        self.norm.forward(&x)
    }
}
