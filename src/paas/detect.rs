//! What a deployment runs: the runtime's image and the command picked from the code, as a
//! person would pick them by hand (a `Procfile`'s `web:` line first, then what the runtime
//! expects to find), and why.

use std::path::{Path, PathBuf};

/// A runtime a deployment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// `node:18`: Debian's nodejs.
    Node(String),
    /// `python:3.11`.
    Python(String),
    /// `static`: nginx serves the tree.
    Static,
    /// Any other image reference: its own command, or the Procfile's.
    Image(String),
}

/// The image `static` runs on.
pub const NGINX_IMAGE: &str = "nginx:latest";

impl Runtime {
    /// Reads the `runtime` field: one of the lab's runtimes or an image reference.
    pub fn parse(text: &str) -> Result<Runtime, String> {
        match text {
            "static" => Ok(Runtime::Static),
            "node:18" => Ok(Runtime::Node(text.into())),
            "python:3.11" => Ok(Runtime::Python(text.into())),
            _ if text.contains(['/', ':', '@']) && crate::image::reference::parse(text).is_ok() => Ok(Runtime::Image(text.into())),
            _ => Err(format!("unknown runtime {text:?}: use node:18, python:3.11, static, or an image reference with its tag (REPO:TAG)")),
        }
    }

    /// The image it runs on.
    pub fn image(&self) -> &str {
        match self {
            Runtime::Node(image) | Runtime::Python(image) | Runtime::Image(image) => image,
            Runtime::Static => NGINX_IMAGE,
        }
    }
}

/// What the build makes and runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The command (empty: the image's own).
    pub command: Vec<String>,
    /// Files the build adds beside the code, by path inside the container (`/etc/...`).
    pub extra_files: Vec<(PathBuf, String)>,
    /// Why this command, in a sentence.
    pub why: String,
}

/// Picks the command for the code in `app` (the tree that becomes `/app`). `command` (from
/// the deploy's own field) wins over everything; `port` is where the app must listen.
pub fn detect(app: &Path, runtime: &Runtime, command: Option<&[String]>, port: u16) -> Result<Plan, String> {
    if let Some(command) = command {
        return Ok(Plan { command: command.to_vec(), extra_files: vec![], why: format!("the deploy's command field: {}", command.join(" ")) });
    }
    if let Some(line) = procfile_web(app)? {
        return Ok(shell(&line, "the Procfile's web: line"));
    }
    match runtime {
        Runtime::Node(_) => node(app),
        Runtime::Python(_) => python(app),
        Runtime::Static => Ok(static_site(app, port)),
        Runtime::Image(image) => Ok(Plan { command: vec![], extra_files: vec![], why: format!("no Procfile: {image}'s own command") }),
    }
}

fn shell(line: &str, why: &str) -> Plan {
    Plan { command: vec!["/bin/sh".into(), "-c".into(), line.into()], extra_files: vec![], why: format!("{why}: {line}") }
}

/// The command of a `Procfile`'s `web:` line, if the file has one.
fn procfile_web(app: &Path) -> Result<Option<String>, String> {
    let Some(text) = read_small(&app.join("Procfile"))? else { return Ok(None) };
    Ok(text.lines().find_map(|l| l.trim().strip_prefix("web:")).map(|c| c.trim().to_string()).filter(|c| !c.is_empty()))
}

fn node(app: &Path) -> Result<Plan, String> {
    if let Some(text) = read_small(&app.join("package.json"))? {
        let pkg: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("package.json is not JSON: {e}"))?;
        if let Some(start) = pkg.pointer("/scripts/start").and_then(|s| s.as_str()) {
            // The image has node but no npm: the script runs as npm would run it, with the
            // app's own tools on its PATH.
            let line = format!("PATH=/app/node_modules/.bin:$PATH; {start}");
            return Ok(Plan { command: vec!["/bin/sh".into(), "-c".into(), line], extra_files: vec![], why: format!("package.json's scripts.start: {start}") });
        }
        if let Some(main) = pkg.get("main").and_then(|s| s.as_str()) {
            return Ok(Plan { command: vec!["node".into(), main.into()], extra_files: vec![], why: format!("package.json's main: node {main}") });
        }
    }
    if app.join("server.js").is_file() {
        return Ok(Plan { command: vec!["node".into(), "server.js".into()], extra_files: vec![], why: "server.js: node server.js".into() });
    }
    Err("nothing to run: no Procfile web: line, no package.json scripts.start or main, no server.js".into())
}

fn python(app: &Path) -> Result<Plan, String> {
    let gunicorn = read_small(&app.join("requirements.txt"))?.is_some_and(|r| r.lines().any(|l| l.trim().to_ascii_lowercase().starts_with("gunicorn")));
    for file in ["app.py", "main.py"] {
        if !app.join(file).is_file() {
            continue;
        }
        if gunicorn {
            let module = file.trim_end_matches(".py");
            let line = format!("python3 -m gunicorn --bind 0.0.0.0:$PORT {module}:app");
            return Ok(Plan { command: vec!["/bin/sh".into(), "-c".into(), line.clone()], extra_files: vec![], why: format!("requirements.txt names gunicorn and {file} is there: {line}") });
        }
        return Ok(Plan { command: vec!["python3".into(), file.into()], extra_files: vec![], why: format!("{file}: python3 {file}") });
    }
    Err("nothing to run: no Procfile web: line, no app.py or main.py".into())
}

/// Where the static runtime's nginx config goes.
pub const NGINX_CONF: &str = "/etc/shibafu/nginx.conf";

fn static_site(app: &Path, port: u16) -> Plan {
    let index = if app.join("index.html").is_file() { "index.html" } else { "index.html (none in the archive: / answers 403)" };
    let conf = format!(
        "user www-data;\nworker_processes 1;\npid /tmp/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n    include /etc/nginx/mime.types;\n    access_log /dev/stdout;\n    server {{\n        listen {port};\n        root /app;\n        index index.html;\n    }}\n}}\n"
    );
    Plan {
        command: vec!["nginx".into(), "-c".into(), NGINX_CONF.into(), "-g".into(), "daemon off;".into()],
        extra_files: vec![(PathBuf::from(NGINX_CONF), conf)],
        why: format!("static: nginx serves /app on port {port}, {index}"),
    }
}

/// A small file of the app's, if it is there (a plain file of at most 1 MiB).
fn read_small(path: &Path) -> Result<Option<String>, String> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(None),
        Ok(m) if !m.is_file() => Ok(None),
        Ok(m) if m.len() > 1 << 20 => Err(format!("{name} is over 1 MiB")),
        Ok(_) => std::fs::read_to_string(path).map(Some).map_err(|e| format!("read {name}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn node18() -> Runtime {
        Runtime::Node("node:18".into())
    }

    #[test]
    fn a_procfile_web_line_wins() {
        let dir = app(&[("Procfile", "worker: x\nweb: node web.js --fast\n"), ("server.js", "")]);
        let plan = detect(dir.path(), &node18(), None, 8080).unwrap();
        assert_eq!(plan.command, ["/bin/sh", "-c", "node web.js --fast"]);
        assert!(plan.why.starts_with("the Procfile's web: line"));
    }

    #[test]
    fn the_command_field_wins_over_the_procfile() {
        let dir = app(&[("Procfile", "web: a\n")]);
        let command = ["/bin/sh".to_string(), "-c".into(), "b".into()];
        assert_eq!(detect(dir.path(), &node18(), Some(&command), 8080).unwrap().command, command);
    }

    #[test]
    fn node_runs_the_start_script_then_main_then_server_js() {
        let dir = app(&[("package.json", r#"{"scripts":{"start":"node a.js"},"main":"b.js"}"#)]);
        assert_eq!(detect(dir.path(), &node18(), None, 8080).unwrap().command[2], "PATH=/app/node_modules/.bin:$PATH; node a.js");
        let dir = app(&[("package.json", r#"{"main":"b.js"}"#), ("server.js", "")]);
        assert_eq!(detect(dir.path(), &node18(), None, 8080).unwrap().command, ["node", "b.js"]);
        let dir = app(&[("server.js", "")]);
        assert_eq!(detect(dir.path(), &node18(), None, 8080).unwrap().command, ["node", "server.js"]);
        let dir = app(&[("index.js", "")]);
        assert!(detect(dir.path(), &node18(), None, 8080).unwrap_err().contains("no package.json scripts.start"));
        let dir = app(&[("package.json", "{")]);
        assert!(detect(dir.path(), &node18(), None, 8080).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn python_runs_app_py_before_main_py_and_gunicorn_when_named() {
        let py = Runtime::Python("python:3.11".into());
        let dir = app(&[("main.py", ""), ("app.py", "")]);
        assert_eq!(detect(dir.path(), &py, None, 8080).unwrap().command, ["python3", "app.py"]);
        let dir = app(&[("main.py", ""), ("requirements.txt", "flask\nGunicorn==21\n")]);
        assert_eq!(detect(dir.path(), &py, None, 8080).unwrap().command[2], "python3 -m gunicorn --bind 0.0.0.0:$PORT main:app");
        let dir = app(&[("x.py", "")]);
        assert!(detect(dir.path(), &py, None, 8080).unwrap_err().contains("no app.py or main.py"));
    }

    #[test]
    fn static_writes_an_nginx_config_on_the_port() {
        let dir = app(&[("index.html", "hi")]);
        let plan = detect(dir.path(), &Runtime::Static, None, 9000).unwrap();
        assert_eq!(plan.command[..3], ["nginx", "-c", NGINX_CONF]);
        assert_eq!(plan.extra_files[0].0, PathBuf::from(NGINX_CONF));
        assert!(plan.extra_files[0].1.contains("listen 9000;"));
    }

    #[test]
    fn runtimes_are_the_labs_three_or_an_image_with_a_tag() {
        assert_eq!(Runtime::parse("static").unwrap().image(), NGINX_IMAGE);
        assert_eq!(Runtime::parse("localhost:5000/base:1").unwrap(), Runtime::Image("localhost:5000/base:1".into()));
        assert!(Runtime::parse("ruby").unwrap_err().contains("unknown runtime"));
        assert!(Runtime::parse("Bad Image:1").is_err());
    }
}
