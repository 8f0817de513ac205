//! Gemma 4's text model, as transformers 5's `Gemma4TextConfig` reads its
//! config: the global layers' shape, KV sharing, the double-wide MLP, the
//! proportional RoPE and the per-layer input embeddings.

use super::{ConfigError, KvSource, LayerSpec, PerLayerInputs, Raw, RopeScaling, RopeSpec};
use crate::formats::bounds::{MAX_HIDDEN, MAX_VOCAB};
use crate::formats::check_range;

/// transformers' defaults where a config leaves them out.
const GLOBAL_HEAD_DIM: u64 = 512;
const PER_LAYER_WIDTH: u64 = 256;
const PER_LAYER_VOCAB: u64 = 262_144;
const GLOBAL_ROPE_SHARE: f64 = 0.25;
const GLOBAL_THETA: f64 = 1_000_000.0;

/// Gives each layer its attention shape, where its keys and values come
/// from, and its MLP width. A layer's type is its window: global layers have none.
pub(super) fn layers(raw: &Raw, specs: &mut [LayerSpec], heads: usize) -> Result<(), ConfigError> {
    let n = specs.len();
    // Global layers: `per_layer_config` (transformers 5.17), else `global_head_dim` and,
    // with keys as values, `num_global_key_value_heads`.
    // transformers writes the layer numbers as sorted strings, zero-padded ("05", "11").
    let per_layer: Option<Vec<(usize, &super::LayerOverride)>> = raw
        .per_layer_config
        .as_ref()
        .map(|m| {
            m.iter()
                .map(|(k, o)| {
                    let bad =
                        || ConfigError::Gemma4(format!("`per_layer_config` names layer {k:?}, not one of 0..{n}"));
                    k.parse::<usize>().ok().filter(|&i| i < n).map(|i| (i, o)).ok_or_else(bad)
                })
                .collect()
        })
        .transpose()?;
    for (i, spec) in specs.iter_mut().enumerate() {
        let global = spec.window.is_none();
        let o = match &per_layer {
            Some(per_layer) => per_layer.iter().find(|(j, _)| *j == i).map(|(_, o)| (*o).clone()).unwrap_or_default(),
            None if global => super::LayerOverride {
                head_dim: Some(raw.global_head_dim.unwrap_or(GLOBAL_HEAD_DIM)),
                num_key_value_heads: raw.num_global_key_value_heads.filter(|_| raw.attention_k_eq_v),
            },
            None => super::LayerOverride::default(),
        };
        if let Some(d) = o.head_dim {
            let d = check_range("global_head_dim", d, MAX_HIDDEN)? as usize;
            if !d.is_multiple_of(2) {
                return Err(ConfigError::OddHeadDim(d));
            }
            spec.head_dim = d;
        }
        if let Some(k) = o.num_key_value_heads {
            let k = check_range("num_global_key_value_heads", k, heads as u64)? as usize;
            if !heads.is_multiple_of(k) {
                return Err(ConfigError::Gemma4(format!(
                    "{heads} attention heads do not divide into {k} KV heads (layer {i})"
                )));
            }
            spec.kv_heads = k;
        }
        if raw.attention_k_eq_v && global {
            spec.kv = KvSource::ValuesAreKeys;
        }
    }
    // The last `num_kv_shared_layers` layers attend to the keys and values of the
    // last earlier layer of their type, and (where asked) have an MLP twice as wide.
    let shared = match raw.num_kv_shared_layers {
        0 => 0,
        k => check_range("num_kv_shared_layers", k, n as u64)? as usize,
    };
    let first_shared = n - shared;
    for i in first_shared..n {
        let global = specs[i].window.is_none();
        let source = (0..first_shared).rev().find(|&j| (specs[j].window.is_none()) == global).ok_or_else(|| {
            let kind = if global { "full_attention" } else { "sliding_attention" };
            ConfigError::Gemma4(format!(
                "layer {i} shares the keys and values of an earlier `{kind}` layer, but none comes before layer \
                 {first_shared} (`num_kv_shared_layers` {shared})"
            ))
        })?;
        let (head_dim, kv_heads) = (specs[source].head_dim, specs[source].kv_heads);
        let spec = &mut specs[i];
        spec.kv = KvSource::SharedWith(source);
        (spec.head_dim, spec.kv_heads) = (head_dim, kv_heads);
        if raw.use_double_wide_mlp && first_shared > 0 {
            spec.intermediate_size *= 2;
        }
    }
    Ok(())
}

/// The global layers' rotary embedding: across their (wider) heads, and
/// proportional (only the leading share of pairs turns) as Gemma 4 configures it.
pub(super) fn global_rope(mut spec: RopeSpec, specs: &[LayerSpec], raw: &Raw) -> Result<RopeSpec, ConfigError> {
    if let Some(global) = specs.iter().find(|s| s.window.is_none()) {
        spec.rotary_dim = global.head_dim;
    }
    if raw.rope_parameters.is_none() {
        // transformers' default for the global layers.
        spec.theta = raw.rope_theta.unwrap_or(GLOBAL_THETA);
        spec.scaling = Some(RopeScaling {
            rope_type: Some("proportional".into()),
            partial_rotary_factor: Some(GLOBAL_ROPE_SHARE),
            ..RopeScaling::default()
        });
    }
    if let Some(s) = spec.scaling.as_ref().filter(|s| s.rope_type.as_deref() == Some("proportional")) {
        let share = s.partial_rotary_factor.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&share) {
            return Err(ConfigError::PartialRotary { share, head_dim: spec.rotary_dim });
        }
        // transformers: int(share * head_dim // 2).
        spec.rotated_pairs = Some((share * spec.rotary_dim as f64 / 2.0).floor() as usize);
    }
    Ok(spec)
}

/// The per-layer input embeddings' width (transformers' default where the key
/// is absent; none where it is `null` or 0) and vocabulary.
pub(super) fn per_layer_inputs(raw: &Raw) -> Result<Option<PerLayerInputs>, ConfigError> {
    let width = match &raw.hidden_size_per_layer_input {
        None => PER_LAYER_WIDTH,
        Some(v) if v.is_null() => return Ok(None),
        Some(v) => v.as_u64().ok_or_else(|| {
            ConfigError::Gemma4(format!("`hidden_size_per_layer_input` is {v}, not a number of values"))
        })?,
    };
    if width == 0 {
        return Ok(None);
    }
    let vocab = raw.vocab_size_per_layer_input.unwrap_or(PER_LAYER_VOCAB);
    Ok(Some(PerLayerInputs {
        width: check_range("hidden_size_per_layer_input", width, MAX_HIDDEN)? as usize,
        vocab: check_range("vocab_size_per_layer_input", vocab, MAX_VOCAB)? as usize,
    }))
}

#[cfg(test)]
mod tests {
    use crate::engine::config::{KvSource, ModelConfig};

    /// A Gemma 4 text config as the Hub's checkpoints write it (before transformers 5.17's `per_layer_config`).
    fn config(extra: &str) -> String {
        format!(
            r#"{{"model_type":"gemma4_text","hidden_size":64,"intermediate_size":48,"num_hidden_layers":5,
            "num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"max_position_embeddings":256,
            "vocab_size":128,"sliding_window":8,
            "layer_types":["sliding_attention","sliding_attention","full_attention","sliding_attention","full_attention"]
            {extra}}}"#
        )
    }

    fn parse(json: &str) -> Result<ModelConfig, String> {
        ModelConfig::parse(json.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn hub_and_transformers_5_configs_give_the_same_layers() {
        let hub = parse(&config(
            r#","global_head_dim":32,"num_global_key_value_heads":1,"attention_k_eq_v":true,"num_kv_shared_layers":2,
            "use_double_wide_mlp":true"#,
        ))
        .unwrap();
        // As transformers 5.17 writes it for 10 or more layers: the numbers zero-padded.
        let v5 = parse(&config(
            r#","per_layer_config":{"02":{"head_dim":32,"num_key_value_heads":1},"4":{"head_dim":32,"num_key_value_heads":1}},
            "attention_k_eq_v":true,"num_kv_shared_layers":2,"use_double_wide_mlp":true"#,
        ))
        .unwrap();
        assert_eq!(hub.block.layers, v5.block.layers);
        let layers = &hub.block.layers;
        let shape: Vec<_> = layers.iter().map(|l| (l.head_dim, l.kv_heads, l.kv, l.intermediate_size)).collect();
        assert_eq!(
            shape,
            [
                (16, 2, KvSource::Projected, 48),
                (16, 2, KvSource::Projected, 48),
                (32, 1, KvSource::ValuesAreKeys, 48),
                (16, 2, KvSource::SharedWith(1), 96),
                (32, 1, KvSource::SharedWith(2), 96),
            ]
        );
        // The global rotary embedding spans the global heads; a quarter of its pairs turn (the default).
        let global = &hub.block.ropes[0];
        assert_eq!((global.rotary_dim, global.rotated_pairs, global.theta), (32, Some(4), 1_000_000.0));
        assert_eq!(hub.block.ropes[1].rotary_dim, 16);
        // transformers' defaults: a global head width of 512, per-layer inputs of 256 from 262,144 tokens.
        let defaults = parse(&config("")).unwrap();
        assert_eq!(defaults.block.layers[2].head_dim, 512);
        let inputs = defaults.block.per_layer_inputs.unwrap();
        assert_eq!((inputs.width, inputs.vocab), (256, 262_144));
        assert!(parse(&config(r#","hidden_size_per_layer_input":null"#)).unwrap().block.per_layer_inputs.is_none());
    }

    #[test]
    fn what_gemma_4_cannot_be_is_named() {
        let cases = [
            (
                config(r#","num_kv_shared_layers":4"#),
                "`config.json` (gemma4): layer 2 shares the keys and values of an earlier `full_attention` layer, \
                 but none comes before layer 1 (`num_kv_shared_layers` 4)",
            ),
            (
                config(r#","num_global_key_value_heads":3,"attention_k_eq_v":true"#),
                "`config.json` (gemma4): 4 attention heads do not divide into 3 KV heads (layer 2)",
            ),
            (
                config(r#","hidden_size_per_layer_input":"wide""#),
                "`config.json` (gemma4): `hidden_size_per_layer_input` is \"wide\", not a number of values",
            ),
            (
                config(r#","use_bidirectional_attention":"all""#),
                "`config.json` sets `use_bidirectional_attention`, which llmctl does not implement",
            ),
            (
                config(r#","global_head_dim":33"#),
                "`config.json` has an odd head dimension (33); rotary embeddings need an even one",
            ),
        ];
        for (json, message) in cases {
            assert_eq!(parse(&json).unwrap_err(), message);
        }
        // Text attends causally where only images would attend both ways.
        parse(&config(r#","use_bidirectional_attention":"vision""#)).unwrap();
        // Proportional RoPE is Gemma 4's.
        let llama = r#"{"model_type":"llama","hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,
            "num_attention_heads":4,"max_position_embeddings":8,"vocab_size":8,
            "rope_scaling":{"rope_type":"proportional","partial_rotary_factor":0.25}}"#;
        assert!(parse(llama).unwrap_err().starts_with("unsupported `rope_scaling` type `proportional`"));
    }

    #[test]
    fn only_the_layers_that_own_their_keys_are_stored() {
        let cfg = parse(&config(r#","global_head_dim":32,"num_kv_shared_layers":2"#)).unwrap();
        let groups = cfg.kv_layers().unwrap();
        let shapes: Vec<_> = groups.iter().map(|g| (g.layers, g.kv_heads, g.head_dim, g.window)).collect();
        assert_eq!(shapes, [(2, 2, 16, Some(8)), (1, 2, 32, None)]);
        assert_eq!(cfg.sliding_window(), Some(crate::formats::SlidingWindow { layers: 2, window: 8 }));
        // The last layer is global whatever `layer_types` says, as in transformers.
        let last = config("").replace(r#""full_attention"]"#, r#""sliding_attention"]"#);
        assert_eq!(parse(&last).unwrap().block.layers[4].window, None);
    }
}
