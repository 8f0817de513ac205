//! Issue #18: the interactive chat on a pseudo-terminal, as a person uses
//! it: line editing and history, `/` commands, `"""` messages, Ctrl-C
//! mid-reply, and a full context that never ends the session.

use std::time::Duration;

use serde_json::Value;

use crate::cli::ctx_with_chat_template;
use crate::support::TestContext;
use crate::support::pty::Terminal;

const WAIT: Duration = Duration::from_secs(60);
/// The tiny model's template: each message's text on its own line.
const LINES: &str = "{% for m in messages %}{{ m.role }} {{ m.content }}\n{% endfor %}";

fn chat(ctx: &TestContext, extra: &[&str]) -> Terminal {
    let args = [&["run", "org/templated", "--json", "--seed", "1"][..], extra].concat();
    Terminal::start(&ctx.command(&args))
}

/// The `done` events on the screen, in order.
fn done_events(screen: &str) -> Vec<Value> {
    screen
        .lines()
        .filter_map(|l| l.find("{\"type\":\"done\"").and_then(|i| serde_json::from_str(&l[i..]).ok()))
        .collect()
}

#[test]
fn chat_lines_are_edited_and_remembered_across_sessions() {
    let ctx = ctx_with_chat_template(LINES);
    let mut term = chat(&ctx, &["--max-tokens", "2"]);
    // Typed `w3 x5`, then: left arrow, backspace (the `x`), `w`: the model gets `w3 w5`.
    term.wait_for(">>> ", 1, WAIT);
    term.send("w3 x5\x1b[D\x7fw\r");
    term.wait_for("\"type\":\"done\"", 1, WAIT);
    term.send("/bye\r");
    let (code, screen) = term.finish();
    assert_eq!(code, 0, "{screen}");
    let history = std::fs::read_to_string(ctx.home().join(".local/state/llmctl/history")).unwrap();
    assert!(history.lines().any(|l| l == "w3 w5"), "{history}");
    let first = done_events(&screen)[0]["prompt_tokens"].clone();
    // A new session: up arrow twice (past `/bye`) brings the line back.
    let mut term = chat(&ctx, &["--max-tokens", "2"]);
    term.wait_for(">>> ", 1, WAIT);
    term.send("\x1b[A\x1b[A\r");
    term.wait_for("\"type\":\"done\"", 1, WAIT);
    term.send("\x04");
    let (code, screen) = term.finish();
    assert_eq!(code, 0, "{screen}");
    assert_eq!(done_events(&screen)[0]["prompt_tokens"], first, "{screen}");
    assert!(!screen.contains("^[["), "arrow keys reached the model: {screen}");
}

#[test]
fn chat_commands_help_set_clear_and_multiline_messages() {
    let ctx = ctx_with_chat_template(LINES);
    let mut term = chat(&ctx, &["--max-tokens", "2"]);
    term.wait_for(">>> ", 1, WAIT);
    term.send("/?\r");
    term.wait_for("Available commands:", 1, WAIT);
    term.send("/set parameter temperature 0.5\r");
    term.wait_for("Set the temperature to 0.5.", 1, WAIT);
    term.send("/set parameter temperature hot\r");
    term.wait_for("warning: usage: /set parameter temperature <T>, with T a number of 0 or more", 1, WAIT);
    term.send("/load x\r");
    term.wait_for("warning: unknown command `/load`; `/?` lists the commands", 1, WAIT);
    term.send("w3\r");
    term.wait_for("\"type\":\"done\"", 1, WAIT);
    term.send("w4\r");
    term.wait_for("\"type\":\"done\"", 2, WAIT);
    term.send("/clear\r");
    term.wait_for("Cleared the conversation.", 1, WAIT);
    term.send("w3\r");
    term.wait_for("\"type\":\"done\"", 3, WAIT);
    // A message over three lines: `"""` opens and closes it, typed line by line.
    term.send("\"\"\"w3\r");
    term.wait_for("... ", 1, WAIT);
    term.send("w4\r");
    term.wait_for("... ", 2, WAIT);
    term.send("w5\"\"\"\r");
    term.wait_for("\"type\":\"done\"", 4, WAIT);
    // The same pasted at once (bracketed paste): one edit of three lines.
    term.paste("\"\"\"w3\nw4\nw5\"\"\"");
    term.send("\r");
    term.wait_for("\"type\":\"done\"", 5, WAIT);
    term.send("/set system w6 w6\r");
    term.wait_for("Set the system prompt; the conversation starts anew.", 1, WAIT);
    term.send("w3\r");
    term.wait_for("\"type\":\"done\"", 6, WAIT);
    term.send("/bye\r");
    let (code, screen) = term.finish();
    assert_eq!(code, 0, "{screen}");
    let prompts: Vec<u64> = done_events(&screen).iter().map(|d| d["prompt_tokens"].as_u64().unwrap()).collect();
    // `user w3` alone; then with the first turn and its reply; after /clear alone again;
    // the system prompt adds `system w6 w6` to a fresh conversation.
    assert_eq!(prompts[0], prompts[2], "{prompts:?}\n{screen}");
    assert!(prompts[1] > prompts[0] + 1, "{prompts:?}");
    assert_eq!(prompts[5], prompts[0] + 3, "{prompts:?}\n{screen}");
    // Typed or pasted, the three-line message is the same: `user w3 w4 w5` after the
    // conversation so far (each reply rendered as `assistant` and 2 tokens).
    // Each earlier reply is `assistant` and its 2 tokens.
    let (typed, pasted) = (prompts[3], prompts[4]);
    assert_eq!(typed, prompts[2] + 3 + 4, "{prompts:?}\n{screen}");
    assert_eq!(pasted, typed + 3 + 4, "{prompts:?}\n{screen}");
}

#[test]
fn a_full_context_is_said_and_the_chat_goes_on() {
    let ctx = ctx_with_chat_template(LINES);
    let mut term = chat(&ctx, &["--ctx-size", "8", "--max-tokens", "100"]);
    term.wait_for(">>> ", 1, WAIT);
    term.send("w3 w3 w3 w3 w3 w3 w3 w3 w3\r");
    term.wait_for("the conversation no longer fits in the context (8 tokens)", 1, WAIT);
    // 7 tokens of prompt (`user` and six words) leave room for one: the reply is cut short.
    term.send("w4 w4 w4 w4 w4 w4\r");
    term.wait_for("\"type\":\"done\"", 1, WAIT);
    term.wait_for(
        "the reply was cut short: the context is full (8 tokens); use /clear to start a new conversation",
        1,
        WAIT,
    );
    term.send("w3\r");
    term.wait_for("the conversation no longer fits in the context (8 tokens)", 2, WAIT);
    term.send("/clear\r");
    term.wait_for("Cleared the conversation.", 1, WAIT);
    term.send("w3\r");
    term.wait_for("\"type\":\"done\"", 2, WAIT);
    term.send("/bye\r");
    let (code, screen) = term.finish();
    assert_eq!(code, 0, "{screen}");
    assert!(!screen.contains("error:"), "{screen}");
}

#[test]
fn ctrl_c_at_an_empty_prompt_warns_once_then_leaves() {
    let ctx = ctx_with_chat_template(LINES);
    let mut term = chat(&ctx, &[]);
    term.wait_for(">>> ", 1, WAIT);
    term.send("\x03");
    term.wait_for("Use Ctrl-C again, Ctrl-D or /bye to leave.", 1, WAIT);
    term.send("\x03");
    let (code, screen) = term.finish();
    assert_eq!(code, 0, "{screen}");
}

/// Ctrl-C while SmolLM2 writes a long reply stops the reply, not the chat.
#[test]
fn ctrl_c_mid_reply_stops_it_and_the_chat_goes_on() {
    let ctx = TestContext::new();
    let dir = crate::support::smollm2::smollm2_dir("f32");
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "smollm2"]).success();
    let mut term = Terminal::start(&ctx.command(&["run", "smollm2", "--json", "--max-tokens", "4000"]));
    term.wait_for(">>> ", 1, WAIT);
    term.send("Write a very long story about a lighthouse.\r");
    term.wait_for("\"type\":\"token\"", 3, WAIT);
    term.send("\x03");
    term.wait_for("(stopped)", 1, WAIT);
    term.wait_for(">>> ", 2, WAIT);
    term.send("/bye\r");
    let (code, screen) = term.finish();
    assert_eq!(code, 0, "{screen}");
    let done = done_events(&screen);
    assert_eq!(done.len(), 1, "{screen}");
    assert_eq!(done[0]["stop_reason"], "interrupted");
    assert!(done[0]["generated_tokens"].as_u64().unwrap() < 4000);
}

/// `run --system TEXT` in the interactive chat is the starting `/set system`:
/// the first message is rendered after the system turn.
#[test]
fn a_system_prompt_from_the_command_line_starts_the_chat() {
    let ctx = ctx_with_chat_template(LINES);
    let first_prompt = |extra: &[&str]| {
        let mut term = chat(&ctx, &[&["--max-tokens", "2"][..], extra].concat());
        term.wait_for(">>> ", 1, WAIT);
        term.send("w3\r");
        term.wait_for("\"type\":\"done\"", 1, WAIT);
        term.send("/bye\r");
        let (code, screen) = term.finish();
        assert_eq!(code, 0, "{screen}");
        done_events(&screen)[0]["prompt_tokens"].as_u64().unwrap()
    };
    // `system w6 w6` is three more tokens than `user w3` alone, as `/set system w6 w6` gives.
    assert_eq!(first_prompt(&["--system", "w6 w6"]), first_prompt(&[]) + 3);
}
