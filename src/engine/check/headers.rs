//! A `VarBuilder` backend over safetensors headers: it answers each tensor
//! the model asks for with a zero of the asked shape, broadcast (one
//! element allocated, whatever the shape), after checking the header has
//! that tensor, shape and a dtype candle loads, as the real loader would.

use std::collections::BTreeMap;
use std::sync::Mutex;

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::{Init, var_builder::SimpleBackend};

use crate::formats::safetensors::TensorHeader;

/// Why a tensor the model asks for does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorProblem {
    #[error("the weights have no tensor `{tensor}`, which `config.json` calls for")]
    Missing { tensor: String },
    #[error(
        "tensor `{tensor}` in `{shard}` has the wrong shape for `config.json`: expected {}, found {}",
        super::dims(expected),
        super::dims(found)
    )]
    Shape { tensor: String, shard: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor `{tensor}` in `{shard}` is stored as `{dtype}`, which candle cannot load")]
    Dtype { tensor: String, shard: String, dtype: String },
}

pub struct HeaderBackend<'a> {
    pub tensors: &'a BTreeMap<String, TensorHeader>,
    /// The first problem met: candle's error type cannot carry ours back.
    pub problem: &'a Mutex<Option<TensorProblem>>,
}

impl HeaderBackend<'_> {
    fn header(&self, name: &str) -> Result<&TensorHeader> {
        let header = self.tensors.get(name).ok_or_else(|| self.fail(TensorProblem::Missing { tensor: name.into() }))?;
        if DType::try_from(header.dtype).is_err() {
            let (tensor, shard, dtype) = (name.into(), header.shard.clone(), format!("{:?}", header.dtype));
            return Err(self.fail(TensorProblem::Dtype { tensor, shard, dtype }));
        }
        Ok(header)
    }

    fn fail(&self, problem: TensorProblem) -> candle_core::Error {
        let message = problem.to_string();
        let mut first = self.problem.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert(problem);
        candle_core::Error::Msg(message)
    }
}

/// A tensor of `shape` whose storage is one element.
fn broadcast_zero(shape: impl Into<Shape>, dtype: DType, dev: &Device) -> Result<Tensor> {
    Tensor::zeros((), dtype, dev)?.broadcast_as(shape)
}

impl SimpleBackend for HeaderBackend<'_> {
    fn get(&self, shape: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let header = self.header(name)?;
        if header.shape != shape.dims() {
            let (tensor, shard) = (name.into(), header.shard.clone());
            let problem =
                TensorProblem::Shape { tensor, shard, expected: shape.dims().to_vec(), found: header.shape.clone() };
            return Err(self.fail(problem));
        }
        broadcast_zero(shape, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        broadcast_zero(self.header(name)?.shape.clone(), dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}
