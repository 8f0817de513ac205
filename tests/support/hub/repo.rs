//! Repos of the test hub: revisions, the files of each commit, which files are LFS,
//! the identifiers the Hub derives from them, and the listing JSON.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The `.gitattributes` the Hub puts in every new model repo: its LFS rules.
pub const DEFAULT_GITATTRIBUTES: &str = "\
*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.bz2 filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.ftz filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.joblib filter=lfs diff=lfs merge=lfs -text
*.lfs.* filter=lfs diff=lfs merge=lfs -text
*.mlmodel filter=lfs diff=lfs merge=lfs -text
*.model filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.ot filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pb filter=lfs diff=lfs merge=lfs -text
*.pickle filter=lfs diff=lfs merge=lfs -text
*.pkl filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.rar filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
saved_model/**/* filter=lfs diff=lfs merge=lfs -text
*.tar.* filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.tflite filter=lfs diff=lfs merge=lfs -text
*.tgz filter=lfs diff=lfs merge=lfs -text
*.wasm filter=lfs diff=lfs merge=lfs -text
*.xz filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*.zst filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
";

/// Files above this size are LFS whatever `.gitattributes` says (the Hub's own
/// threshold is 10 MB; 1 MiB keeps test fixtures small).
const LFS_MIN_SIZE: usize = 1024 * 1024;
/// Stands in for the Hub's timestamps, so listings are the same on every run.
const TIMESTAMP: &str = "2024-11-25T10:00:00.000Z";

pub(super) struct Repo {
    /// The Hub's `_id` is a 24-hex database id; derived from the name, so stable.
    listing_id: String,
    /// Branch and tag names → commit id.
    refs: HashMap<String, String>,
    /// Every commit ever published, by id.
    commits: HashMap<String, Arc<Snapshot>>,
}

impl Repo {
    pub(super) fn new(repo_id: &str) -> Repo {
        Repo {
            listing_id: sha256_hex(format!("repo:{repo_id}").as_bytes())[..24].to_string(),
            refs: HashMap::new(),
            commits: HashMap::new(),
        }
    }

    /// Points `revision` at a commit of these files (adding the default files).
    pub(super) fn publish(&mut self, repo_id: &str, revision: &str, files: Vec<(String, Vec<u8>)>) {
        let snapshot = Snapshot::new(repo_id, files);
        self.refs.insert(revision.to_string(), snapshot.commit.clone());
        self.commits.insert(snapshot.commit.clone(), Arc::new(snapshot));
    }

    /// The commit a branch, tag or full commit id names.
    pub(super) fn snapshot(&self, revision: &str) -> Option<&Arc<Snapshot>> {
        let commit = self.refs.get(revision).map_or(revision, String::as_str);
        self.commits.get(commit)
    }

    /// The file `path` with this sha256 in any commit (what a CDN URL names).
    pub(super) fn lfs_object(&self, path: &str, sha256: &str) -> Option<&HubFile> {
        self.commits
            .values()
            .filter_map(|snapshot| snapshot.files.get(path))
            .find(|file| file.is_lfs() && file.sha256 == sha256)
    }

    pub(super) fn listing(&self, repo_id: &str, snapshot: &Snapshot, blobs: bool, gated: bool) -> Value {
        let siblings: Vec<Value> = snapshot.files.iter().map(|(name, file)| file.sibling(name, blobs)).collect();
        json!({
            "_id": self.listing_id,
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split('/').next(),
            "sha": snapshot.commit,
            "lastModified": TIMESTAMP,
            "createdAt": TIMESTAMP,
            "private": false,
            "gated": if gated { json!("manual") } else { json!(false) },
            "disabled": false,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        })
    }
}

/// The files of one commit.
pub(super) struct Snapshot {
    pub(super) commit: String,
    /// Sorted by name, as a git tree lists them.
    pub(super) files: BTreeMap<String, HubFile>,
}

impl Snapshot {
    fn new(repo_id: &str, files: Vec<(String, Vec<u8>)>) -> Snapshot {
        let mut contents: BTreeMap<String, Vec<u8>> = files.into_iter().collect();
        contents.entry(".gitattributes".into()).or_insert_with(|| DEFAULT_GITATTRIBUTES.as_bytes().to_vec());
        contents.entry("README.md".into()).or_insert_with(|| default_readme(repo_id).into_bytes());
        let rules = LfsRules::parse(&contents[".gitattributes"]);
        let files: BTreeMap<String, HubFile> = contents
            .into_iter()
            .map(|(name, bytes)| {
                let lfs = rules.is_lfs(&name, bytes.len());
                let file = HubFile::new(bytes, lfs);
                (name, file)
            })
            .collect();
        let mut hasher = Sha256::new();
        for (name, file) in &files {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(file.sha256.as_bytes());
        }
        Snapshot { commit: hex(&hasher.finalize())[..40].to_string(), files }
    }
}

fn default_readme(repo_id: &str) -> String {
    format!("---\nlicense: apache-2.0\n---\n\n# {repo_id}\n\nServed by llmctl's test hub.\n")
}

/// The `filter=lfs` patterns of a `.gitattributes`.
struct LfsRules(Vec<String>);

impl LfsRules {
    fn parse(gitattributes: &[u8]) -> LfsRules {
        let text = String::from_utf8_lossy(gitattributes);
        let patterns = text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let pattern = words.next()?;
                words.any(|attr| attr == "filter=lfs").then(|| pattern.to_string())
            })
            .collect();
        LfsRules(patterns)
    }

    fn is_lfs(&self, path: &str, size: usize) -> bool {
        // Always LFS, whatever the repo's rules: what llmctl downloads big.
        let weights = path.ends_with(".safetensors") || path.ends_with(".gguf");
        weights || size > LFS_MIN_SIZE || self.0.iter().any(|p| attribute_matches(p, path))
    }
}

/// git's rule: a pattern without `/` matches the file name at any depth; one with a
/// `/` matches the path from the repo root.
fn attribute_matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.strip_prefix('/').unwrap_or(pattern);
    if pattern.contains('/') {
        glob(pattern.as_bytes(), path.as_bytes())
    } else {
        let name = path.rsplit('/').next().unwrap_or(path);
        glob(pattern.as_bytes(), name.as_bytes())
    }
}

/// `*` and `?` stop at `/`; `**/` is any number of folders, `**` anything.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let after_slash = |i: usize| i == 0 || text[i - 1] == b'/';
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', b'/', rest @ ..] => (0..=text.len()).any(|i| after_slash(i) && glob(rest, &text[i..])),
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        [b'*', rest @ ..] => {
            let run = text.iter().take_while(|&&b| b != b'/').count();
            (0..=run).any(|i| glob(rest, &text[i..]))
        }
        [b'?', rest @ ..] => text.first().is_some_and(|&b| b != b'/') && glob(rest, &text[1..]),
        [c, rest @ ..] => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

pub(super) struct HubFile {
    pub(super) bytes: Arc<[u8]>,
    pub(super) sha256: String,
    blob_id: String,
    /// Size of the LFS pointer file, for LFS files.
    lfs_pointer_size: Option<usize>,
}

impl HubFile {
    fn new(bytes: Vec<u8>, lfs: bool) -> HubFile {
        let sha256 = sha256_hex(&bytes);
        // For LFS the git blob is the pointer file, so that is what blobId hashes.
        let pointer = lfs.then(|| {
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {}\n", bytes.len())
        });
        let blob_content = pointer.as_ref().map_or(&bytes[..], |p| p.as_bytes());
        HubFile {
            blob_id: git_blob_id(blob_content),
            lfs_pointer_size: pointer.map(|p| p.len()),
            sha256,
            bytes: bytes.into(),
        }
    }

    pub(super) fn is_lfs(&self) -> bool {
        self.lfs_pointer_size.is_some()
    }

    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn sibling(&self, name: &str, blobs: bool) -> Value {
        if !blobs {
            return json!({ "rfilename": name });
        }
        let mut sibling = json!({ "rfilename": name, "blobId": self.blob_id, "size": self.len() });
        if let Some(pointer_size) = self.lfs_pointer_size {
            sibling["lfs"] = json!({ "sha256": self.sha256, "size": self.len(), "pointerSize": pointer_size });
        }
        sibling
    }

    /// Headers of a `resolve` answer that serves this file itself (success or 416).
    pub(super) fn direct_headers(&self, commit: &str) -> Vec<(String, String)> {
        let mut headers = self.cdn_headers();
        headers.push(("X-Repo-Commit".into(), commit.to_string()));
        if self.is_lfs() {
            headers.push(("X-Linked-Etag".into(), format!("\"{}\"", self.sha256)));
            headers.push(("X-Linked-Size".into(), self.len().to_string()));
        }
        headers
    }

    /// Headers of the 302 that sends an LFS file to `location`.
    pub(super) fn redirect_headers(&self, commit: &str, location: String) -> Vec<(String, String)> {
        vec![
            ("Content-Type".into(), "text/plain; charset=utf-8".into()),
            ("Location".into(), location),
            ("Accept-Ranges".into(), "bytes".into()),
            ("X-Repo-Commit".into(), commit.to_string()),
            ("ETag".into(), format!("\"{}\"", self.sha256)),
            ("X-Linked-Etag".into(), format!("\"{}\"", self.sha256)),
            ("X-Linked-Size".into(), self.len().to_string()),
        ]
    }

    /// Headers of an answer with the bytes, as the CDN sends them (no Hub headers).
    pub(super) fn cdn_headers(&self) -> Vec<(String, String)> {
        let etag = if self.is_lfs() { &self.sha256 } else { &self.blob_id };
        vec![
            ("Content-Type".into(), "application/octet-stream".into()),
            ("Accept-Ranges".into(), "bytes".into()),
            ("ETag".into(), format!("\"{etag}\"")),
        ]
    }
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// git's blob id: sha1 of `"blob {len}\0"` + content.
fn git_blob_id(content: &[u8]) -> String {
    use sha1::Digest as _;
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {}\0", content.len()).as_bytes());
    hasher.update(content);
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
