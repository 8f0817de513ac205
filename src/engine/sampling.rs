//! Choosing the next token: greedy at temperature 0, else temperature,
//! top-k and top-p over a seeded generator (same seed, same output).

use candle_core::{Result, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
}

impl SamplingParams {
    pub fn greedy() -> SamplingParams {
        SamplingParams { temperature: 0.0, top_k: None, top_p: None, seed: 0 }
    }
}

pub struct Sampler {
    params: SamplingParams,
    state: u64,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let state = params.seed;
        Sampler { params, state }
    }

    /// The next token for a row of f32 logits.
    pub fn sample(&mut self, logits: &Tensor) -> Result<u32> {
        let logits: Vec<f32> = logits.flatten_all()?.to_vec1()?;
        if self.params.temperature <= 0.0 {
            return Ok(argmax(&logits));
        }
        let candidates = self.candidates(&logits);
        let u = self.next_unit();
        let mut acc = 0.0;
        for &(id, p) in &candidates {
            acc += p;
            if u < acc {
                return Ok(id);
            }
        }
        Ok(candidates.last().map_or(0, |c| c.0))
    }

    /// (id, probability) after temperature, top-k and top-p, renormalized, most likely first.
    fn candidates(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        let t = self.params.temperature;
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut probs: Vec<(u32, f64)> =
            logits.iter().enumerate().map(|(i, &l)| (i as u32, ((l as f64 - max) / t).exp())).collect();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(k) = self.params.top_k.filter(|&k| k > 0) {
            probs.truncate(k);
        }
        normalize(&mut probs);
        if let Some(p) = self.params.top_p.filter(|&p| p < 1.0) {
            let mut acc = 0.0;
            let keep = probs
                .iter()
                .take_while(|c| {
                    let before = acc;
                    acc += c.1;
                    before < p
                })
                .count();
            probs.truncate(keep.max(1));
            normalize(&mut probs);
        }
        probs
    }

    /// SplitMix64 → uniform in [0, 1).
    fn next_unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn normalize(probs: &mut [(u32, f64)]) {
    let z: f64 = probs.iter().map(|p| p.1).sum();
    probs.iter_mut().for_each(|p| p.1 /= z);
}

/// Index of the largest logit; the first one on ties, as `torch.argmax` does.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn logits() -> Tensor {
        Tensor::new(&[1.0f32, 3.0, 2.0, 3.0, -1.0], &Device::Cpu).unwrap()
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(Sampler::new(SamplingParams::greedy()).sample(&logits()).unwrap(), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_filters_hold() {
        let params = SamplingParams { temperature: 1.0, top_k: Some(3), top_p: None, seed: 42 };
        let draw = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone());
            (0..50).map(|_| s.sample(&logits()).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(draw(&params), draw(&params));
        assert!(draw(&params).iter().all(|id| [1, 2, 3].contains(id)), "top-k keeps the three best");
        let nucleus = SamplingParams { top_k: None, top_p: Some(0.5), ..params };
        assert!(draw(&nucleus).iter().all(|id| *id == 1 || *id == 3), "top-p 0.5 keeps the two tied best");
    }
}
