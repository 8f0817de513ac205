//! The Hugging Face cache as transformers and `huggingface-cli` leave it:
//! `models--{org}--{name}/` holding `blobs/`, `refs/{branch}` (a commit id)
//! and `snapshots/{commit}/` of symlinks into `blobs/`. llmctl reads it to
//! import what is already downloaded; it never writes there.

use std::path::{Path, PathBuf};

use hf_hub::Repo;

use crate::hub::CommitId;
use crate::store::reference::ModelName;

/// A snapshot folder of a cached repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedSnapshot {
    /// `snapshots/{commit}`: the model directory.
    pub dir: PathBuf,
    /// `models--{org}--{name}`: where the snapshot's links must lead.
    pub repo_dir: PathBuf,
    pub name: ModelName,
}

/// The cached snapshot `path` names: a `snapshots/{commit}` folder, or the
/// repository folder itself (then its `refs/main` picks the snapshot).
/// `None` when `path` is not laid out as a Hugging Face cache.
pub fn snapshot(path: &Path) -> Option<CachedSnapshot> {
    let path = std::path::absolute(path).ok()?;
    if let Some(name) = repo_name(&path) {
        let commit = std::fs::read_to_string(path.join("refs").join("main")).ok()?;
        let commit: CommitId = commit.trim().parse().ok()?;
        let dir = path.join("snapshots").join(commit.to_string());
        return Some(CachedSnapshot { dir, repo_dir: path, name });
    }
    let snapshots = path.parent().filter(|p| p.file_name().is_some_and(|n| n == "snapshots"))?;
    let repo_dir = snapshots.parent()?;
    let name = repo_name(repo_dir)?;
    Some(CachedSnapshot { dir: path.clone(), repo_dir: repo_dir.to_path_buf(), name })
}

/// `org/name` from a `models--org--name` folder, as hf-hub names them.
fn repo_name(dir: &Path) -> Option<ModelName> {
    let folder = dir.file_name()?.to_str()?;
    let (org, model) = folder.strip_prefix("models--")?.split_once("--")?;
    let name: ModelName = format!("{org}/{model}").parse().ok()?;
    (Repo::model(name.to_string()).folder_name() == folder).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_and_repository_folders_are_recognised_and_named() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("hub/models--HuggingFaceTB--SmolLM2-135M-Instruct");
        let commit = "12fd25f77366fa6b3b4b768ec3050bf629380bac";
        std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), commit).unwrap();
        let found = snapshot(&repo.join("snapshots").join(commit)).unwrap();
        assert_eq!(
            (found.name.as_str(), found.repo_dir.as_path()),
            ("HuggingFaceTB/SmolLM2-135M-Instruct", repo.as_path())
        );
        assert_eq!(snapshot(&repo).unwrap(), found);
        assert_eq!(snapshot(root.path()), None);
        assert_eq!(snapshot(&repo.join("snapshots")), None);
        std::fs::write(repo.join("refs/main"), "../../../etc").unwrap();
        assert_eq!(snapshot(&repo), None, "refs/main must hold a commit id");
    }
}
