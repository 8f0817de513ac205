//! Man pages (`man/llmctl.1` and `man/llmctl-<sub>.1`): clap_mangen's
//! sections, a synopsis of our own (with value names), and ENVIRONMENT,
//! FILES, EXIT STATUS, EXAMPLES and SEE ALSO from the tables that own them
//! (`env_vars::ALL`, `store::LAYOUT`, `ExitStatus::ALL`, [`EXAMPLES`]).
//! The `code` spans of help text become bold here, for man output only.

use clap_mangen::Man;

use crate::env_vars;
use crate::exit::ExitStatus;

/// (subcommand, command line, what it does): README's "Commands" examples.
const EXAMPLES: &[(&str, &str, &str)] = &[
    ("pull", "llmctl pull HuggingFaceTB/SmolLM2-135M-Instruct", "a safetensors repository"),
    ("pull", "llmctl pull HuggingFaceTB/SmolLM2-135M-Instruct:kv_fp8", "the same, and record the kv_fp8 tag"),
    ("pull", "llmctl pull bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M", "one GGUF file, by type"),
    ("pull", "llmctl pull org/model --revision v1.0", "a branch, tag or commit (default main)"),
    ("pull", "llmctl pull ~/.cache/huggingface/hub/models--org--model", "what transformers already downloaded"),
    ("pull", "llmctl pull ./my-model-dir --name me/my-model", "import a local Hugging Face layout directory"),
    ("pull", "llmctl pull ./SmolLM2-135M-Instruct.Q4_1.gguf", "import a local GGUF file"),
    ("list", "llmctl list", "NAME ID FORMAT QUANTIZATION SIZE MODIFIED, newest first"),
    ("list", "llmctl list --json", "the same as a JSON array"),
    ("show", "llmctl show org/model:kv_int8 --json", "details, KV-cache sizes and files as JSON"),
    ("show", "llmctl show org/model --template", "the chat template, in full"),
    ("run", "llmctl run org/model:kv_int8 \"Why is the sky blue?\"", "chat template applied, int8 KV cache"),
    ("run", "llmctl run org/model --raw \"Once upon a time\"", "prompt sent as is"),
    ("run", "echo \"Summarize: ...\" | llmctl run org/model", "prompt from stdin"),
    ("run", "llmctl run org/model", "interactive chat on a terminal"),
    ("run", "llmctl run org/model:kv_fp8 --json --max-tokens 64 \"Hi\"", "JSON Lines: token events, then done"),
    ("bench", "llmctl bench org/model --text notes.txt", "each KV scheme: speed, memory, quality"),
    ("bench", "llmctl bench org/model --plot bench.svg", "...and decode speed and end-to-end time as a chart"),
    ("serve", "llmctl serve", "OpenAI and Ollama APIs on 127.0.0.1:11435; models load on first use"),
    (
        "serve",
        "llmctl serve --model org/model:kv_int8 --max-queue 4",
        "load one first; a fifth waiting request gets 503",
    ),
    ("rm", "llmctl rm org/model:kv_fp8", "remove the tag; blobs no other tag uses are deleted"),
    ("completions", "llmctl completions bash", "print a completion script"),
];

pub fn files() -> Vec<(String, Vec<u8>)> {
    let root = crate::cli::command().disable_help_subcommand(true);
    let subs: Vec<clap::Command> = root.get_subcommands().filter(|s| !s.is_hide_set()).cloned().collect();
    let pages: Vec<String> = subs.iter().map(|s| format!("llmctl-{}", s.get_name())).collect();
    let mut files = vec![("man/llmctl.1".to_string(), render(root, None, &pages))];
    for (sub, name) in subs.into_iter().zip(&pages) {
        let page = sub.name(name.clone()).display_name(name.clone()).bin_name(name.clone());
        files.push((format!("man/{name}.1"), render(page, Some(&name["llmctl-".len()..]), &pages)));
    }
    files
}

/// One page: `sub` is `None` for `llmctl.1`.
fn render(mut command: clap::Command, sub: Option<&str>, pages: &[String]) -> Vec<u8> {
    command.build();
    let man = Man::new(command.clone());
    let mut out = Vec::new();
    let written: std::io::Result<()> = (|| {
        man.render_title(&mut out)?;
        man.render_name_section(&mut out)?;
        out.extend_from_slice(synopsis(&command).as_bytes());
        man.render_description_section(&mut out)?;
        if command.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut out)?;
        }
        if command.has_subcommands() {
            man.render_subcommands_section(&mut out)?;
        }
        Ok(())
    })();
    written.expect("rendering into memory cannot fail");
    let mut roff = String::from_utf8(out).expect("clap_mangen writes UTF-8");
    if let Some(after) = command.get_after_help() {
        roff.push_str(&section("MODEL NAMES", &paragraphs(&after.to_string())));
    }
    roff.push_str(&section("EXIT STATUS", &exit_status()));
    match sub {
        None => {
            roff.push_str(&section("ENVIRONMENT", &environment()));
            roff.push_str(&section("FILES", &files_section()));
        }
        Some(_) => roff.push_str(&section(
            "ENVIRONMENT AND FILES",
            &paragraphs("See llmctl(1) for the environment variables llmctl reads and the store's layout."),
        )),
    }
    let examples: Vec<_> = EXAMPLES.iter().filter(|(s, _, _)| sub.is_none_or(|sub| *s == sub)).collect();
    if !examples.is_empty() {
        roff.push_str(&section(
            "EXAMPLES",
            &examples.iter().map(|(_, cmd, what)| tagged(&bold(cmd), what)).collect::<String>(),
        ));
    }
    let see_also: Vec<String> = match sub {
        None => pages.iter().map(|p| format!("{p}(1)")).collect(),
        Some(sub) => std::iter::once("llmctl(1)".to_string())
            .chain(pages.iter().filter(|p| !p.ends_with(&format!("-{sub}"))).map(|p| format!("{p}(1)")))
            .collect(),
    };
    roff.push_str(&section("SEE ALSO", &format!("{}\n", escape(&see_also.join(", ")))));
    if sub.is_none() {
        roff.push_str(&section("VERSION", &format!("{}\n", escape(env!("CARGO_PKG_VERSION")))));
    }
    code_spans(&roff).into_bytes()
}

/// clap_mangen's synopsis, with each option's value names (`--ctx-size <N>`).
fn synopsis(command: &clap::Command) -> String {
    let name = command.get_bin_name().unwrap_or_else(|| command.get_name());
    let mut line = bold(name);
    for arg in command.get_arguments().filter(|a| !a.is_hide_set() && !a.is_positional()) {
        let flag = match (arg.get_short(), arg.get_long()) {
            (Some(s), Some(l)) => format!("{}|{}", bold(&format!("-{s}")), bold(&format!("--{l}"))),
            (Some(s), None) => bold(&format!("-{s}")),
            (None, Some(l)) => bold(&format!("--{l}")),
            (None, None) => continue,
        };
        let value = match arg.get_action().takes_values() {
            true => arg.get_value_names().map(|v| format!(" {}", italic(&format!("<{}>", v.join(" "))))),
            false => None,
        };
        line.push_str(&format!(" [{flag}{}]", value.unwrap_or_default()));
    }
    for arg in command.get_positionals().filter(|a| !a.is_hide_set()) {
        let value = arg.get_value_names().map(|v| v.join(" ")).unwrap_or_else(|| arg.get_id().to_string());
        let many = if arg.get_num_args().is_some_and(|n| n.max_values() > 1) { "..." } else { "" };
        match arg.is_required_set() {
            true => line.push_str(&format!(" {}{many}", italic(&format!("<{value}>")))),
            false => line.push_str(&format!(" [{}]{many}", italic(&value))),
        }
    }
    if command.has_subcommands() {
        line.push_str(&format!(" {}", italic("<COMMAND>")));
    }
    format!(".SH SYNOPSIS\n{line}\n")
}

fn exit_status() -> String {
    ExitStatus::ALL.iter().map(|s| tagged(&bold(&s.code().to_string()), s.meaning())).collect()
}

fn environment() -> String {
    env_vars::ALL.iter().map(|v| tagged(&bold(v.name), &one_line(v.doc))).collect()
}

fn files_section() -> String {
    let root = tagged(&bold("$LLMCTL_HOME"), "the store (see ENVIRONMENT); everything below is relative to it");
    root + &crate::store::LAYOUT.iter().map(|(path, what)| tagged(&bold(path), what)).collect::<String>()
}

/// A doc comment's lines as one line of text.
fn one_line(doc: &str) -> String {
    doc.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

fn section(title: &str, body: &str) -> String {
    format!(".SH \"{title}\"\n{body}")
}

/// A `.TP` entry: `tag` (already roff) above `text` (plain).
fn tagged(tag: &str, text: &str) -> String {
    format!(".TP\n{tag}\n{}\n", escape(text))
}

fn paragraphs(text: &str) -> String {
    text.split("\n\n").map(|p| format!("{}\n", escape(&one_line(p)))).collect::<Vec<_>>().join(".PP\n")
}

fn bold(text: &str) -> String {
    format!("\\fB{}\\fR", escape(text))
}

fn italic(text: &str) -> String {
    format!("\\fI{}\\fR", escape(text))
}

/// Plain text as roff: backslashes and hyphens escaped, no line starting a request.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-").replace('\'', "\\*(Aq");
    match escaped.starts_with('.') {
        true => format!("\\&{escaped}"),
        false => escaped,
    }
}

/// The help text's Markdown `code` spans as bold (plain in the NAME line,
/// which `whatis` reads); a stray backtick is dropped.
fn code_spans(roff: &str) -> String {
    let mut out = String::with_capacity(roff.len());
    let mut in_name = false;
    for line in roff.lines() {
        let plain = in_name || line.starts_with('.');
        in_name = line == ".SH NAME";
        let spans: Vec<&str> = line.split('`').collect();
        for (i, span) in spans.iter().enumerate() {
            out.push_str(span);
            let closing = i % 2 == 1;
            if i + 1 < spans.len() && !plain && (closing || i + 2 < spans.len()) {
                out.push_str(if closing { "\\fR" } else { "\\fB" });
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn code_spans_become_bold_and_stray_backticks_go() {
        assert_eq!(super::code_spans("a `b` c `d`\n"), "a \\fBb\\fR c \\fBd\\fR\n");
        assert_eq!(super::code_spans("odd ` one\n"), "odd  one\n");
        assert_eq!(super::code_spans(".SH NAME\nx \\- `y`\n"), ".SH NAME\nx \\- y\n");
    }
}
