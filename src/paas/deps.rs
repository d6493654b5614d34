//! An app's dependencies, offline: the lab has no package registry, so they come in the
//! archive. Node's are `node_modules/` as `npm install` left it (checked against package.json's
//! `dependencies`); Python's are wheels in `vendor/`, unpacked into `/app/.python` (on
//! `PYTHONPATH`) under the same rules as the code, as `pip install --no-index --find-links vendor
//! --target .python` would put them (checked against requirements.txt). What is missing fails
//! the build and says what to do.

use std::path::Path;

use super::detect::Runtime;

/// What the dependency step did: lines for the build log, and variables for the image.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deps {
    /// What was done, as a person would do it.
    pub log: Vec<String>,
    /// KEY=VALUE for the image's config.
    pub env: Vec<String>,
}

/// Checks (node) or installs (python) the dependencies of the code in `app`.
pub fn prepare(app: &Path, runtime: &Runtime) -> Result<Deps, String> {
    match runtime {
        Runtime::Node(_) => node(app),
        Runtime::Python(_) => python(app),
        _ => Ok(Deps::default()),
    }
}

fn node(app: &Path) -> Result<Deps, String> {
    let Ok(text) = std::fs::read_to_string(app.join("package.json")) else { return Ok(Deps::default()) };
    let pkg: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("package.json is not JSON: {e}"))?;
    let wanted: Vec<&String> = pkg.get("dependencies").and_then(|d| d.as_object()).map(|d| d.keys().collect()).unwrap_or_default();
    let missing: Vec<&str> = wanted.iter().filter(|name| !app.join("node_modules").join(name).join("package.json").is_file()).map(|n| n.as_str()).collect();
    if !missing.is_empty() {
        return Err(format!(
            "package.json depends on {}, which node_modules/ does not hold: the lab has no npm registry to install from; run `npm install` where one is reachable and put node_modules/ in the archive",
            missing.join(", ")
        ));
    }
    let log = if wanted.is_empty() { vec![] } else { vec![format!("node_modules/ holds what package.json depends on: {}", wanted.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))] };
    Ok(Deps { log, env: vec![] })
}

/// A distribution name as wheels and requirements compare them (PEP 503).
fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace(['-', '.'], "_")
}

/// The names requirements.txt asks for (versions, extras, markers and comments left out).
fn requirements(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('-'))
        .map(|l| l.split(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c))).next().unwrap_or("").to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

fn python(app: &Path) -> Result<Deps, String> {
    let wanted = std::fs::read_to_string(app.join("requirements.txt")).map(|t| requirements(&t)).unwrap_or_default();
    let mut wheels: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(app.join("vendor"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let dist = file.strip_suffix(".whl")?.split('-').next()?.to_string();
            Some((normalize(&dist), e.path()))
        })
        .collect();
    wheels.sort();
    let missing: Vec<&String> = wanted.iter().filter(|w| !wheels.iter().any(|(d, _)| *d == normalize(w))).collect();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        return Err(format!(
            "requirements.txt needs {}, which vendor/ holds no wheel of: the lab has no package index to install from; run `pip download -d vendor -r requirements.txt` where one is reachable and put vendor/ in the archive",
            names.join(", ")
        ));
    }
    if wheels.is_empty() {
        return Ok(Deps::default());
    }
    let target = app.join(".python");
    std::fs::create_dir_all(&target).map_err(|e| format!("create .python: {e}"))?;
    let mut log = vec!["pip install --no-index --find-links vendor --target .python -r requirements.txt  # each wheel unpacked, as pip does for these".to_string()];
    for (_, wheel) in &wheels {
        let name = wheel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        super::code::unpack(wheel, &target).map_err(|e| format!("vendor/{name}: {e}"))?;
        log.push(format!("unpacked vendor/{name} into /app/.python"));
    }
    Ok(Deps { log, env: vec!["PYTHONPATH=/app/.python".into()] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_names_leave_versions_extras_and_comments_out() {
        assert_eq!(requirements("Flask>=2.0  # web\n\n-r other.txt\nrequests[socks]==2.31\nzope.interface\n"), ["Flask", "requests", "zope.interface"]);
        assert_eq!(normalize("Zope.Interface"), normalize("zope-interface"));
    }

    #[test]
    fn node_modules_must_hold_every_dependency() {
        let app = tempfile::tempdir().unwrap();
        std::fs::write(app.path().join("package.json"), r#"{"dependencies":{"left-pad":"1","@scope/x":"2"}}"#).unwrap();
        let err = node(app.path()).unwrap_err();
        assert!(err.contains("left-pad, @scope/x") || err.contains("@scope/x, left-pad"), "{err}");
        assert!(err.contains("no npm registry"));
        for name in ["left-pad", "@scope/x"] {
            std::fs::create_dir_all(app.path().join("node_modules").join(name)).unwrap();
            std::fs::write(app.path().join("node_modules").join(name).join("package.json"), "{}").unwrap();
        }
        assert_eq!(node(app.path()).unwrap().log.len(), 1);
    }

    #[test]
    fn wheels_in_vendor_are_unpacked_and_what_is_missing_is_named() {
        let app = tempfile::tempdir().unwrap();
        std::fs::write(app.path().join("requirements.txt"), "greet==1.0\nflask\n").unwrap();
        std::fs::create_dir(app.path().join("vendor")).unwrap();
        let wheel = app.path().join("vendor/greet-1.0-py3-none-any.whl");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        z.start_file("greet/__init__.py", zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut z, b"def hello(): return 'hi'\n").unwrap();
        z.finish().unwrap();
        let err = python(app.path()).unwrap_err();
        assert!(err.starts_with("requirements.txt needs flask,") && err.contains("no package index"), "{err}");
        std::fs::write(app.path().join("requirements.txt"), "greet==1.0\n").unwrap();
        let deps = python(app.path()).unwrap();
        assert_eq!(deps.env, ["PYTHONPATH=/app/.python"]);
        assert!(app.path().join(".python/greet/__init__.py").is_file());
    }
}
