//! The functions a template may call, and how Go prints values (`fmt`'s `%v`).

use serde_json::Value;

use super::exec::Val;

/// Calls a function by name; the error is the reason, for the caller to place.
pub fn call(name: &str, args: &[Val]) -> Result<Val, String> {
    let want = |n: usize| if args.len() == n { Ok(()) } else { Err(format!("wrong number of args for {name}: want {n} got {}", args.len())) };
    let text = |i: usize| format_value(&args[i]);
    Ok(Some(match name {
        "json" => {
            want(1)?;
            Value::String(serde_json::to_string(args[0].as_ref().unwrap_or(&Value::Null)).expect("JSON values serialize"))
        }
        "join" => {
            want(2)?;
            match &args[0] {
                Some(Value::Array(items)) => Value::String(items.iter().map(|v| format_value(&Some(v.clone()))).collect::<Vec<_>>().join(&text(1))),
                other => return Err(format!("join needs a list, not {}", format_value(other))),
            }
        }
        "split" => {
            want(2)?;
            Value::Array(text(0).split(text(1).as_str()).map(|s| Value::String(s.into())).collect())
        }
        "upper" => {
            want(1)?;
            Value::String(text(0).to_uppercase())
        }
        "lower" => {
            want(1)?;
            Value::String(text(0).to_lowercase())
        }
        "title" => {
            want(1)?;
            Value::String(title(&text(0)))
        }
        "pad" => {
            want(3)?;
            let (left, right) = (count(&args[1])?, count(&args[2])?);
            Value::String(format!("{}{}{}", " ".repeat(left), text(0), " ".repeat(right)))
        }
        "truncate" => {
            want(2)?;
            Value::String(text(0).chars().take(count(&args[1])?).collect())
        }
        "print" => Value::String(sprint(args)),
        "println" => Value::String(args.iter().map(format_value).collect::<Vec<_>>().join(" ") + "\n"),
        "printf" => {
            let Some(Some(Value::String(format))) = args.first() else { return Err("printf needs a format string first".into()) };
            Value::String(printf(format, &args[1..])?)
        }
        "index" => return index(args),
        "len" => {
            want(1)?;
            Value::from(match &args[0] {
                Some(Value::Array(a)) => a.len(),
                Some(Value::Object(m)) => m.len(),
                Some(Value::String(s)) => s.len(),
                other => return Err(format!("len of {}", format_value(other))),
            })
        }
        "not" => {
            want(1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "and" | "or" => {
            if args.is_empty() {
                return Err(format!("{name} needs arguments"));
            }
            let stop = if name == "and" { args.iter().find(|a| !truthy(a)) } else { args.iter().find(|a| truthy(a)) };
            return Ok(stop.unwrap_or(args.last().expect("not empty")).clone());
        }
        "eq" => {
            if args.len() < 2 {
                return Err("eq needs two arguments at least".into());
            }
            Value::Bool(args[1..].iter().any(|b| same(&args[0], b)))
        }
        "ne" => {
            want(2)?;
            Value::Bool(!same(&args[0], &args[1]))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let order = compare(&args[0], &args[1])?;
            Value::Bool(match name {
                "lt" => order.is_lt(),
                "le" => order.is_le(),
                "gt" => order.is_gt(),
                _ => order.is_ge(),
            })
        }
        other => return Err(format!("function {other:?} not defined")),
    }))
}

/// `index X K1 K2 ...`: a map's key or a list's element, in turn.
fn index(args: &[Val]) -> Result<Val, String> {
    let Some((first, keys)) = args.split_first() else { return Err("index needs a value".into()) };
    let mut value = first.clone();
    for key in keys {
        value = match (value, key) {
            (Some(Value::Object(mut m)), Some(Value::String(k))) => m.remove(k),
            (Some(Value::Array(a)), Some(Value::Number(n))) => {
                let i = n.as_u64().filter(|i| (*i as usize) < a.len()).ok_or_else(|| format!("index out of range: {n}"))?;
                Some(a[i as usize].clone())
            }
            (None | Some(Value::Null), _) => None,
            (v, k) => return Err(format!("can't index {} with {}", format_value(&v), format_value(k))),
        };
    }
    Ok(value)
}

/// A non-negative count argument.
fn count(v: &Val) -> Result<usize, String> {
    v.as_ref().and_then(Value::as_u64).map(|n| n as usize).ok_or_else(|| format!("expected a count, got {}", format_value(v)))
}

/// Go's truth: false, 0, nil, and empty strings, lists and maps are false.
pub fn truthy(v: &Val) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
    }
}

fn same(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        (None, Some(Value::Null)) | (Some(Value::Null), None) => true,
        _ => a == b,
    }
}

fn compare(a: &Val, b: &Val) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64().partial_cmp(&y.as_f64()).ok_or_else(|| "incomparable numbers".into()),
        (Some(Value::String(x)), Some(Value::String(y))) => Ok(x.cmp(y)),
        _ => Err(format!("incompatible types for comparison: {} and {}", format_value(a), format_value(b))),
    }
}

fn title(s: &str) -> String {
    let mut out = String::new();
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

/// `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(args: &[Val]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_string = |v: &Val| matches!(v, Some(Value::String(_)));
        if i > 0 && !is_string(a) && !is_string(&args[i - 1]) {
            out.push(' ');
        }
        out.push_str(&format_value(a));
    }
    out
}

/// `fmt.Sprintf` for the verbs people use in formats: %s %v %d %q %t %%.
fn printf(format: &str, args: &[Val]) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = format.chars();
    let mut next = args.iter();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars.next().ok_or("printf format ends with %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = next.next().ok_or_else(|| format!("printf: missing argument for %{verb}"))?;
        match verb {
            's' | 'v' | 'd' | 't' => out.push_str(&format_value(arg)),
            'q' => out.push_str(&serde_json::to_string(&format_value(arg)).expect("strings serialize")),
            other => return Err(format!("printf verb %{other} is not supported (use %s, %v, %d, %q or %t)")),
        }
    }
    Ok(out)
}

/// A value's kind, as an error message names it.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// How Go's `%v` prints a value decoded from JSON: maps as `map[k:v]` (keys sorted), lists
/// as `[a b]`, whole numbers without a decimal point.
pub fn format_value(v: &Val) -> String {
    match v {
        None => "<no value>".into(),
        Some(Value::Null) => "<nil>".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        Some(Value::Array(a)) => format!("[{}]", a.iter().map(|x| format_value(&Some(x.clone()))).collect::<Vec<_>>().join(" ")),
        Some(Value::Object(m)) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            format!("map[{}]", keys.iter().map(|k| format!("{k}:{}", format_value(&Some(m[*k].clone())))).collect::<Vec<_>>().join(" "))
        }
    }
}
