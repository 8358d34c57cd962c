//! minijinja rendering for recipe strings and templates: strict (an undefined name is an error),
//! no HTML escaping, trailing newlines kept. Pure.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use crate::error::bad_input;

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
    env
}

impl Default for Renderer {
    fn default() -> Self {
        Self { env: strict_environment() }
    }
}

impl Renderer {
    /// Renders `source`; `name` identifies it in errors (`recipe.yaml artifacts[kubelet].url`).
    pub fn render<C: Serialize>(&self, name: &str, source: &str, context: C) -> anyhow::Result<String> {
        self.env
            .render_named_str(name, source, minijinja::Value::from(minijinja::value::Serde(&context)))
            .map_err(|e| bad_input(describe(name, &e)))
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
    fn syntax_errors_name_the_line() {
        let err = Renderer::default().render("t", "a\nb {% if %}\n", json!({})).unwrap_err().to_string();
        assert!(err.starts_with("t:2:") && err.contains("syntax"), "{err}");
    }
}
