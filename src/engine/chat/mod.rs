//! Chat templates: the model's Jinja template (from `tokenizer_config.json`
//! or `chat_template.jinja`) rendered with minijinja the way Hugging Face
//! renders it: the environment of transformers' `apply_chat_template`
//! (trimmed blocks, loop controls, `raise_exception`, `strftime_now`,
//! `namespace`, `dict`, `tojson` as `json.dumps`, `{% generation %}` blocks)
//! with Python's string, list and dict methods, and the same variables
//! (`messages`, `add_generation_prompt`, `bos_token`, `eos_token`, and
//! `tools` and `documents` left `None`).
//!
//! A template comes from the model's files, so from whoever published the
//! model. Rendering is bounded three ways: template steps (minijinja's
//! fuel), output size (a capped writer), and, in the `llmctl` binary,
//! memory and CPU time: there each render runs in a child process under
//! resource limits ([`sandbox`]), because a template can build gigabytes
//! in a few steps (`{% set s = s ~ s %}` in a loop) and an allocation that
//! fails aborts the process that makes it.

mod python;
pub mod sandbox;

use std::borrow::Cow;
use std::io::{self, Write};

use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, Value, context, filters};
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
        if e.detail() == Some(python::NOT_ITERABLE) {
            // The only plain objects a template is given are the `None`s of `tools` and `documents`.
            text = text.replace(python::NOT_ITERABLE, python::NONE_NOT_ITERABLE);
        }
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
        env.set_unknown_method_callback(python::unknown_method);
        // `{{ true }}`, `{{ none }}` print as Python prints them: `True`, `None`.
        env.set_formatter(|out, state, value| match value.kind() {
            ValueKind::Bool => out.write_str(if value.is_true() { "True" } else { "False" }).map_err(Error::from),
            ValueKind::None => out.write_str("None").map_err(Error::from),
            _ => minijinja::escape_formatter(out, state, value),
        });
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |format: String| python::strftime_now(&format));
        env.add_function("dict", |args: Rest<Value>| python::dict(&args));
        env.add_filter("tojson", |value: Value, kwargs: Kwargs| python::tojson(&value, kwargs));
        env.add_test("sequence", |value: Value| python::is_sequence(&value));
        env.add_test("iterable", |value: Value| python::is_iterable(&value));
        env.add_test("none", |value: Value| python::is_none(&value));
        env.add_filter("select", |state: &State, value: Value, test: Option<Cow<'_, str>>, args: Rest<Value>| {
            filters::select(state, python::none_as_empty(value), test, args)
        });
        env.add_filter("reject", |state: &State, value: Value, test: Option<Cow<'_, str>>, args: Rest<Value>| {
            filters::reject(state, python::none_as_empty(value), test, args)
        });
        env.add_filter(
            "selectattr",
            |state: &State, value: Value, attr: Cow<'_, str>, test: Option<Cow<'_, str>>, args: Rest<Value>| {
                filters::selectattr(state, python::none_as_empty(value), attr, test, args)
            },
        );
        env.add_filter(
            "rejectattr",
            |state: &State, value: Value, attr: Cow<'_, str>, test: Option<Cow<'_, str>>, args: Rest<Value>| {
                filters::rejectattr(state, python::none_as_empty(value), attr, test, args)
            },
        );
        env.add_filter("map", |state: &State, value: Value, args: Rest<Value>| {
            filters::map(state, python::none_as_empty(value), args)
        });
        env.add_template_owned("chat", generation_blocks_as_ifs(&source)).map_err(|e| ChatError::Parse(e.into()))?;
        Ok(ChatTemplate { source, env })
    }

    /// Renders the conversation: in a resource-limited child process when
    /// the program enabled [`sandbox`], in this process otherwise.
    pub fn render(&self, chat: &Chat<'_>) -> Result<String, ChatError> {
        match sandbox::renderer() {
            Some(exe) => sandbox::render(exe, &self.source, chat),
            None => self.render_here(chat),
        }
    }

    /// Renders in this process, with fuel and the output limit but no memory limit.
    pub fn render_here(&self, chat: &Chat<'_>) -> Result<String, ChatError> {
        let template = self.env.get_template("chat").map_err(|e| ChatError::Render(e.into()))?;
        let ctx = context! {
            messages => chat.messages,
            add_generation_prompt => chat.add_generation_prompt,
            bos_token => chat.bos,
            eos_token => chat.eos,
            tools => python::py_none(),
            documents => python::py_none(),
        };
        let mut out = Capped { bytes: Vec::new(), limit: OUTPUT_LIMIT_MB * 1_000_000, over: false };
        match template.render_captured_to(ctx, &mut out) {
            Ok(_) => String::from_utf8(out.bytes).map_err(|_| ChatError::Render(TemplateFailure("not UTF-8".into()))),
            Err(_) if out.over => Err(ChatError::TooLong),
            Err(e) => Err(ChatError::Render(e.into())),
        }
    }
}

/// What a template renders: the conversation, whether to open the
/// assistant's turn, and the tokenizer's special tokens.
#[derive(Debug, Clone, Copy)]
pub struct Chat<'a> {
    pub messages: &'a [Message],
    /// Whether the template ends with the assistant's turn opened (`true` to generate a reply).
    pub add_generation_prompt: bool,
    pub bos: &'a str,
    pub eos: &'a str,
}

/// transformers' `{% generation %}…{% endgeneration %}` (it marks the
/// assistant's text for training masks and renders its body as it is) as
/// `{% if true %}…{% endif %}`, which renders the same, whitespace control
/// included.
fn generation_blocks_as_ifs(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        let tag = &rest[at + 2..];
        let body = tag.strip_prefix(['-', '+']).unwrap_or(tag);
        let marker = &tag[..tag.len() - body.len()];
        let word = body.trim_start();
        let spaces = &body[..body.len() - word.len()];
        let replaced = [("endgeneration", "endif"), ("generation", "if true")].into_iter().find_map(|(name, with)| {
            let after = word.strip_prefix(name)?;
            let closing = after.trim_start();
            let closing_ok = closing.strip_prefix(['-', '+']).unwrap_or(closing).starts_with("%}");
            let boundary = after.starts_with(|c: char| c.is_whitespace() || c == '-' || c == '+' || c == '%');
            (closing_ok && boundary).then_some((with, after))
        });
        match replaced {
            Some((with, after)) => {
                out.push_str("{%");
                out.push_str(marker);
                out.push_str(spaces);
                out.push_str(with);
                rest = after;
            }
            None => {
                out.push_str("{%");
                rest = tag;
            }
        }
    }
    out.push_str(rest);
    out
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

    fn chat(messages: &[Message]) -> Chat<'_> {
        Chat { messages, add_generation_prompt: true, bos: "", eos: "" }
    }

    #[test]
    fn renders_chatml_with_python_methods() {
        let source = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content.strip() }}<|im_end|>\n{% endfor %}\
                      {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let t = ChatTemplate::new(source.into()).unwrap();
        assert_eq!(t.render(&chat(&user("  hi "))).unwrap(), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    fn render(source: &str) -> Result<String, ChatError> {
        ChatTemplate::new(source.into())?.render_here(&chat(&user("hi")))
    }

    /// Each expected text is what transformers 5.24.0 (jinja2 3.1.6) renders.
    #[test]
    fn python_builtins_render_as_in_transformers() {
        let cases = [
            (
                r#"{{ {'b': 1, 'a': [1, 2.5, none, true], 'é': 'ü"\n'}|tojson }}"#,
                r#"{"b": 1, "a": [1, 2.5, null, true], "é": "ü\"\n"}"#,
            ),
            (
                r#"{{ {'b': 1, 'a': [1, 2.5, none, true], 'é': 'ü"\n'}|tojson(ensure_ascii=True) }}"#,
                r#"{"b": 1, "a": [1, 2.5, null, true], "\u00e9": "\u00fc\"\n"}"#,
            ),
            (
                "{{ {'b': 1, 'a': [1, {}], 'c': []}|tojson(indent=2) }}",
                "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    {}\n  ],\n  \"c\": []\n}",
            ),
            ("{{ {'b': 1, 'a': [1, 2]}|tojson(separators=(',', ':'), sort_keys=True) }}", r#"{"a":[1,2],"b":1}"#),
            (
                "{{ '😀<&>'|tojson(ensure_ascii=True) }}{{ '<&>'|tojson }}{{ 1e16|tojson }}{{ 0.00001|tojson }}",
                r#""\ud83d\ude00<&>""<&>"1e+161e-05"#,
            ),
            (
                "{{ tools|tojson }}|{{ tools }}|{{ tools is none }}|{{ tools is defined }}|{{ tools is iterable }}|\
                 {{ none is iterable }}|{{ 'ab' is sequence }}|{{ {} is sequence }}|\
                 {{ tools|selectattr('type')|list|length }}",
                "null|None|True|True|False|False|True|True|0",
            ),
            ("{{ dict(a=1, b=2)|tojson }}{{ dict([('x', 1)], y=2)|tojson }}", r#"{"a": 1, "b": 2}{"x": 1, "y": 2}"#),
            (
                "{{ '{} and {}'.format('a', 1) }} {{ '{1}{0}{{}}'.format('a', 'b') }} {{ '{n}'.format(n=none) }}",
                "a and 1 ba{} None",
            ),
            (
                "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}\
                 {{ i }}{% endfor %}",
                "0134",
            ),
            (
                "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}",
                "1",
            ),
            (
                "a\n{%- generation -%}\n  x{{ 1 }}  \n{%- endgeneration %}\nb{% generation %}\ny{% endgeneration %}",
                "ax1by",
            ),
        ];
        for (source, expected) in cases {
            assert_eq!(render(source).unwrap(), expected, "{source}");
        }
        let failed = |source: &str| match render(source) {
            Err(ChatError::Render(e)) => e.0,
            other => panic!("{source}: {other:?}"),
        };
        assert_eq!(
            failed("{% for t in tools %}x{% endfor %}"),
            "invalid operation: 'NoneType' object is not iterable (`tools` and `documents` are None: llmctl passes \
             no tools or documents) (in chat:1)"
        );
        assert!(failed("{{ '{} {0}'.format(1, 2) }}").contains("cannot switch between automatic and manual"));
        assert!(failed("{{ '{:>3}'.format(1) }}").contains("format spec"));
        assert!(failed("{{ x|tojson }}").contains("Object of type Undefined is not JSON serializable"));
        assert!(failed("{{ strftime_now('%Q') }}").contains("llmctl does not support the directive %Q"));
    }

    #[test]
    fn raising_and_looping_templates_fail_cleanly() {
        let t = ChatTemplate::new("{{ raise_exception('no system role') }}".into()).unwrap();
        assert!(t.render(&chat(&user("x"))).unwrap_err().to_string().contains("failed"));
        let looping = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}".into(),
        )
        .unwrap();
        assert!(matches!(looping.render(&chat(&user("x"))), Err(ChatError::Render(_))));
        let long = ChatTemplate::new("{% for i in range(20000) %}{{ 'x' * 1000 }}{% endfor %}".into()).unwrap();
        assert!(matches!(long.render(&chat(&user("x"))), Err(ChatError::TooLong)));
        assert!(matches!(ChatTemplate::new("{% for %}".into()), Err(ChatError::Parse(_))));
    }
}
