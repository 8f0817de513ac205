//! Driving `llmctl` on a pseudo-terminal (util-linux `script`), as a person
//! at a shell would: send keys, wait for what appears, read it all back.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Terminal {
    child: Child,
    keys: Arc<Mutex<Option<ChildStdin>>>,
    screen: Arc<Mutex<Vec<u8>>>,
}

/// A terminal's answer to "where is the cursor?" (`ESC [ 6 n`): row 1, column 1.
/// rustyline asks before each prompt; `script` has no emulator to answer.
const CURSOR_REPORT: &[u8] = b"\x1b[1;1R";

#[allow(dead_code)]
impl Terminal {
    /// Runs `command` (its program, arguments and environment) on a terminal.
    pub fn start(command: &Command) -> Terminal {
        let line: Vec<String> = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|a| shell_quote(a.to_str().unwrap()))
            .collect();
        let mut script = Command::new("script");
        // `exec`: the shell `script` starts becomes llmctl, so its exit code is llmctl's own.
        script.args(["-qfec", &format!("exec {}", line.join(" ")), "/dev/null"]).env_clear();
        for (key, value) in command.get_envs() {
            if let Some(value) = value {
                script.env(key, value);
            }
        }
        let mut child = script
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("util-linux `script` runs llmctl on a terminal");
        let keys = Arc::new(Mutex::new(child.stdin.take()));
        let mut out = child.stdout.take().unwrap();
        let screen = Arc::new(Mutex::new(Vec::new()));
        let (sink, answer) = (Arc::clone(&screen), Arc::clone(&keys));
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut asked = 0;
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut screen = sink.lock().unwrap();
                screen.extend_from_slice(&buf[..n]);
                let queries = screen.windows(4).filter(|w| w == b"\x1b[6n").count();
                for _ in asked..queries {
                    if let Some(stdin) = answer.lock().unwrap().as_mut() {
                        let _ = stdin.write_all(CURSOR_REPORT).and_then(|()| stdin.flush());
                    }
                }
                asked = queries;
            }
        });
        Terminal { child, keys, screen }
    }

    /// Types `keys` (escape sequences and control characters included).
    pub fn send(&mut self, keys: &str) {
        let mut stdin = self.keys.lock().unwrap();
        let stdin = stdin.as_mut().unwrap();
        stdin.write_all(keys.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Pastes `text` as a terminal does with bracketed paste on.
    pub fn paste(&mut self, text: &str) {
        self.send(&format!("\x1b[200~{text}\x1b[201~"));
    }

    /// Everything shown so far, escape sequences removed.
    pub fn screen(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(&self.screen.lock().unwrap()))
    }

    /// Waits until `text` has appeared `count` times; panics with the screen after `timeout`.
    #[track_caller]
    pub fn wait_for(&self, text: &str, count: usize, timeout: Duration) {
        let start = Instant::now();
        while self.screen().matches(text).count() < count {
            assert!(start.elapsed() < timeout, "`{text}` ×{count} did not appear; screen:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the program to end; its exit code and the whole screen.
    pub fn finish(mut self) -> (i32, String) {
        drop(self.keys.lock().unwrap().take());
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        (status.code().unwrap_or(-1), self.screen())
    }
}

fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', "'\\''"))
}

/// Removes CSI (`ESC [ … letter`) and other two-byte escape sequences.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next_if_eq(&'[').is_some() {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() || c == '~' {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}
