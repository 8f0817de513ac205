//! Chat templates: the model's Jinja template (from `tokenizer_config.json`
//! or `chat_template.jinja`) rendered with minijinja the way Hugging Face
//! renders it (trimmed blocks, Python string methods, `raise_exception`).
//!
//! A template comes from the model's files, so from whoever published the
//! model. Rendering is bounded three ways: template steps (minijinja's
//! fuel), output size (a capped writer), and, in the `llmctl` binary,
//! memory and CPU time: there each render runs in a child process under
//! resource limits ([`sandbox`]), because a template can build gigabytes
//! in a few steps (`{% set s = s ~ s %}` in a loop) and an allocation that
//! fails aborts the process that makes it.

pub mod sandbox;

use std::io::{self, Write};

use minijinja::{Environment, Error, ErrorKind, Value, context};
use serde::{Deserialize, Serialize};

/// Template steps allowed per render, so a looping template ends with an error.
const FUEL: u64 = 2_000_000;

/// The most text a render may produce, in megabytes: far more than any
/// model's context holds (a few bytes a token), far less than memory.
pub const OUTPUT_LIMIT_MB: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("the model's chat template cannot be parsed")]
    Parse(#[source] TemplateFailure),
    #[error("the model's chat template failed")]
    Render(#[source] TemplateFailure),
    #[error("the model's chat template writes more than {OUTPUT_LIMIT_MB} MB of text, llmctl's limit")]
    TooLong,
    #[error(
        "the model's chat template needs more than {} MB of memory to render, llmctl's limit",
        sandbox::MEMORY_LIMIT_MB
    )]
    TooMuchMemory,
    #[error("the model's chat template ran for more than {} s of CPU time, llmctl's limit", sandbox::CPU_LIMIT_S)]
    TooSlow,
    #[error("llmctl's template renderer (a child process) failed: {0}")]
    Sandbox(String),
}

/// What minijinja said, kept as text so it can cross the process boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateFailure(pub String);

impl From<Error> for TemplateFailure {
    fn from(e: Error) -> TemplateFailure {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        TemplateFailure(text)
    }
}

pub struct ChatTemplate {
    source: String,
    env: Environment<'static>,
}

impl ChatTemplate {
    pub fn new(source: String) -> Result<ChatTemplate, ChatError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |_fmt: String| -> Value { Value::from("") });
        env.add_template_owned("chat", source.clone()).map_err(|e| ChatError::Parse(e.into()))?;
        Ok(ChatTemplate { source, env })
    }

    /// Renders the conversation: in a resource-limited child process when
    /// the program enabled [`sandbox`], in this process otherwise.
    pub fn render(&self, messages: &[Message], bos: &str, eos: &str) -> Result<String, ChatError> {
        match sandbox::renderer() {
            Some(exe) => sandbox::render(exe, &self.source, messages, bos, eos),
            None => self.render_here(messages, bos, eos),
        }
    }

    /// Renders in this process, with fuel and the output limit but no memory limit.
    pub fn render_here(&self, messages: &[Message], bos: &str, eos: &str) -> Result<String, ChatError> {
        let template = self.env.get_template("chat").map_err(|e| ChatError::Render(e.into()))?;
        let ctx = context! { messages => messages, add_generation_prompt => true, bos_token => bos, eos_token => eos };
        let mut out = Capped { bytes: Vec::new(), limit: OUTPUT_LIMIT_MB * 1_000_000, over: false };
        match template.render_captured_to(ctx, &mut out) {
            Ok(_) => String::from_utf8(out.bytes).map_err(|_| ChatError::Render(TemplateFailure("not UTF-8".into()))),
            Err(_) if out.over => Err(ChatError::TooLong),
            Err(e) => Err(ChatError::Render(e.into())),
        }
    }
}

/// A buffer that refuses to grow past `limit` bytes.
struct Capped {
    bytes: Vec<u8>,
    limit: usize,
    over: bool,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            self.over = true;
            return Err(io::Error::other("output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Vec<Message> {
        vec![Message { role: "user".into(), content: text.into() }]
    }

    #[test]
    fn renders_chatml_with_python_methods() {
        let source = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content.strip() }}<|im_end|>\n{% endfor %}\
                      {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let t = ChatTemplate::new(source.into()).unwrap();
        assert_eq!(
            t.render(&user("  hi "), "", "").unwrap(),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn raising_and_looping_templates_fail_cleanly() {
        let t = ChatTemplate::new("{{ raise_exception('no system role') }}".into()).unwrap();
        assert!(t.render(&user("x"), "", "").unwrap_err().to_string().contains("failed"));
        let looping = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}".into(),
        )
        .unwrap();
        assert!(matches!(looping.render(&user("x"), "", ""), Err(ChatError::Render(_))));
        let long = ChatTemplate::new("{% for i in range(20000) %}{{ 'x' * 1000 }}{% endfor %}".into()).unwrap();
        assert!(matches!(long.render(&user("x"), "", ""), Err(ChatError::TooLong)));
        assert!(matches!(ChatTemplate::new("{% for %}".into()), Err(ChatError::Parse(_))));
    }
}
