//! #17: the chat templates of real models (llama.cpp's `models/templates/*.jinja`,
//! from `tests/support/llama_cpp.rs`) render as transformers renders them.

#![allow(clippy::print_stderr, reason = "tests report how many templates match (seen with --nocapture)")]

use std::collections::BTreeMap;

use std::process::Command;

use llmctl::engine::chat::{Chat, Message, sandbox};
use serde::Deserialize;

use crate::support::{TestContext, llama_cpp, models};

const GOLDEN: &str = include_str!("../reference/chat_templates_golden.json");

#[derive(Deserialize)]
struct Golden {
    source_date_epoch: i64,
    bos_token: String,
    eos_token: String,
    conversations: BTreeMap<String, Conversation>,
    templates: BTreeMap<String, GoldenTemplate>,
}

#[derive(Deserialize)]
struct Conversation {
    messages: Vec<Message>,
    add_generation_prompt: bool,
}

#[derive(Deserialize)]
struct GoldenTemplate {
    sha256: String,
    renders: BTreeMap<String, Rendered>,
}

#[derive(Deserialize)]
struct Rendered {
    text: Option<String>,
    error_type: Option<String>,
    error: Option<String>,
}

const EVERY_CASE: &[&str] = &["multi_turn", "system_user", "user_only_no_generation_prompt"];
macro_rules! none_not_iterable {
    ($at:literal) => {
        concat!(
            "invalid operation: 'NoneType' object is not iterable (`tools` and `documents` are None: llmctl passes ",
            "no tools or documents) ",
            $at
        )
    };
}

/// The templates that raise in transformers, for the conversations they
/// raise for, and what llmctl says (after "the model's chat template failed: ").
const RAISES: &[(&str, &[&str], &str)] = &[
    // Tool-use variants that loop over `tools` unguarded: transformers' TypeError, 'NoneType' object is not iterable.
    ("CohereForAI-c4ai-command-r-plus-tool_use.jinja", EVERY_CASE, none_not_iterable!("(in chat:142)")),
    ("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja", EVERY_CASE, none_not_iterable!("(in chat:38)")),
    ("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", EVERY_CASE, none_not_iterable!("(in chat:38)")),
    // Reads a `functions` variable no one passes: transformers' UndefinedError, 'functions' is undefined.
    (
        "fireworks-ai-llama-3-firefunction-v2.jinja",
        EVERY_CASE,
        "invalid operation: tried to use + operator on unsupported types string and undefined (in chat:21)",
    ),
    // raise_exception('System role not supported').
    ("google-gemma-2-2b-it.jinja", &["system_user"], "invalid operation: System role not supported (in chat:1)"),
];

fn golden() -> Golden {
    serde_json::from_str(GOLDEN).unwrap()
}

#[test]
fn every_template_renders_as_transformers_does() {
    let golden = golden();
    let templates = llama_cpp::chat_templates(&llama_cpp::models_dir());
    let names: Vec<&String> = templates.iter().map(|t| &t.0).collect();
    assert_eq!(names, golden.templates.keys().collect::<Vec<_>>());
    let mut wrong = Vec::new();
    let mut same = 0;
    let mut raised = Vec::new();
    for (name, source) in &templates {
        let want = &golden.templates[name];
        assert_eq!(crate::support::models::sha256_hex(source.as_bytes()), want.sha256, "{name}");
        for (case, conversation) in &golden.conversations {
            let chat = Chat {
                messages: &conversation.messages,
                add_generation_prompt: conversation.add_generation_prompt,
                bos: &golden.bos_token,
                eos: &golden.eos_token,
            };
            let got = render(source, &chat, golden.source_date_epoch).map_err(|e| report(&e));
            let expected = &want.renders[case];
            match (&expected.text, got) {
                (Some(text), Ok(got)) if *text == got => same += 1,
                (Some(text), Ok(got)) => {
                    wrong.push(format!("{name} {case}:\n--- transformers\n{text}\n--- llmctl\n{got}"))
                }
                (Some(_), Err(e)) => wrong.push(format!("{name} {case}: llmctl fails: {e}")),
                (None, Err(e)) => {
                    raised.push((name.as_str(), case.as_str(), e.clone()));
                    let said = expected.error.as_deref().unwrap_or_default();
                    // `raise_exception(message)`: llmctl says the template's own message too.
                    if expected.error_type.as_deref() == Some("TemplateError") && !e.contains(said) {
                        wrong.push(format!("{name} {case}: transformers raises {said:?}, llmctl says {e:?}"));
                    }
                }
                (None, Ok(got)) => wrong.push(format!(
                    "{name} {case}: transformers raises {:?} {:?}, llmctl renders {got:?}",
                    expected.error_type, expected.error
                )),
            }
        }
    }
    eprintln!("{same} renders match, {} raise in both, {} differ", raised.len(), wrong.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    // What a user sees when a template raises, for each template that does (in every conversation, or in the one named).
    let said: Vec<(&str, &str, String)> = raised.iter().map(|(name, case, e)| (*name, *case, e.clone())).collect();
    let expected: Vec<(&str, &str, String)> = RAISES
        .iter()
        .flat_map(|(name, cases, e)| {
            cases.iter().map(move |case| (*name, *case, format!("the model's chat template failed: {e}")))
        })
        .collect();
    assert_eq!(said, expected);
}

fn report(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Renders as the `llmctl` binary does: in its renderer child, here with the golden's clock.
fn render(source: &str, chat: &Chat<'_>, epoch: i64) -> Result<String, llmctl::engine::chat::ChatError> {
    let mut llmctl = Command::new(env!("CARGO_BIN_EXE_llmctl"));
    llmctl.env("SOURCE_DATE_EPOCH", epoch.to_string());
    sandbox::render_in(llmctl, source, chat)
}

/// Through the CLI, as a user runs it: `run --system S U --json`'s `prompt`
/// event is the `system_user` conversation as transformers renders it (the
/// tiny model, with each template in turn as its chat template), and a
/// template that raises is an error saying what it raised.
#[test]
fn run_json_prompt_event_shows_each_template_as_transformers_renders_it() {
    let golden = golden();
    let conversation = &golden.conversations["system_user"];
    let [system, user] = &conversation.messages[..] else { panic!("system_user has two messages") };
    assert_eq!((system.role.as_str(), user.role.as_str()), ("system", "user"));
    let ctx = TestContext::new().env("SOURCE_DATE_EPOCH", &golden.source_date_epoch.to_string());
    let templates = llama_cpp::chat_templates(&llama_cpp::models_dir());
    let mut wrong = Vec::new();
    for (i, (name, source)) in templates.iter().enumerate() {
        let mut files = models::tiny_llama_repo(7);
        let config = serde_json::json!({
            "add_bos_token": false, "bos_token": golden.bos_token, "eos_token": golden.eos_token, "chat_template": source
        });
        files.iter_mut().find(|f| f.0 == "tokenizer_config.json").unwrap().1 = config.to_string().into_bytes();
        let dir = ctx.root.path().join(format!("t{i}"));
        models::write_dir(&dir, &files);
        let model = format!("org/t{i}");
        ctx.run(&["pull", dir.to_str().unwrap(), "--name", &model]).success();
        let args =
            ["run", &model, "--quiet", "--json", "--max-tokens", "1", "--system", &system.content, &user.content];
        let out = ctx.run(&args);
        let expected = &golden.templates[name].renders["system_user"];
        let prompt = out.stdout.lines().next().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
        match (&expected.text, prompt) {
            (Some(text), Some(event)) if event["type"] == "prompt" && event["text"] == *text => {}
            (Some(_), _) => wrong.push(format!("{name}: {}\n{}", out.stdout, out.stderr)),
            (None, _) => {
                let (_, _, said) = RAISES.iter().find(|r| r.0 == *name).expect("in RAISES");
                let error = format!(
                    "error: the model's chat template failed\n  caused by: {said}\n\
                     hint: use `--raw` to send the prompt without the template\n"
                );
                if (out.code, out.stdout.as_str(), out.stderr.as_str()) != (1, "", error.as_str()) {
                    wrong.push(format!("{name}: exit {}, {}\n{}", out.code, out.stdout, out.stderr));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
