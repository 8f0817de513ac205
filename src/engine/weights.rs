//! Where a model's tensors come from, by their Hugging Face names: a
//! safetensors `VarBuilder` (memory-mapped weights, or headers only for the
//! import checks) or a GGUF file (`gguf::GgufWeights`, which maps the names
//! and keeps quantized matrices quantized). The decoder is built the same
//! way from either.

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

use super::linear::{Projection, Projections};

pub trait Weights {
    /// The dtype activations and dense tensors are computed in.
    fn dtype(&self) -> DType;
    fn device(&self) -> &Device;
    fn contains(&self, name: &str) -> bool;
    /// A dense tensor of exactly `shape`, in the compute dtype.
    fn tensor(&self, name: &str, shape: Shape) -> Result<Tensor>;
    /// A tensor of exactly `shape` as stored, in `dtype` (`U8` for packed codes).
    fn stored(&self, name: &str, shape: Shape, dtype: DType) -> Result<Tensor> {
        let _ = (shape, dtype);
        candle_core::bail!("`{name}`: this model's files hold no such tensor")
    }
    /// `{name}.weight` of shape (`dout`, `din`) and, with `bias`, `{name}.bias`.
    fn projection(&self, name: &str, din: usize, dout: usize, bias: bool) -> Result<Projection>;
    /// Several projections of the same input (`{name}.weight` of shape
    /// (`dout`, `din`) each): one each unless the source can stack them.
    fn projections(&self, names: &[&str], din: usize, douts: &[usize], bias: bool) -> Result<Projections> {
        let each = names.iter().zip(douts).map(|(name, &dout)| self.projection(name, din, dout, bias));
        Ok(Projections::Each(each.collect::<Result<_>>()?))
    }
    /// The output projection of a model whose head is its token embedding.
    fn tied_head(&self, embedding_name: &str, embeddings: &Tensor) -> Result<Projection> {
        let _ = embedding_name;
        Ok(Projection::new(Linear::new(embeddings.clone(), None)))
    }
    /// Per-frequency divisors of the rotary base (llama.cpp's `rope_freqs`,
    /// which GGUF files of Llama 3.1 carry in place of the scaling rule).
    fn rope_factors(&self) -> Result<Option<Vec<f32>>> {
        Ok(None)
    }
}

impl Weights for VarBuilder<'_> {
    fn dtype(&self) -> DType {
        VarBuilder::dtype(self)
    }

    fn device(&self) -> &Device {
        VarBuilder::device(self)
    }

    fn contains(&self, name: &str) -> bool {
        self.contains_tensor(name)
    }

    fn tensor(&self, name: &str, shape: Shape) -> Result<Tensor> {
        self.get_with_hints(shape, name, Init::Const(1.0))
    }

    fn stored(&self, name: &str, shape: Shape, dtype: DType) -> Result<Tensor> {
        self.get_with_hints_dtype(shape, name, Init::Const(0.0), dtype)
    }

    fn projection(&self, name: &str, din: usize, dout: usize, bias: bool) -> Result<Projection> {
        let weight = self.get((dout, din), &format!("{name}.weight"))?;
        let bias = if bias { Some(self.get(dout, &format!("{name}.bias"))?) } else { None };
        Ok(Projection::new(Linear::new(weight, bias)))
    }
}
