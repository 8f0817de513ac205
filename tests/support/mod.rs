//! Test support: an isolated environment per test (store, HOME, hub URL,
//! no colour), transcripts of llmctl runs, and the models tests use.

#![allow(dead_code)]

pub mod hub;
pub mod llama_cpp;
pub mod models;
pub mod pty;
pub mod py_clients;
pub mod rng;
pub mod smollm2;
pub mod tiny_gguf;
pub mod tiny_reference;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// One isolated llmctl environment.
pub struct TestContext {
    pub root: TempDir,
    hub_url: Option<String>,
    extra_env: Vec<(String, String)>,
}

/// What a run printed, with machine-specific paths replaced by placeholders.
#[derive(Debug)]
pub struct Transcript {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl TestContext {
    pub fn new() -> TestContext {
        TestContext { root: tempfile::tempdir().unwrap(), hub_url: None, extra_env: Vec::new() }
    }

    pub fn with_hub(hub: &hub::TestHub) -> TestContext {
        TestContext { hub_url: Some(hub.url()), ..TestContext::new() }
    }

    pub fn env(mut self, key: &str, value: &str) -> TestContext {
        self.extra_env.push((key.into(), value.into()));
        self
    }

    pub fn store(&self) -> PathBuf {
        self.root.path().join("store")
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmctl"));
        cmd.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd.env("HOME", self.home()).env("LLMCTL_HOME", self.store()).env("NO_COLOR", "1");
        cmd.env("HF_HOME", self.home().join("hf"));
        // An unroutable endpoint unless a test hub is given: tests never reach the internet.
        cmd.env("HF_ENDPOINT", self.hub_url.as_deref().unwrap_or("http://127.0.0.1:9"));
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Transcript {
        self.transcript(self.command(args).output().unwrap())
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Transcript {
        use std::io::Write;
        let mut child =
            self.command(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        self.transcript(child.wait_with_output().unwrap())
    }

    fn transcript(&self, output: Output) -> Transcript {
        Transcript {
            code: output.status.code().unwrap_or(-1),
            stdout: self.filter(&String::from_utf8_lossy(&output.stdout)),
            stderr: self.filter(&String::from_utf8_lossy(&output.stderr)),
        }
    }

    fn filter(&self, text: &str) -> String {
        let mut text = text.replace(&self.store().display().to_string(), "[STORE]");
        text = text.replace(&self.root.path().display().to_string(), "[ROOT]");
        if let Some(url) = &self.hub_url {
            text = text.replace(url, "[HUB]");
        }
        text
    }

    /// Files under the store's `blobs/` directory.
    pub fn blob_count(&self) -> usize {
        std::fs::read_dir(self.store().join("blobs")).map(|d| d.count()).unwrap_or(0)
    }

    /// Every file under the store, as relative paths, sorted.
    pub fn store_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.store(), &self.store(), &mut out);
        out.sort();
        out
    }
}

impl TestContext {
    /// Everything in the test root outside the store, each entry with its
    /// kind and content (files by size and sha256, links by target), to
    /// compare before and after a pull: nothing there may change.
    pub fn outside_store(&self) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        describe_tree(self.root.path(), self.root.path(), &self.store(), &mut out);
        out
    }
}

fn describe_tree(base: &Path, dir: &Path, skip: &Path, out: &mut std::collections::BTreeMap<String, String>) {
    use sha2::Digest as _;
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == skip {
            continue;
        }
        let name = path.strip_prefix(base).unwrap().display().to_string();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            out.insert(name, format!("link to {}", std::fs::read_link(&path).unwrap().display()));
        } else if meta.is_dir() {
            out.insert(name, "dir".into());
            describe_tree(base, &path, skip, out);
        } else {
            let sha: String =
                sha2::Sha256::digest(std::fs::read(&path).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
            out.insert(name, format!("{} bytes, sha256 {sha}", meta.len()));
        }
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(base, &path, out);
        } else {
            out.push(path.strip_prefix(base).unwrap().display().to_string());
        }
    }
}

impl Transcript {
    /// Asserts the whole transcript, printing all of it on mismatch.
    #[track_caller]
    pub fn assert(&self, code: i32, stdout: &str, stderr: &str) {
        assert_eq!(
            (self.code, self.stdout.as_str(), self.stderr.as_str()),
            (code, stdout, stderr),
            "\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout,
            self.stderr
        );
    }

    #[track_caller]
    pub fn success(&self) -> &Transcript {
        assert_eq!(self.code, 0, "\n--- stdout ---\n{}\n--- stderr ---\n{}", self.stdout, self.stderr);
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// A store in a temporary directory with one local model imported in-process
/// (no CLI), for tests that drive the engine directly.
pub struct ImportedModel {
    pub root: tempfile::TempDir,
    pub store: llmctl::store::Store,
    pub manifest: llmctl::store::manifest::Manifest,
}

/// Imports the Hugging Face-layout directory `dir` as `name`.
pub fn import_model(dir: &Path, name: &str) -> ImportedModel {
    use llmctl::pull::{PullEvent, PullReporter, PullSource, pull};
    struct Silent;
    impl llmctl::hub::DownloadReporter for Silent {
        fn start(&self, _: &str, _: Option<u64>) -> Box<dyn llmctl::hub::DownloadProgress> {
            Box::new(Silent)
        }
    }
    // Local imports report their copying as downloads do.
    impl llmctl::hub::DownloadProgress for Silent {
        fn restart(&mut self, _: u64, _: u64) {}
        fn advance(&mut self, _: u64) {}
        fn finish(&mut self) {}
    }
    impl PullReporter for Silent {
        fn event(&self, _: PullEvent<'_>) {}
    }
    let root = tempfile::tempdir().unwrap();
    let store = llmctl::store::Store::open(&root.path().join("store")).unwrap();
    let hub =
        llmctl::hub::HubConfig { endpoint: String::new(), token: None, offline: true, resilience: Default::default() };
    let reference: llmctl::store::reference::ModelRef = name.parse().unwrap();
    pull(&store, &hub, &PullSource::Local { path: dir.to_path_buf(), reference: reference.clone() }, &Silent).unwrap();
    let manifest = store.find(&reference).unwrap();
    ImportedModel { root, store, manifest }
}
