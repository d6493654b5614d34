//! `list --format`: Docker's `ps` placeholders (`{{.ID}}\t{{.Names}}`, `{{.Label "k"}}`,
//! `{{json .}}`), `table ...` with a header line and aligned columns, and `json` (one object
//! per line).

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::engine::list::{ago, ContainerSummary};

/// Docker's `ps` placeholders of one container, each as text.
pub fn fields(c: &ContainerSummary) -> BTreeMap<&'static str, String> {
    let command = c.command.join(" ");
    let ports: Vec<String> = c.ports.iter().map(|p| p.to_string()).collect();
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    BTreeMap::from([
        ("ID", c.id[..12].to_string()),
        ("Names", c.name.clone()),
        ("Image", c.image.clone()),
        ("Command", format!("\"{command}\"")),
        ("CreatedAt", created_at(&c.created)),
        ("RunningFor", format!("{} ago", ago(&c.created))),
        ("Status", c.status.clone()),
        ("State", c.state.clone()),
        ("Ports", ports.join(", ")),
        ("Networks", c.networks().join(",")),
        ("Labels", labels.join(",")),
        ("Mounts", c.mounts.join(",")),
        ("LocalVolumes", c.mounts.len().to_string()),
        ("Size", "N/A".to_string()),
    ])
}

/// The header Docker prints over a placeholder in a table.
fn header(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID".into(),
        "RunningFor" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        "LocalVolumes" => "LOCAL VOLUMES".into(),
        other => other.to_uppercase(),
    }
}

/// `2026-12-03 15:44:34 +0000 UTC`, Docker's CreatedAt, from RFC 3339.
fn created_at(rfc3339: &str) -> String {
    let t = rfc3339.trim_end_matches('Z').replacen('T', " ", 1);
    format!("{t} +0000 UTC")
}

/// One piece of a parsed template.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(String),
    Label(String),
    Json(Option<String>),
}

/// Parses a Go-template-like format: text, and actions `{{.Field}}`, `{{.Label "key"}}`,
/// `{{json .}}`, `{{json .Field}}`; `\t` and `\n` in the text become tab and newline.
fn parse(format: &str) -> Result<Vec<Piece>> {
    let format = format.replace("\\t", "\t").replace("\\n", "\n");
    let mut pieces = Vec::new();
    let mut rest = format.as_str();
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_string()));
        }
        let end = rest[start..].find("}}").ok_or_else(|| anyhow::anyhow!("template: unclosed action in {format:?}"))? + start;
        let action = rest[start + 2..end].trim();
        pieces.push(action_piece(action)?);
        rest = &rest[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(pieces)
}

fn action_piece(action: &str) -> Result<Piece> {
    let words: Vec<&str> = action.split_whitespace().collect();
    let field = |w: &str| -> Result<String> {
        let name = w.strip_prefix('.').ok_or_else(|| anyhow::anyhow!("template: unsupported action {{{{{action}}}}}: use {{{{.Field}}}}"))?;
        if !FIELDS.contains(&name) {
            bail!("template: can't evaluate field {name} in ps output: use one of .{}", FIELDS.join(" ."));
        }
        Ok(name.to_string())
    };
    match words.as_slice() {
        [".Label", key] => Ok(Piece::Label(key.trim_matches('"').to_string())),
        ["json", "."] => Ok(Piece::Json(None)),
        ["json", w] => Ok(Piece::Json(Some(field(w)?))),
        [w] => Ok(Piece::Field(field(w)?)),
        _ => bail!("template: unsupported action {{{{{action}}}}}: use {{{{.Field}}}}, {{{{.Label \"key\"}}}} or {{{{json .}}}}"),
    }
}

const FIELDS: [&str; 14] = ["ID", "Names", "Image", "Command", "CreatedAt", "RunningFor", "Status", "State", "Ports", "Networks", "Labels", "Mounts", "LocalVolumes", "Size"];

fn render(pieces: &[Piece], c: &ContainerSummary) -> String {
    let f = fields(c);
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.clone(),
            Piece::Field(name) => f[name.as_str()].clone(),
            Piece::Label(key) => c.labels.get(key).cloned().unwrap_or_default(),
            Piece::Json(None) => json_line(c),
            Piece::Json(Some(name)) => serde_json::to_string(&f[name.as_str()]).expect("strings serialize"),
        })
        .collect()
}

fn header_line(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.clone(),
            Piece::Field(name) | Piece::Json(Some(name)) => header(name),
            Piece::Label(key) => format!("LABEL {}", key.to_uppercase()),
            Piece::Json(None) => String::new(),
        })
        .collect()
}

/// One container as Docker's `ps --format json` line, with its addresses too, and every field
/// of our own summary beside Docker's (lowercase: `name`, `state`, `restart_count`, `health`,
/// ...), which scripts read without parsing the status text.
pub fn json_line(c: &ContainerSummary) -> String {
    let mut object: serde_json::Map<String, serde_json::Value> = fields(c).into_iter().map(|(k, v)| (k.to_string(), v.into())).collect();
    object.insert("IPAddresses".into(), serde_json::json!(c.addresses));
    if let Ok(serde_json::Value::Object(ours)) = serde_json::to_value(c) {
        object.extend(ours);
    }
    serde_json::Value::Object(object).to_string()
}

/// Renders the rows as `format` says: `json`, a template, or `table TEMPLATE` (aligned, with
/// a header). `table` alone is for the caller's own table.
pub fn format_rows(format: &str, rows: &[ContainerSummary]) -> Result<String> {
    if format == "json" {
        return Ok(rows.iter().map(|c| json_line(c) + "\n").collect());
    }
    if let Some(template) = format.strip_prefix("table ") {
        let pieces = parse(template.trim())?;
        let lines: Vec<String> = std::iter::once(header_line(&pieces)).chain(rows.iter().map(|c| render(&pieces, c))).collect();
        return Ok(align(&lines));
    }
    let pieces = parse(format)?;
    Ok(rows.iter().map(|c| render(&pieces, c) + "\n").collect())
}

/// Lines of tab-separated cells, padded into columns as Docker's tabwriter (min width 10,
/// padding 3); the last cell of a line is not padded.
fn align(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().filter(|r| i + 1 < r.len()).map(|r| r[i].chars().count() + 3).max().unwrap_or(0).max(10))
        .collect();
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                out.push_str(&format!("{cell:<width$}", width = widths[i]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> ContainerSummary {
        ContainerSummary {
            id: "abcdef0123456789".repeat(4),
            name: "web".into(),
            image: "busybox:latest".into(),
            command: vec!["sleep".into(), "100".into()],
            created: "2026-12-03T15:44:34Z".into(),
            state: "running".into(),
            status: "Up 3 seconds".into(),
            exit_code: None,
            network: "bridge".into(),
            addresses: vec!["172.20.0.2".into()],
            ports: vec![],
            labels: [("tier".to_string(), "front".to_string())].into(),
            mounts: vec!["data".into()],
            restart_policy: "no".into(),
            restart_count: 0,
            restart_backoff_ms: 0,
            health: None,
        }
    }

    #[test]
    fn templates_fill_dockers_placeholders() {
        let out = format_rows(r#"{{.ID}}\t{{.Names}}\t{{.Status}} {{.Label "tier"}} {{.Labels}} {{.Command}} {{.CreatedAt}}"#, &[summary()]).unwrap();
        assert_eq!(out, "abcdef012345\tweb\tUp 3 seconds front tier=front \"sleep 100\" 2026-12-03 15:44:34 +0000 UTC\n");
    }

    #[test]
    fn tables_have_a_header_and_aligned_columns() {
        let out = format_rows("table {{.Names}}\t{{.State}}\t{{.Networks}}", &[summary()]).unwrap();
        assert_eq!(out, "NAMES     STATE     NETWORKS\nweb       running   bridge\n");
    }

    #[test]
    fn json_is_one_object_per_line() {
        let out = format_rows("json", &[summary(), summary()]).unwrap();
        assert_eq!(out.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!((v["Names"].as_str(), v["IPAddresses"][0].as_str()), (Some("web"), Some("172.20.0.2")));
        assert_eq!((v["name"].as_str(), v["restart_count"].as_u64(), v["state"].as_str()), (Some("web"), Some(0), Some("running")));
        assert_eq!(format_rows("{{json .Names}}", &[summary()]).unwrap(), "\"web\"\n");
    }

    #[test]
    fn unknown_fields_and_actions_are_refused() {
        for (format, why) in [("{{.Nope}}", "can't evaluate field Nope"), ("{{range .}}", "unsupported action"), ("{{.ID", "unclosed")] {
            let err = format_rows(format, &[summary()]).unwrap_err().to_string();
            assert!(err.contains(why), "{format}: {err}");
        }
    }
}
