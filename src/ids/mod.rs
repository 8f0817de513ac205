//! The identifiers every layer shares (a leaf module: it uses nothing of
//! llmctl's but the exit-status trait): model names, content ids, and the
//! rule for a plain file name. Each is validated once, on the way in, before
//! it can become a path or a URL.

mod digest;
mod name;

pub use digest::{Digest, DigestError, GitBlobId, GitBlobIdError, parse_hex};
pub use name::{ModelName, ReferenceError};

/// A single path component that cannot escape a directory or hide itself.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}
