//! Applying parsed nodes to a JSON value, as Go's text/template applies a template to a value
//! decoded from JSON (a missing key prints `<no value>`, null prints `<nil>`).

use serde_json::Value;

use super::funcs::{self, format_value};
use super::parse::{Arg, Node, Pipeline};
use super::{Result, TemplateError};

/// A value, or the absence of one (a key a map does not have).
pub type Val = Option<Value>;

/// Renders `nodes` with `data` as `.` and `$`.
pub fn render(nodes: &[Node], data: &Value) -> Result<String> {
    let mut state = State { out: String::new(), scopes: vec![vec![(String::new(), data.clone())]] };
    state.nodes(nodes, &Some(data.clone()))?;
    Ok(state.out)
}

struct State {
    out: String,
    /// Variables, innermost scope last; `$` is the name "".
    scopes: Vec<Vec<(String, Value)>>,
}

fn fail(pipe: &Pipeline, reason: impl Into<String>) -> TemplateError {
    TemplateError::Exec { action: format!("{{{{{}}}}}", pipe.text), reason: reason.into() }
}

impl State {
    fn nodes(&mut self, nodes: &[Node], dot: &Val) -> Result<()> {
        for node in nodes {
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(pipe) => {
                    let value = self.pipeline(pipe, dot)?;
                    if pipe.vars.is_empty() {
                        self.out.push_str(&format_value(&value));
                    }
                }
                Node::Cond { with, branches, otherwise } => self.cond(*with, branches, otherwise, dot)?,
                Node::Range { pipe, body, otherwise } => self.range(pipe, body, otherwise, dot)?,
            }
        }
        Ok(())
    }

    fn scoped(&mut self, nodes: &[Node], dot: &Val, vars: Vec<(String, Value)>) -> Result<()> {
        self.scopes.push(vars);
        let result = self.nodes(nodes, dot);
        self.scopes.pop();
        result
    }

    fn cond(&mut self, with: bool, branches: &[(Pipeline, Vec<Node>)], otherwise: &[Node], dot: &Val) -> Result<()> {
        for (pipe, body) in branches {
            self.scopes.push(Vec::new());
            let value = self.pipeline(pipe, dot);
            let vars = self.scopes.pop().unwrap_or_default();
            let value = value?;
            if funcs::truthy(&value) {
                let inner = if with { value } else { dot.clone() };
                return self.scoped(body, &inner, vars);
            }
        }
        self.scoped(otherwise, dot, Vec::new())
    }

    fn range(&mut self, pipe: &Pipeline, body: &[Node], otherwise: &[Node], dot: &Val) -> Result<()> {
        let items: Vec<(Value, Value)> = match self.commands(pipe, dot)? {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.into_iter().enumerate().map(|(i, v)| (Value::from(i), v)).collect(),
            Some(Value::Object(m)) => {
                let mut items: Vec<(Value, Value)> = m.into_iter().map(|(k, v)| (Value::String(k), v)).collect();
                items.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
                items
            }
            Some(other) => return Err(fail(pipe, format!("range can't iterate over {}", format_value(&Some(other))))),
        };
        if items.is_empty() {
            return self.scoped(otherwise, dot, Vec::new());
        }
        if pipe.vars.len() > 2 || pipe.assign {
            return Err(fail(pipe, "range declares at most two variables, with :="));
        }
        for (key, item) in items {
            let vars = match pipe.vars.as_slice() {
                [] => Vec::new(),
                [v] => vec![(v.clone(), item.clone())],
                [k, v, ..] => vec![(k.clone(), key), (v.clone(), item.clone())],
            };
            self.scoped(body, &Some(item), vars)?;
        }
        Ok(())
    }

    /// Runs a pipeline and binds its variables in the current scope.
    fn pipeline(&mut self, pipe: &Pipeline, dot: &Val) -> Result<Val> {
        let value = self.commands(pipe, dot)?;
        for name in &pipe.vars {
            let bound = value.clone().unwrap_or(Value::Null);
            if pipe.assign {
                let slot = self.scopes.iter_mut().rev().flat_map(|s| s.iter_mut()).find(|(n, _)| n == name).ok_or_else(|| fail(pipe, format!("undefined variable ${name}")))?;
                slot.1 = bound;
            } else {
                self.scopes.last_mut().expect("a scope is open").push((name.clone(), bound));
            }
        }
        Ok(value)
    }

    fn commands(&mut self, pipe: &Pipeline, dot: &Val) -> Result<Val> {
        let mut last: Option<Val> = None;
        for cmd in &pipe.cmds {
            last = Some(self.command(pipe, cmd, dot, last)?);
        }
        Ok(last.flatten())
    }

    fn command(&mut self, pipe: &Pipeline, cmd: &[Arg], dot: &Val, piped: Option<Val>) -> Result<Val> {
        if let Some(Arg::Func(name)) = cmd.first() {
            let mut args = cmd[1..].iter().map(|a| self.arg(pipe, a, dot)).collect::<Result<Vec<_>>>()?;
            args.extend(piped);
            return funcs::call(name, &args).map_err(|reason| fail(pipe, reason));
        }
        if cmd.len() > 1 || piped.is_some() {
            return Err(fail(pipe, "only a function takes arguments"));
        }
        self.arg(pipe, &cmd[0], dot)
    }

    fn arg(&mut self, pipe: &Pipeline, arg: &Arg, dot: &Val) -> Result<Val> {
        match arg {
            Arg::Field(fields) => fields_of(pipe, dot.clone(), fields, "."),
            Arg::Var(name, fields) => {
                let value = self.scopes.iter().rev().flat_map(|s| s.iter().rev()).find(|(n, _)| n == name).map(|(_, v)| v.clone());
                let value = value.ok_or_else(|| fail(pipe, format!("undefined variable ${name}")))?;
                fields_of(pipe, Some(value), fields, &format!("${name}"))
            }
            Arg::Lit(v) => Ok(Some(v.clone())),
            Arg::Func(name) => funcs::call(name, &[]).map_err(|reason| fail(pipe, reason)),
            Arg::Sub(sub, fields) => {
                let value = self.commands(sub, dot)?;
                fields_of(pipe, value, fields, "(...)")
            }
        }
    }
}

/// `.A.B` of a value: a missing key gives no value; a field of null, a string or a number is
/// an error, as in Go.
fn fields_of(pipe: &Pipeline, mut value: Val, fields: &[String], base: &str) -> Result<Val> {
    let mut path = base.trim_end_matches('.').to_string();
    for f in fields {
        value = match value {
            Some(Value::Object(mut m)) => m.remove(f),
            None | Some(Value::Null) => return Err(fail(pipe, format!("nil pointer evaluating {path}.{f}"))),
            Some(other) => return Err(fail(pipe, format!("can't evaluate field {f} in {} {path}", funcs::kind(&other)))),
        };
        path = format!("{path}.{f}");
    }
    Ok(value)
}
