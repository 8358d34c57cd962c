//! minijinja rendering for recipe strings and templates: strict (an undefined name is an error),
//! no HTML escaping, trailing newlines kept, and bounded: at most [`FUEL`] instructions and
//! [`MAX_OUTPUT`] bytes of output per template, and SIGINT/SIGTERM stop it. Pure.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use crate::error::bad_input;
use crate::util::human_bytes;

/// Instructions one template may run (a few thousand for the largest built-in one; ten million
/// take well under a second).
pub const FUEL: u64 = 10_000_000;

/// Bytes one template may write.
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// A configured minijinja environment.
pub struct Renderer {
    env: Environment<'static>,
}

/// Strict (an undefined name is an error), no escaping, trailing newlines kept.
pub fn strict_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    let syntax = minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build();
    env.set_syntax(syntax.expect("the default delimiters are valid"));
    env.set_fuel(Some(FUEL));
    env
}

/// Renders `source` in `env` within [`MAX_OUTPUT`], stopping when cancellation is requested;
/// `name` identifies it in errors. Fuel is the environment's.
pub fn render_bounded(
    env: &Environment<'_>,
    name: &str,
    source: &str,
    context: minijinja::Value,
) -> anyhow::Result<String> {
    tracing::debug!("rendering {name}");
    let template = env.template_from_named_str(name, source).map_err(|e| bad_input(describe(name, &e)))?;
    let mut out = Bounded { bytes: Vec::new(), stop: None };
    let result = template.render_captured_to(context, &mut out);
    match (result, out.stop) {
        (Ok(_), _) => {
            String::from_utf8(out.bytes).map_err(|e| bad_input(format!("{name}: the output is not UTF-8: {e}")))
        }
        (Err(_), Some(Stop::Cancelled)) => Err(crate::util::cancel::interrupted()),
        (Err(_), Some(Stop::TooLarge)) => {
            Err(bad_input(format!("{name}: the output is larger than {}", human_bytes(MAX_OUTPUT as u64))))
        }
        (Err(e), None) => Err(bad_input(describe(name, &e))),
    }
}

/// Why [`Bounded`] refused a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    TooLarge,
    Cancelled,
}

/// A template's output: refuses writes past [`MAX_OUTPUT`] or once cancellation is requested.
struct Bounded {
    bytes: Vec<u8>,
    stop: Option<Stop>,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if crate::util::cancel::requested() {
            self.stop = Some(Stop::Cancelled);
        } else if self.bytes.len() + buf.len() > MAX_OUTPUT {
            self.stop = Some(Stop::TooLarge);
        }
        if self.stop.is_some() {
            return Err(std::io::Error::other("template output refused"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Self { env: strict_environment() }
    }
}

impl Renderer {
    /// Renders `source`; `name` identifies it in errors (`recipe.yaml artifacts[kubelet].url`).
    pub fn render<C: Serialize>(&self, name: &str, source: &str, context: C) -> anyhow::Result<String> {
        render_bounded(&self.env, name, source, minijinja::Value::from(minijinja::value::Serde(&context)))
    }
}

/// One line naming the template, the line and what went wrong.
pub fn describe(name: &str, error: &minijinja::Error) -> String {
    let line = error.line().map(|l| format!(":{l}")).unwrap_or_default();
    let detail = error.detail().map(|d| format!(": {d}")).unwrap_or_default();
    format!("{name}{line}: {}{detail}", error.kind())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_and_keeps_trailing_newline_without_escaping() {
        let out = Renderer::default().render("t", "a={{ x }} <&>\n", json!({"x": "<b>"})).unwrap();
        assert_eq!(out, "a=<b> <&>\n");
    }

    #[test]
    fn undefined_names_fail_with_template_and_line() {
        let err = Renderer::default().render("templates/unit", "ok\n{{ nope }}\n", json!({})).unwrap_err().to_string();
        assert!(err.starts_with("templates/unit:2:") && err.contains("undefined"), "{err}");
    }

    #[test]
    fn endless_loops_run_out_of_fuel() {
        let source = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}";
        let err = Renderer::default().render("templates/loop", source, json!({})).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().starts_with("templates/loop") && err.to_string().contains("fuel"), "{err}");
    }

    #[test]
    fn output_is_capped() {
        let big = format!("{{{{ 'x' * {} }}}}", MAX_OUTPUT + 1);
        let err = Renderer::default().render("templates/big", &big, json!({})).unwrap_err().to_string();
        assert_eq!(err, "templates/big: the output is larger than 1.0 MiB");
        let fits = format!("{{{{ 'x' * {MAX_OUTPUT} }}}}");
        assert_eq!(Renderer::default().render("t", &fits, json!({})).unwrap().len(), MAX_OUTPUT);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = Renderer::default().render("t", "a\nb {% if %}\n", json!({})).unwrap_err().to_string();
        assert!(err.starts_with("t:2:") && err.contains("syntax"), "{err}");
    }
}
