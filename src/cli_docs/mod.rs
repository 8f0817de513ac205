//! Files generated from the clap definition: shell completions and man
//! pages. `tests/it/generated.rs` regenerates them and fails on drift.

pub mod completions;
pub mod man;

use std::path::Path;

/// Every generated file as (path relative to the repository root, content).
pub fn all_files() -> Vec<(String, Vec<u8>)> {
    let mut files = completions::files();
    files.extend(man::files());
    files
}

/// Writes every generated file under `root`.
pub fn write_all(root: &Path) -> std::io::Result<()> {
    for (path, content) in all_files() {
        let target = root.join(path);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(target, content)?;
    }
    Ok(())
}
