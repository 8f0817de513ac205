//! The identifiers every layer shares (a leaf module: it uses nothing of
//! llmctl's but the exit-status trait): model names, content ids, and the
//! rules for a plain file name and a plain relative path. Each is validated once, on the way in, before
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

/// Longest plain relative path accepted (Linux's `PATH_MAX` is 4096; the hub's are shorter).
const MAX_RELATIVE_PATH: usize = 1024;

/// A `/`-separated relative path whose every part is a plain file name
/// (`Q4_K_M/model.gguf`): no `..`, no absolute or hidden parts, nothing
/// that can leave the folder it is joined to.
pub fn is_plain_relative_path(path: &str) -> bool {
    path.len() <= MAX_RELATIVE_PATH && path.split('/').all(is_plain_file_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths_stay_inside_their_folder() {
        for good in ["model.gguf", "Q8_0/Model-Q8_0-00001-of-00002.gguf", "a/b/c"] {
            assert!(is_plain_relative_path(good), "{good}");
        }
        for bad in
            ["", "/etc/passwd", "../x", "a/../b", "a/./b", "a//b", "a/", ".hidden/x", "a\\b", "a/\u{1b}x", "..", "."]
        {
            assert!(!is_plain_relative_path(bad), "{bad:?}");
        }
        assert!(!is_plain_relative_path(&"a/".repeat(600)));
    }
}
