//! Chat templates: the model's Jinja template (from `tokenizer_config.json`
//! or `chat_template.jinja`) rendered with minijinja the way Hugging Face
//! renders it (trimmed blocks, Python string methods, `raise_exception`).

use minijinja::{Environment, Error, ErrorKind, Value, context};
use serde::Serialize;

/// Template steps allowed per render, so a looping template ends with an error.
const FUEL: u64 = 2_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("the model's chat template cannot be parsed")]
    Parse(#[source] Error),
    #[error("the model's chat template failed")]
    Render(#[source] Error),
}

pub struct ChatTemplate {
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
        env.add_template_owned("chat", source).map_err(ChatError::Parse)?;
        Ok(ChatTemplate { env })
    }

    pub fn render(&self, messages: &[Message], bos: &str, eos: &str) -> Result<String, ChatError> {
        let template = self.env.get_template("chat").map_err(ChatError::Render)?;
        let ctx = context! { messages => messages, add_generation_prompt => true, bos_token => bos, eos_token => eos };
        template.render(ctx).map_err(ChatError::Render)
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
        assert!(matches!(ChatTemplate::new("{% for %}".into()), Err(ChatError::Parse(_))));
    }
}
