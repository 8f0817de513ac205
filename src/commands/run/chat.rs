//! The interactive chat of `llmctl run MODEL` on a terminal, as Ollama's:
//! line editing and history, `/` commands, `"""` for multi-line messages,
//! Ctrl-C to stop a reply (twice at an empty prompt to leave), and a full
//! context said as such, never an end to the session.

use super::{Run, encode, report, run_once};
use crate::engine::chat::Message;
use crate::engine::generate::{GenerateError, GenerateOptions, StopReason};
use crate::exit::ExitStatus;
use crate::interrupt::InterruptGuard;
use crate::printer::Printer;
use crate::settings::RunSettings;
use crate::ui::line_editor::{Line, LineEditor};

const HELP: &str = "Available commands:
  /set parameter temperature <T>   sampling temperature for the next replies (0 = greedy)
  /set system <text>               the system prompt (starts a new conversation)
  /clear                           forget the conversation and start a new one
  /bye                             leave (so do Ctrl-D and two Ctrl-C at an empty prompt)
  /?, /help                        this list
Ctrl-C stops a reply. Begin and end a multi-line message with \"\"\".";

/// What one line of input asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Message(String),
    Help,
    Bye,
    Clear,
    SetTemperature(f64),
    SetSystem(String),
    /// A `/` word llmctl does not know.
    Unknown(String),
    /// A known command used wrongly, and how to use it.
    Usage(&'static str),
}

/// Parses a line (or a finished multi-line message). Only a leading `/`
/// followed by a known word is a command; `/etc/hosts?` as a question is
/// a message, as in Ollama only the known words are taken.
pub fn parse(text: &str) -> Command {
    let trimmed = text.trim();
    let mut words = trimmed.split_whitespace();
    let Some(first) = words.next().filter(|w| w.starts_with('/')) else { return Command::Message(text.into()) };
    match first {
        "/?" | "/help" => Command::Help,
        "/bye" | "/exit" => Command::Bye,
        "/clear" => Command::Clear,
        "/set" => parse_set(words),
        other if other[1..].chars().all(|c| c.is_ascii_alphabetic()) && !other[1..].is_empty() => {
            Command::Unknown(other.into())
        }
        _ => Command::Message(text.into()),
    }
}

fn parse_set<'a>(mut words: impl Iterator<Item = &'a str>) -> Command {
    const SET_USAGE: &str = "/set parameter temperature <T>, or /set system <text>";
    match words.next() {
        Some("system") => {
            let text: Vec<&str> = words.collect();
            if text.is_empty() { Command::Usage(SET_USAGE) } else { Command::SetSystem(text.join(" ")) }
        }
        Some("parameter") => match (words.next(), words.next().map(str::parse::<f64>)) {
            (Some("temperature"), Some(Ok(t))) if t.is_finite() && t >= 0.0 => Command::SetTemperature(t),
            (Some("temperature"), _) => Command::Usage("/set parameter temperature <T>, with T a number of 0 or more"),
            _ => Command::Usage("the parameter llmctl sets is `temperature`: /set parameter temperature <T>"),
        },
        _ => Command::Usage(SET_USAGE),
    }
}

const TRIPLE_QUOTE: &str = "\"\"\"";

/// Reads the rest of a `"""` message that began with `first`; `None` if
/// input ended or was interrupted before the closing `"""`.
fn read_multiline(editor: &mut LineEditor, first: &str) -> anyhow::Result<Option<String>> {
    let mut text = first.trim_start().trim_start_matches(TRIPLE_QUOTE).to_string();
    if let Some(done) = text.strip_suffix(TRIPLE_QUOTE) {
        return Ok(Some(done.to_string()));
    }
    loop {
        match editor.read("... ")? {
            Line::Text(line) => match line.strip_suffix(TRIPLE_QUOTE) {
                Some(last) => {
                    text.push('\n');
                    text.push_str(last);
                    return Ok(Some(text.trim_start_matches('\n').to_string()));
                }
                None => {
                    text.push('\n');
                    text.push_str(&line);
                }
            },
            Line::Interrupted | Line::End => return Ok(None),
        }
    }
}

/// The conversation so far and the settings `/set` changed.
struct Session {
    system: Option<String>,
    messages: Vec<Message>,
    options: GenerateOptions,
}

impl Session {
    fn with_system(&self) -> Vec<Message> {
        let system = self.system.iter().map(|s| Message { role: "system".into(), content: s.clone() });
        system.chain(self.messages.iter().cloned()).collect()
    }
}

/// Turn-by-turn chat until `/bye`, Ctrl-D or a second Ctrl-C.
pub fn chat_loop(
    run: &mut Run,
    settings: &RunSettings,
    options: &GenerateOptions,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let mut editor = LineEditor::new(settings.history.clone())?;
    let mut session = Session { system: settings.system.clone(), messages: Vec::new(), options: options.clone() };
    let mut interrupted = false;
    loop {
        let line = match editor.read(">>> ")? {
            Line::End => return Ok(ExitStatus::Success),
            Line::Interrupted if interrupted => return Ok(ExitStatus::Success),
            Line::Interrupted => {
                interrupted = true;
                printer.status("Use Ctrl-C again, Ctrl-D or /bye to leave.");
                continue;
            }
            Line::Text(line) => line,
        };
        interrupted = false;
        let text = match line.trim_start().starts_with(TRIPLE_QUOTE) {
            true => match read_multiline(&mut editor, &line)? {
                Some(text) => text,
                None => continue,
            },
            false => line,
        };
        if text.trim().is_empty() {
            continue;
        }
        editor.remember(&text);
        match parse(&text) {
            Command::Bye => return Ok(ExitStatus::Success),
            Command::Help => printer.status(HELP),
            Command::Clear => {
                session.messages.clear();
                printer.status("Cleared the conversation.");
            }
            Command::SetTemperature(t) => {
                session.options.sampling.temperature = t;
                printer.status(&format!("Set the temperature to {t}."));
            }
            Command::SetSystem(system) => {
                session.system = Some(system);
                session.messages.clear();
                printer.status("Set the system prompt; the conversation starts anew.");
            }
            Command::Unknown(word) => printer.warning(&format!("unknown command `{word}`; `/?` lists the commands")),
            Command::Usage(usage) => printer.warning(&format!("usage: {usage}")),
            Command::Message(message) => turn(run, settings, &mut session, message, printer)?,
        }
    }
}

/// One user message and the reply. A context too full for the message is
/// said and the message dropped; the session goes on.
fn turn(
    run: &mut Run,
    settings: &RunSettings,
    session: &mut Session,
    message: String,
    printer: &Printer,
) -> anyhow::Result<()> {
    session.messages.push(Message { role: "user".into(), content: message });
    let ids = encode(run, settings, &session.with_system(), printer)?;
    // While the reply runs, Ctrl-C only asks it to stop (`Sampled` polls the flag).
    let interrupts = InterruptGuard::install();
    let outcome = run_once(run, settings, &session.options, &ids, true, printer);
    drop(interrupts);
    let (stats, reply) = match outcome {
        Ok(done) => done,
        Err(e) => match e.downcast_ref::<GenerateError>() {
            Some(GenerateError::ContextFull(full)) => {
                session.messages.pop();
                printer.warning(&format!(
                    "the conversation no longer fits in the context ({} tokens): use /clear to start a new one, \
                     or run with a larger `--ctx-size`",
                    full.capacity
                ));
                return Ok(());
            }
            _ => return Err(e),
        },
    };
    session.messages.push(Message { role: "assistant".into(), content: reply });
    report(run, settings, &stats, printer)?;
    match stats.stop_reason {
        StopReason::ContextFull => printer.warning(&format!(
            "the reply was cut short: the context is full ({} tokens); use /clear to start a new conversation",
            run.loaded.decoder.cache_info().capacity
        )),
        StopReason::Interrupted => printer.status("(stopped)"),
        StopReason::Eos | StopReason::MaxTokens => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_slash_words_are_commands_and_the_rest_are_messages() {
        assert_eq!(parse("/bye"), Command::Bye);
        assert_eq!(parse("  /? "), Command::Help);
        assert_eq!(parse("/help"), Command::Help);
        assert_eq!(parse("/clear"), Command::Clear);
        assert_eq!(parse("/set parameter temperature 0.7"), Command::SetTemperature(0.7));
        assert_eq!(parse("/set system You are terse."), Command::SetSystem("You are terse.".into()));
        assert!(matches!(parse("/set parameter temperature -1"), Command::Usage(_)));
        assert!(matches!(parse("/set parameter top_k 3"), Command::Usage(_)));
        assert!(matches!(parse("/set"), Command::Usage(_)));
        assert_eq!(parse("/load x"), Command::Unknown("/load".into()));
        for message in ["/etc/hosts, what is it?", "hello /bye", "/ alone", "1/2"] {
            assert_eq!(parse(message), Command::Message(message.into()), "{message}");
        }
    }
}
