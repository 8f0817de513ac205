//! Reading chat input on a terminal: line editing, history kept in a file,
//! Ctrl-C and Ctrl-D told apart. rustyline does the work; nothing else
//! knows it. It talks to the terminal itself (`/dev/tty`), so prompts and
//! echoed input never reach stdout, which stays the model's output.

use std::path::PathBuf;

use rustyline::config::{Behavior, Config};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{DefaultEditor, Editor};

/// What one read got.
pub enum Line {
    Text(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// Ctrl-D on an empty line, or the terminal went away.
    End,
}

pub struct LineEditor {
    editor: DefaultEditor,
    history: Option<PathBuf>,
}

/// Lines of history kept (Ollama keeps its whole file; a bound keeps the file small).
const HISTORY_LINES: usize = 1000;

impl LineEditor {
    /// An editor whose history lives in `history` (loaded now, saved after each entry).
    pub fn new(history: Option<PathBuf>) -> Result<LineEditor, ReadlineError> {
        let config =
            Config::builder().behavior(Behavior::PreferTerm).max_history_size(HISTORY_LINES)?.auto_add_history(false);
        let mut editor: Editor<(), DefaultHistory> = Editor::with_config(config.build())?;
        if let Some(path) = &history {
            // No history yet is the usual first run, not an error.
            let _ = editor.load_history(path);
        }
        Ok(LineEditor { editor, history })
    }

    pub fn read(&mut self, prompt: &str) -> Result<Line, ReadlineError> {
        match self.editor.readline(prompt) {
            Ok(text) => Ok(Line::Text(text)),
            Err(ReadlineError::Interrupted) => Ok(Line::Interrupted),
            Err(ReadlineError::Eof) => Ok(Line::End),
            Err(e) => Err(e),
        }
    }

    /// Adds an entry to the history and saves it; a history that cannot be
    /// written costs the user nothing but the history.
    pub fn remember(&mut self, entry: &str) {
        let _ = self.editor.add_history_entry(entry);
        if let Some(path) = &self.history {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = self.editor.save_history(path);
        }
    }
}
