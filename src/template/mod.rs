//! Go templates (text/template) over JSON values, for `--format` as Docker takes it:
//! `{{.State.Pid}}`, `{{json .NetworkSettings}}`, `{{range .NetworkSettings.Networks}}...{{end}}`,
//! `{{index .Config.Labels "k"}}`, `{{if}}/{{with}}/{{else}}`, variables (`$`, `$k, $v :=`),
//! pipelines (`.Name | upper`), and Docker's functions (json, join, split, upper, lower,
//! title, pad, truncate, println) with Go's own (print, printf, index, len, and, or, not, eq,
//! ne, lt, le, gt, ge). `define`, `template`, `block`, `break` and `continue` are refused with
//! a clear error. (The gtmpl crate was not used: its last release is from 2021 and it works on
//! a value type of its own with unordered maps.)

mod exec;
mod funcs;
mod parse;

use serde_json::Value;

/// Errors of templates.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template text is malformed.
    #[error("template parsing error: {0}")]
    Parse(String),
    /// The template could not be applied to a value.
    #[error("template: executing {action}: {reason}")]
    Exec {
        /// The action being executed, as written.
        action: String,
        /// What went wrong.
        reason: String,
    },
}

/// Result of template operations.
pub type Result<T> = std::result::Result<T, TemplateError>;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<parse::Node>,
}

impl Template {
    /// Parses template text.
    pub fn parse(text: &str) -> Result<Template> {
        Ok(Template { nodes: parse::parse(text)? })
    }

    /// Applies the template to `data` (the template's `.` and `$`).
    pub fn render(&self, data: &Value) -> Result<String> {
        exec::render(&self.nodes, data)
    }
}

#[cfg(test)]
mod tests;
