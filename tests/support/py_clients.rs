//! The official `openai` and `ollama` Python clients, installed from PyPI
//! at pinned versions into a virtual environment cached beside the test
//! models, for tests that talk to `llmctl serve` as real clients do. Fails
//! loudly (never skips) when they cannot be installed, with pip's error.

use std::fs::{self, OpenOptions};
use std::path::PathBuf;
use std::process::Command;

/// The pinned clients; a change of pins makes a new environment.
pub const PACKAGES: [&str; 2] = ["openai==3.51.0", "ollama==0.6.3"];
/// Written last, so an environment without it is an interrupted install.
const COMPLETE: &str = ".complete";

/// The environment's Python, installing the clients on first use.
pub fn python() -> PathBuf {
    let cache = super::models::cache_dir();
    fs::create_dir_all(&cache).unwrap();
    let dir = cache.join(format!("py-clients-{}", PACKAGES.join("-").replace("==", "-")));
    let python = dir.join("bin").join("python");
    // Test binaries run in parallel: one installs, the others wait.
    let lock =
        OpenOptions::new().create(true).truncate(false).write(true).open(cache.join(".py-clients.lock")).unwrap();
    lock.lock().unwrap();
    if !dir.join(COMPLETE).is_file() {
        let _ = fs::remove_dir_all(&dir);
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir), "python3 -m venv");
        let mut pip = Command::new(&python);
        pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(PACKAGES);
        run(&mut pip, &format!("pip install {}", PACKAGES.join(" ")));
        fs::write(dir.join(COMPLETE), b"").unwrap();
    }
    python
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("`{what}` could not start: {e} (python3 is needed)"));
    assert!(
        output.status.success(),
        "`{what}` failed: the serve tests need the official clients\n--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
