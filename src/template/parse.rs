//! Template text -> nodes: text, actions, and the if/range/with blocks around them.

use super::{Result, TemplateError};

/// One piece of a template.
#[derive(Debug, Clone)]
pub enum Node {
    /// Text copied as is.
    Text(String),
    /// `{{pipeline}}`: its value is printed (unless it declares a variable).
    Action(Pipeline),
    /// `{{if}}` (or `{{with}}`, which also sets `.`), with its `else if` branches.
    Cond { with: bool, branches: Vec<(Pipeline, Vec<Node>)>, otherwise: Vec<Node> },
    /// `{{range pipeline}} body {{else}} otherwise {{end}}`.
    Range { pipe: Pipeline, body: Vec<Node>, otherwise: Vec<Node> },
}

/// Commands joined by `|`, maybe declaring (`$x :=`) or assigning (`$x =`) variables.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The action as written, for error messages.
    pub text: String,
    /// Variables declared or assigned.
    pub vars: Vec<String>,
    /// `=` rather than `:=`.
    pub assign: bool,
    /// The commands, first to last; each one's value is the last argument of the next.
    pub cmds: Vec<Vec<Arg>>,
}

/// One operand of a command.
#[derive(Debug, Clone)]
pub enum Arg {
    /// `.A.B` (no names: `.` itself).
    Field(Vec<String>),
    /// `$name.A.B` (`$` alone is the data the template was given).
    Var(String, Vec<String>),
    /// A function name.
    Func(String),
    /// A literal.
    Lit(serde_json::Value),
    /// `(pipeline).A.B`.
    Sub(Box<Pipeline>, Vec<String>),
}

fn err(text: impl Into<String>) -> TemplateError {
    TemplateError::Parse(text.into())
}

/// Parses a whole template.
pub fn parse(text: &str) -> Result<Vec<Node>> {
    let pieces = split(text)?;
    let mut at = 0;
    let (nodes, end) = block(&pieces, &mut at)?;
    match end {
        None => Ok(nodes),
        Some(word) => Err(err(format!("unexpected {{{{{word}}}}}"))),
    }
}

/// Text, or the inside of an action.
enum Piece {
    Text(String),
    Action(String),
}

/// Splits text and actions, applying `{{- ` and ` -}}` trims and dropping comments.
fn split(text: &str) -> Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut before = &rest[..open];
        if trim_next {
            before = before.trim_start();
        }
        let mut inner_start = open + 2;
        if rest[inner_start..].starts_with("- ") || rest[inner_start..].starts_with("-\n") || rest[inner_start..].starts_with("-\t") {
            before = before.trim_end();
            inner_start += 1;
        }
        pieces.push(Piece::Text(before.to_string()));
        let close = inner_start + find_close(&rest[inner_start..]).ok_or_else(|| err(format!("unclosed action starting {:?}", &rest[open..rest.len().min(open + 20)])))?;
        let mut inner = &rest[inner_start..close];
        trim_next = false;
        if inner.ends_with(" -") || inner.ends_with("\n-") || inner.ends_with("\t-") {
            inner = &inner[..inner.len() - 1];
            trim_next = true;
        }
        let inner = inner.trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            pieces.push(Piece::Action(inner.to_string()));
        }
        rest = &rest[close + 2..];
    }
    pieces.push(Piece::Text(if trim_next { rest.trim_start() } else { rest }.to_string()));
    Ok(pieces)
}

/// Where the `}}` closing an action is, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => i += s[i + 1..].find('`')? + 1,
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Nodes up to the `{{end}}` or `{{else...}}` that closes them (returned as its words).
fn block(pieces: &[Piece], at: &mut usize) -> Result<(Vec<Node>, Option<String>)> {
    let mut nodes = Vec::new();
    while let Some(piece) = pieces.get(*at) {
        *at += 1;
        let action = match piece {
            Piece::Text(t) if t.is_empty() => continue,
            Piece::Text(t) => {
                nodes.push(Node::Text(t.clone()));
                continue;
            }
            Piece::Action(a) => a,
        };
        let (word, rest) = action.split_once(char::is_whitespace).map_or((action.as_str(), ""), |(w, r)| (w, r.trim()));
        match word {
            "end" | "else" => return Ok((nodes, Some(action.clone()))),
            "if" | "with" => nodes.push(cond(word == "with", rest, pieces, at)?),
            "range" => {
                let pipe = pipeline(rest)?;
                let (body, end) = block(pieces, at)?;
                let otherwise = match end.as_deref() {
                    Some("end") => Vec::new(),
                    Some("else") => closed(pieces, at, "range")?,
                    _ => return Err(err(format!("{{{{range {rest}}}}} has no {{{{end}}}}"))),
                };
                nodes.push(Node::Range { pipe, body, otherwise });
            }
            "define" | "template" | "block" | "break" | "continue" => return Err(err(format!("{{{{{word}}}}} is not supported in --format"))),
            _ => nodes.push(Node::Action(pipeline(action)?)),
        }
    }
    Ok((nodes, None))
}

/// The rest of an if/with: its body, `else if`/`else with` branches, `else`, `end`.
fn cond(with: bool, first: &str, pieces: &[Piece], at: &mut usize) -> Result<Node> {
    let keyword = if with { "with" } else { "if" };
    let mut branches = Vec::new();
    let mut pipe = pipeline(first)?;
    loop {
        let (body, end) = block(pieces, at)?;
        branches.push((pipe, body));
        let end = end.ok_or_else(|| err(format!("{{{{{keyword} {first}}}}} has no {{{{end}}}}")))?;
        if end == "end" {
            return Ok(Node::Cond { with, branches, otherwise: Vec::new() });
        }
        if end == "else" {
            let otherwise = closed(pieces, at, keyword)?;
            return Ok(Node::Cond { with, branches, otherwise });
        }
        match end.strip_prefix("else ").map(str::trim).and_then(|r| r.strip_prefix(keyword)) {
            Some(cond) if cond.starts_with(char::is_whitespace) => pipe = pipeline(cond.trim())?,
            _ => return Err(err(format!("unexpected {{{{{end}}}}} in {{{{{keyword}}}}}"))),
        }
    }
}

/// An `{{else}}` branch, which must end with `{{end}}`.
fn closed(pieces: &[Piece], at: &mut usize, keyword: &str) -> Result<Vec<Node>> {
    let (nodes, end) = block(pieces, at)?;
    match end.as_deref() {
        Some("end") => Ok(nodes),
        Some(other) => Err(err(format!("unexpected {{{{{other}}}}} after {{{{else}}}} in {{{{{keyword}}}}}"))),
        None => Err(err(format!("{{{{{keyword}}}}} has no {{{{end}}}}"))),
    }
}

/// Tokens of an action.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// `.A.B`, `.`.
    Field(Vec<String>),
    /// `$x.A`.
    Var(String, Vec<String>),
    Ident(String),
    Lit(serde_json::Value),
    Open,
    Close,
    Pipe,
    Declare,
    Assign,
    Comma,
}

/// Parses the inside of an action as a pipeline.
pub fn pipeline(text: &str) -> Result<Pipeline> {
    let tokens = lex(text)?;
    let mut at = 0;
    let pipe = pipe_tokens(text, &tokens, &mut at)?;
    if at < tokens.len() {
        return Err(err(format!("unexpected {:?} in {{{{{text}}}}}", tokens[at].0)));
    }
    Ok(pipe)
}

fn pipe_tokens(text: &str, tokens: &[(Token, bool)], at: &mut usize) -> Result<Pipeline> {
    let mut vars = Vec::new();
    let mut assign = false;
    // `$a, $b :=` or `$a =` before the commands.
    let mut look = *at;
    let mut names = Vec::new();
    while let Some((Token::Var(name, fields), _)) = tokens.get(look) {
        if !fields.is_empty() {
            break;
        }
        names.push(name.clone());
        look += 1;
        match tokens.get(look).map(|t| &t.0) {
            Some(Token::Comma) => look += 1,
            Some(Token::Declare) | Some(Token::Assign) => {
                assign = tokens[look].0 == Token::Assign;
                vars = std::mem::take(&mut names);
                *at = look + 1;
                break;
            }
            _ => break,
        }
    }
    let mut cmds = Vec::new();
    let mut cmd = Vec::new();
    while let Some((token, _)) = tokens.get(*at) {
        match token {
            Token::Close => break,
            Token::Pipe => {
                if cmd.is_empty() {
                    return Err(err(format!("missing command before | in {{{{{text}}}}}")));
                }
                cmds.push(std::mem::take(&mut cmd));
                *at += 1;
                continue;
            }
            Token::Open => {
                *at += 1;
                let sub = pipe_tokens(text, tokens, at)?;
                if tokens.get(*at).map(|t| &t.0) != Some(&Token::Close) {
                    return Err(err(format!("unclosed ( in {{{{{text}}}}}")));
                }
                *at += 1;
                let fields = match tokens.get(*at) {
                    Some((Token::Field(f), false)) if !f.is_empty() => {
                        *at += 1;
                        f.clone()
                    }
                    _ => Vec::new(),
                };
                cmd.push(Arg::Sub(Box::new(sub), fields));
                continue;
            }
            Token::Field(f) => cmd.push(Arg::Field(f.clone())),
            Token::Var(v, f) => cmd.push(Arg::Var(v.clone(), f.clone())),
            Token::Ident(name) => cmd.push(Arg::Func(name.clone())),
            Token::Lit(v) => cmd.push(Arg::Lit(v.clone())),
            Token::Declare | Token::Assign | Token::Comma => return Err(err(format!("unexpected {token:?} in {{{{{text}}}}}"))),
        }
        *at += 1;
    }
    if cmd.is_empty() {
        return Err(err(if cmds.is_empty() { format!("missing value in {{{{{text}}}}}") } else { format!("missing command after | in {{{{{text}}}}}") }));
    }
    cmds.push(cmd);
    Ok(Pipeline { text: text.to_string(), vars, assign, cmds })
}

/// Splits an action into tokens, each with whether space came before it.
fn lex(text: &str) -> Result<Vec<(Token, bool)>> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut spaced = true;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            spaced = true;
            i += 1;
            continue;
        }
        let token = match c {
            '(' => {
                i += 1;
                Token::Open
            }
            ')' => {
                i += 1;
                Token::Close
            }
            '|' => {
                i += 1;
                Token::Pipe
            }
            ',' => {
                i += 1;
                Token::Comma
            }
            '=' => {
                i += 1;
                Token::Assign
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Token::Declare
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(err(format!("unterminated string in {{{{{text}}}}}"))),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            s.push(match chars.get(i) {
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some(&other) => other,
                                None => return Err(err(format!("unterminated string in {{{{{text}}}}}"))),
                            });
                        }
                        Some(&other) => s.push(other),
                    }
                    i += 1;
                }
                i += 1;
                Token::Lit(serde_json::Value::String(s))
            }
            '`' => {
                let end = chars[i + 1..].iter().position(|&c| c == '`').ok_or_else(|| err(format!("unterminated raw string in {{{{{text}}}}}")))?;
                let s: String = chars[i + 1..i + 1 + end].iter().collect();
                i += end + 2;
                Token::Lit(serde_json::Value::String(s))
            }
            '.' => {
                let (fields, next) = field_chain(&chars, i);
                i = next;
                Token::Field(fields)
            }
            '$' => {
                let name_end = (i + 1..chars.len()).find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_')).unwrap_or(chars.len());
                let name: String = chars[i + 1..name_end].iter().collect();
                let (fields, next) = if chars.get(name_end) == Some(&'.') { field_chain(&chars, name_end) } else { (Vec::new(), name_end) };
                i = next;
                Token::Var(name, fields)
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let end = (i + 1..chars.len()).find(|&j| !(chars[j].is_ascii_alphanumeric() || chars[j] == '.' || chars[j] == '_')).unwrap_or(chars.len());
                let word: String = chars[i..end].iter().collect();
                i = end;
                Token::Lit(number(&word).ok_or_else(|| err(format!("bad number {word:?} in {{{{{text}}}}}")))?)
            }
            c if c.is_alphabetic() || c == '_' => {
                let end = (i..chars.len()).find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_')).unwrap_or(chars.len());
                let word: String = chars[i..end].iter().collect();
                i = end;
                match word.as_str() {
                    "true" => Token::Lit(true.into()),
                    "false" => Token::Lit(false.into()),
                    "nil" => Token::Lit(serde_json::Value::Null),
                    _ => Token::Ident(word),
                }
            }
            other => return Err(err(format!("unexpected {other:?} in {{{{{text}}}}}"))),
        };
        out.push((token, spaced));
        spaced = false;
    }
    Ok(out)
}

/// `.A.B` starting at `chars[i] == '.'`: the names, and where the chain ends.
fn field_chain(chars: &[char], mut i: usize) -> (Vec<String>, usize) {
    let mut fields = Vec::new();
    while chars.get(i) == Some(&'.') {
        let end = (i + 1..chars.len()).find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_')).unwrap_or(chars.len());
        if end == i + 1 {
            i += 1;
            break;
        }
        fields.push(chars[i + 1..end].iter().collect());
        i = end;
    }
    (fields, i)
}

fn number(word: &str) -> Option<serde_json::Value> {
    if let Ok(n) = word.parse::<i64>() {
        return Some(n.into());
    }
    word.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(serde_json::Value::Number)
}
