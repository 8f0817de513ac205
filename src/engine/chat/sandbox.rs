//! Rendering a chat template in a child process with resource limits.
//!
//! The `llmctl` binary calls [`enable`] at start; from then on each render
//! runs `llmctl` itself with the hidden first argument [`CHILD_ARG`]: the
//! request (template, messages, special tokens) goes in as JSON on stdin,
//! the text comes back on stdout, a template error as JSON on stderr. The
//! child limits its own data segment to [`MEMORY_LIMIT_MB`] and its CPU time
//! to [`CPU_LIMIT_S`] before it parses anything, so a template that tries
//! to build gigabytes fails an allocation there (and the child aborts),
//! not here. Only Unix has the limits; elsewhere rendering stays in-process.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::{Chat, ChatError, ChatTemplate, Message, OUTPUT_LIMIT_MB, TemplateFailure};

/// The first argument that makes `llmctl` a renderer child. Not a
/// subcommand: it is not in `--help`, completions or man pages.
pub const CHILD_ARG: &str = "__llmctl-render-chat-template";

/// The data memory (heap) the renderer child may hold, in megabytes.
pub const MEMORY_LIMIT_MB: u64 = 512;
/// The CPU time a render may take, in seconds (fuel stops loops long before).
pub const CPU_LIMIT_S: u64 = 10;

/// Exit code of a child whose template failed (the error is on its stderr).
const TEMPLATE_FAILED: i32 = 3;

static RENDERER: OnceLock<PathBuf> = OnceLock::new();

/// Renders every later template in a child process running `exe`.
pub fn enable(exe: PathBuf) {
    if cfg!(unix) {
        let _ = RENDERER.set(exe);
    }
}

/// The executable renders run in, when enabled.
pub fn renderer() -> Option<&'static Path> {
    RENDERER.get().map(PathBuf::as_path)
}

#[derive(Serialize, Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    source: Cow<'a, str>,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    #[serde(borrow)]
    bos: Cow<'a, str>,
    #[serde(borrow)]
    eos: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
enum Failure {
    Parse(String),
    Render(String),
    TooLong,
}

/// Renders in a child process and maps how it ended to a [`ChatError`].
pub fn render(exe: &Path, source: &str, chat: &Chat<'_>) -> Result<String, ChatError> {
    render_in(Command::new(exe), source, chat)
}

/// [`render`] in a child started by `command` (`llmctl` with its
/// environment, e.g. a test's `SOURCE_DATE_EPOCH`), given the hidden argument here.
pub fn render_in(mut command: Command, source: &str, chat: &Chat<'_>) -> Result<String, ChatError> {
    let exe = PathBuf::from(command.get_program());
    let request = Request {
        source: source.into(),
        messages: chat.messages.to_vec(),
        add_generation_prompt: chat.add_generation_prompt,
        bos: chat.bos.into(),
        eos: chat.eos.into(),
    };
    let request = serde_json::to_vec(&request).map_err(|e| ChatError::Sandbox(e.to_string()))?;
    let spawned = command.arg(CHILD_ARG).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = spawned.map_err(|e| ChatError::Sandbox(format!("cannot start `{}`: {e}", exe.display())))?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    // The child reads all of its input before it writes, but may die first: a failed write is not the story.
    let writer = std::thread::spawn(move || stdin.map(|mut s| s.write_all(&request)));
    let errors = std::thread::spawn(move || read_capped(stderr, 1 << 16));
    let text = read_capped(stdout, OUTPUT_LIMIT_MB * 1_000_000 + 1);
    let status = child.wait().map_err(|e| ChatError::Sandbox(e.to_string()))?;
    let _ = writer.join();
    let errors = errors.join().unwrap_or_default();
    outcome(status, text, &errors)
}

fn read_capped(from: Option<impl Read>, limit: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(from) = from {
        let _ = from.take(limit as u64).read_to_end(&mut bytes);
    }
    bytes
}

fn outcome(status: std::process::ExitStatus, text: Vec<u8>, errors: &[u8]) -> Result<String, ChatError> {
    if status.success() {
        if text.len() > OUTPUT_LIMIT_MB * 1_000_000 {
            return Err(ChatError::TooLong);
        }
        return String::from_utf8(text).map_err(|_| ChatError::Render(TemplateFailure("not UTF-8".into())));
    }
    let said = String::from_utf8_lossy(errors);
    if status.code() == Some(TEMPLATE_FAILED) {
        return Err(match serde_json::from_slice(errors) {
            Ok(Failure::Parse(e)) => ChatError::Parse(TemplateFailure(e)),
            Ok(Failure::Render(e)) => ChatError::Render(TemplateFailure(e)),
            Ok(Failure::TooLong) => ChatError::TooLong,
            Err(_) => ChatError::Sandbox(said.trim().to_string()),
        });
    }
    if said.contains("memory allocation of") || said.contains("capacity overflow") {
        return Err(ChatError::TooMuchMemory);
    }
    if killed_by(status) == Some(CPU_SIGNAL) {
        return Err(ChatError::TooSlow);
    }
    Err(ChatError::Sandbox(format!(
        "{status}{}",
        if said.trim().is_empty() { String::new() } else { format!(": {}", said.trim()) }
    )))
}

#[cfg(unix)]
const CPU_SIGNAL: i32 = libc::SIGXCPU;
#[cfg(not(unix))]
const CPU_SIGNAL: i32 = -1;

#[cfg(unix)]
fn killed_by(status: std::process::ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

#[cfg(not(unix))]
fn killed_by(_: std::process::ExitStatus) -> Option<i32> {
    None
}

/// The child's whole life: limit itself, read the request, render, answer.
pub fn child_main() -> ExitCode {
    if let Err(e) = limit_resources() {
        let _ = writeln!(io::stderr(), "cannot set resource limits: {e}");
        return ExitCode::FAILURE;
    }
    let mut input = Vec::new();
    if let Err(e) = io::stdin().read_to_end(&mut input) {
        let _ = writeln!(io::stderr(), "cannot read the request: {e}");
        return ExitCode::FAILURE;
    }
    let request = match serde_json::from_slice::<Request<'_>>(&input) {
        Ok(request) => request,
        Err(e) => {
            let _ = writeln!(io::stderr(), "the request is not valid: {e}");
            return ExitCode::FAILURE;
        }
    };
    let chat = Chat {
        messages: &request.messages,
        add_generation_prompt: request.add_generation_prompt,
        bos: &request.bos,
        eos: &request.eos,
    };
    let rendered = ChatTemplate::new(request.source.to_string()).and_then(|t| t.render_here(&chat));
    let failure = match rendered {
        Ok(text) => {
            let written = io::stdout().lock().write_all(text.as_bytes());
            return if written.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
        }
        Err(ChatError::Parse(e)) => Failure::Parse(e.0),
        Err(ChatError::Render(e)) => Failure::Render(e.0),
        Err(ChatError::TooLong) => Failure::TooLong,
        Err(other) => Failure::Render(other.to_string()),
    };
    let _ = io::stderr().write_all(&serde_json::to_vec(&failure).unwrap_or_default());
    ExitCode::from(TEMPLATE_FAILED as u8)
}

#[cfg(unix)]
fn limit_resources() -> io::Result<()> {
    let data = (MEMORY_LIMIT_MB * 1_000_000) as libc::rlim_t;
    let data = libc::rlimit { rlim_cur: data, rlim_max: data };
    // Past the soft limit the kernel sends SIGXCPU; the hard one (a second later) kills.
    let cpu = libc::rlimit { rlim_cur: CPU_LIMIT_S as libc::rlim_t, rlim_max: CPU_LIMIT_S as libc::rlim_t + 1 };
    // SAFETY: `setrlimit` only reads the structs passed and changes only this process's limits.
    let failed =
        unsafe { libc::setrlimit(libc::RLIMIT_DATA, &data) != 0 || libc::setrlimit(libc::RLIMIT_CPU, &cpu) != 0 };
    if failed { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(not(unix))]
fn limit_resources() -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renderer_that_cannot_start_is_an_error_naming_it() {
        let messages = [Message { role: "user".into(), content: "hi".into() }];
        let chat = Chat { messages: &messages, add_generation_prompt: true, bos: "", eos: "" };
        let err = render(Path::new("/nonexistent/llmctl"), "{{ 1 }}", &chat).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "llmctl's template renderer (a child process) failed: cannot start `/nonexistent/llmctl`: "
            ),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_child_that_dies_otherwise_is_reported_with_what_it_said() {
        // A shell script stands in for the child: it ignores the request, says why it stopped, exits 1.
        let script = std::env::temp_dir().join(format!("llmctl-fake-renderer-{}", std::process::id()));
        std::fs::write(&script, "#!/bin/sh\necho 'the request is not valid: x' >&2\nexit 1\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let chat = Chat { messages: &[], add_generation_prompt: true, bos: "", eos: "" };
        let err = render(&script, "{{ 1 }}", &chat).unwrap_err();
        let _ = std::fs::remove_file(&script);
        assert_eq!(
            err.to_string(),
            "llmctl's template renderer (a child process) failed: exit status: 1: the request is not valid: x"
        );
    }
}
