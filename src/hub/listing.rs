//! A repository listing as the hub sends it (`/api/models/{repo}/revision/{rev}?blobs=true`),
//! and its validation into [`RepoListing`]: every name, commit id and
//! checksum is checked here, before anything downstream can use it.

use serde::Deserialize;

use super::HubError;
use super::revision::{CommitId, Revision};
use crate::ids::{Digest, GitBlobId, ModelName};

/// A file in a repository listing (or a local directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// A plain relative path inside the repository (see [`is_safe_repo_path`]).
    pub name: String,
    /// Always known for hub files; `None` for local files.
    pub size: Option<u64>,
    /// Given by the hub for LFS files only.
    pub sha256: Option<Digest>,
    /// The git blob id, for files outside LFS (whose only checksum it is).
    pub git_oid: Option<GitBlobId>,
}

impl RemoteFile {
    pub fn local(name: String) -> RemoteFile {
        RemoteFile { name, size: None, sha256: None, git_oid: None }
    }
}

/// A repository at one commit.
#[derive(Debug, Clone)]
pub struct RepoListing {
    pub commit: CommitId,
    pub files: Vec<RemoteFile>,
}

impl RepoListing {
    pub fn file(&self, name: &str) -> Option<&RemoteFile> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// The most listing JSON read: real listings of large repositories are a
/// few MB; a server sending more is not a hub.
pub(super) const MAX_LISTING_BYTES: u64 = 32 << 20;
/// Linux's limits on one path component and on a whole path.
const MAX_COMPONENT_BYTES: usize = 255;
const MAX_PATH_BYTES: usize = 1024;

#[derive(Deserialize)]
pub(super) struct RawListing {
    sha: String,
    siblings: Vec<RawSibling>,
}

#[derive(Deserialize)]
struct RawSibling {
    rfilename: String,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    size: Option<u64>,
    lfs: Option<RawLfs>,
}

#[derive(Deserialize)]
struct RawLfs {
    sha256: String,
}

impl RawListing {
    pub(super) fn validate(self, repo: &ModelName, revision: &Revision) -> Result<RepoListing, HubError> {
        let bad = |reason: String| HubError::BadListing { repo: repo.to_string(), reason };
        let commit: CommitId = self
            .sha
            .parse()
            .map_err(|()| bad(format!("commit `{}` is not a 40-digit hex id", self.sha.escape_debug())))?;
        if let Some(asked) = revision.as_commit().filter(|asked| *asked != commit) {
            return Err(bad(format!("commit {asked} was asked for, but the listing is of commit {commit}")));
        }
        // Names first: a listing that tries to leave the repository is refused for that.
        if let Some(unsafe_name) = self.siblings.iter().map(|s| &s.rfilename).find(|n| !is_safe_repo_path(n)) {
            return Err(bad(format!("file name `{}` is not a safe relative path", unsafe_name.escape_debug())));
        }
        let mut files = Vec::with_capacity(self.siblings.len());
        for sibling in self.siblings {
            files.push(sibling.validate().map_err(bad)?);
        }
        Ok(RepoListing { commit, files })
    }
}

impl RawSibling {
    fn validate(self) -> Result<RemoteFile, String> {
        let name = self.rfilename;
        let sha256 = self.lfs.map(|lfs| lfs.sha256.parse::<Digest>()).transpose().map_err(|e| e.to_string())?;
        // For LFS files the blob id hashes the pointer, not the content.
        let git_oid = match (sha256, self.blob_id) {
            (None, Some(oid)) => Some(
                oid.parse::<GitBlobId>()
                    .map_err(|_| format!("blob id `{}` of `{name}` is not a 40-digit hex id", oid.escape_debug()))?,
            ),
            _ => None,
        };
        let size = self.size.ok_or_else(|| format!("`{name}` has no size"))?;
        Ok(RemoteFile { name, size: Some(size), sha256, git_oid })
    }
}

/// A path inside a repository that is safe to name anywhere: relative,
/// `/`-separated, no empty, `.` or `..` parts, no backslashes or control
/// characters, within Linux's length limits. Dot-files and folders are
/// fine (`.gitattributes`, `onnx/model.onnx`): safe, merely not selected.
pub fn is_safe_repo_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= MAX_PATH_BYTES
        && !path.chars().any(|c| c.is_control() || c == '\\')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && part.len() <= MAX_COMPONENT_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_paths_must_stay_inside_the_repository() {
        let long = "a".repeat(256);
        for bad in
            ["../x", "/etc/passwd", "a/../../b", "a\\b", "", "a//b", "./x", "x/.", "x\u{1b}]0;pwn\u{7}", "a\0b", &long]
        {
            assert!(!is_safe_repo_path(bad), "{bad:?}");
        }
        for good in [
            "onnx/model.onnx",
            ".gitattributes",
            "README.md",
            ".github/workflows/ci.yml",
            "original/params.json",
            "mödel ü.txt",
        ] {
            assert!(is_safe_repo_path(good), "{good:?}");
        }
    }

    fn listing(json: serde_json::Value) -> Result<RepoListing, HubError> {
        let raw: RawListing = serde_json::from_value(json).unwrap();
        raw.validate(&"org/m".parse().unwrap(), &Revision::main())
    }

    #[test]
    fn a_listing_of_a_real_repository_validates_with_every_file() {
        let sha = "a".repeat(40);
        let out = listing(serde_json::json!({"sha": sha, "siblings": [
            {"rfilename": ".gitattributes", "blobId": "b".repeat(40), "size": 1519},
            {"rfilename": "model.safetensors", "blobId": "c".repeat(40), "size": 9, "lfs": {"sha256": "d".repeat(64), "size": 9, "pointerSize": 134}},
            {"rfilename": "onnx/model.onnx", "blobId": "e".repeat(40), "size": 5},
        ]}))
        .unwrap();
        assert_eq!(out.files.len(), 3);
        let weights = out.file("model.safetensors").unwrap();
        assert_eq!((weights.git_oid, weights.sha256.map(|d| d.to_string())), (None, Some("d".repeat(64))));
        assert_eq!(out.file(".gitattributes").unwrap().git_oid.unwrap().to_string(), "b".repeat(40));
    }

    #[test]
    fn a_listing_must_say_each_size_and_stay_on_the_commit_asked_for() {
        let err = listing(
            serde_json::json!({"sha": "a".repeat(40), "siblings": [{"rfilename": "x", "blobId": "b".repeat(40)}]}),
        );
        assert_eq!(err.unwrap_err().to_string(), "the hub's listing of `org/m` is unusable: `x` has no size");
        let raw: RawListing =
            serde_json::from_value(serde_json::json!({"sha": "a".repeat(40), "siblings": []})).unwrap();
        let asked: Revision = "b".repeat(40).parse().unwrap();
        let err = raw.validate(&"org/m".parse().unwrap(), &asked).unwrap_err();
        assert!(err.to_string().ends_with(&format!(
            "commit {} was asked for, but the listing is of commit {}",
            "b".repeat(40),
            "a".repeat(40)
        )));
    }
}
