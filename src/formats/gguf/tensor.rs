//! One tensor's description from the header, and its size in bytes.

use super::*;

/// One tensor's description from the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// As stored: fastest-varying dimension first.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Relative to [`GgufHeader::data_offset`].
    pub offset: u64,
}

impl TensorInfo {
    /// Product of the dimensions, saturating at `u64::MAX`; never saturates for
    /// tensors from [`read_header`], which rejects overflowing ones.
    pub fn element_count(&self) -> u64 {
        self.checked_element_count().unwrap_or(u64::MAX)
    }

    fn checked_element_count(&self) -> Option<u64> {
        self.dims.iter().try_fold(1_u64, |acc, &dim| acc.checked_mul(dim))
    }

    /// Bytes of data: whole blocks along the first dimension, as ggml stores rows.
    ///
    /// # Errors
    /// An unknown type, a first dimension that is not whole blocks, or a size
    /// that overflows `u64`.
    pub fn byte_size(&self) -> Result<u64, GgufError> {
        let (type_name, block, type_size) = self
            .ggml_type
            .traits()
            .ok_or_else(|| GgufError::UnknownTensorType { tensor: self.name.clone(), type_id: self.ggml_type.0 })?;
        let too_large = || GgufError::TensorTooLarge { tensor: self.name.clone() };
        let count = self.checked_element_count().ok_or_else(too_large)?;
        let row_len = self.dims.first().copied().unwrap_or(1);
        if !row_len.is_multiple_of(block) {
            let tensor = self.name.clone();
            return Err(GgufError::PartialBlock { tensor, type_name, row_len, block_size: block });
        }
        (count / block).checked_mul(type_size).ok_or_else(too_large)
    }

    /// The data's byte range relative to `data_offset`, once checked to be
    /// aligned and inside the file.
    pub(super) fn data_span(&self, data_offset: u64, alignment: u64, file_len: u64) -> Result<(u64, u64), GgufError> {
        let size = self.byte_size()?;
        if !self.offset.is_multiple_of(alignment) {
            let tensor = self.name.clone();
            return Err(GgufError::MisalignedTensor { tensor, offset: self.offset, alignment });
        }
        let end = data_offset.checked_add(self.offset).and_then(|start| start.checked_add(size));
        match end {
            Some(end) if end <= file_len => Ok((self.offset, end - data_offset)),
            _ => Err(GgufError::TensorOutOfBounds { tensor: self.name.clone(), offset: self.offset, size, file_len }),
        }
    }
}
