//! A GGUF's chat template (`tokenizer.chat_template`, Jinja), rendered the
//! way llama-server `--jinja` and mistral.rs render it, so the embedded
//! llama.cpp sends a model exactly the prompt they do. llama.cpp's own C
//! API (`llama_chat_apply_template`) only recognises a fixed list of
//! template styles and drops what a template adds around the messages
//! (SmolLM2's default system message, Qwen3.5's thinking preamble).
//!
//! Templates are written for Python's Jinja: string methods come from
//! minijinja-contrib's `pycompat`, and `raise_exception` from here.

use minijinja::{context, Environment, Error, ErrorKind};

/// A template parsed once, at load, and rendered for every request.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The special tokens' text, which some templates write out.
    bos: String,
    eos: String,
}

impl ChatTemplate {
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<ChatTemplate, String> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| format!("the chat template does not parse: {e}"))?;
        Ok(ChatTemplate {
            env,
            bos: bos.to_string(),
            eos: eos.to_string(),
        })
    }

    /// The prompt for `messages` (`(role, content)`), ending with the
    /// assistant's turn.
    pub fn render(&self, messages: &[(&str, &str)]) -> Result<String, String> {
        let messages: Vec<_> = messages
            .iter()
            .map(|(role, content)| context! { role => role, content => content })
            .collect();
        self.env
            .get_template("chat")
            .and_then(|t| {
                t.render(context! {
                    messages => messages,
                    add_generation_prompt => true,
                    bos_token => self.bos,
                    eos_token => self.eos,
                })
            })
            .map_err(|e| format!("the chat template failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(
        template: &str,
        messages: &[(&str, &str)],
        bos: &str,
        eos: &str,
    ) -> Result<String, String> {
        ChatTemplate::new(template, bos, eos)?.render(messages)
    }

    /// SmolLM2's shape: a default system message when none is given.
    const CHATML_WITH_DEFAULT: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_what_the_template_adds_around_the_messages() {
        let out = render(CHATML_WITH_DEFAULT, &[("user", "Hi")], "", "<|im_end|>").unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let t = "{% if messages[0]['content'].strip().startswith('x') %}{{ raise_exception('no x') }}{% endif %}{{ messages[0]['content'].upper() }}";
        assert_eq!(render(t, &[("user", " hi ")], "", "").unwrap(), " HI ");
        let err = render(t, &[("user", " x")], "", "").unwrap_err();
        assert!(err.contains("no x"), "{err}");
        assert!(render("{% if %}", &[], "", "")
            .unwrap_err()
            .contains("does not parse"));
    }
}
