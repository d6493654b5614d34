//! `inspect NAME|ID...`: containers, images and networks as JSON, or through a Go template.

use std::path::Path;

use anyhow::Result;
use clap::Args;

use crate::engine::inspect::{explain, Kind};
use crate::engine::Engine;
use crate::template::Template;

/// `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Print each object through a Go template, one line each: '{{.State.Pid}}',
    /// '{{json .NetworkSettings}}', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}';
    /// `json` prints the array on one line.
    #[arg(short, long)]
    pub format: Option<String>,
    /// Only this kind of object: container, image or network.
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Container names or IDs, images, or networks.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Runs `inspect`: prints what was found; a name that matches nothing is reported on stderr
/// as Docker does ("Error: No such object: X") and makes the exit code 1.
pub fn inspect(root: &Path, a: InspectArgs) -> Result<i32> {
    let kind = a.kind.as_deref().map(Kind::parse).transpose()?;
    // `--format json` is the array on one line, as Docker's.
    let compact = a.format.as_deref() == Some("json");
    let template = a.format.as_deref().filter(|_| !compact).map(Template::parse).transpose()?;
    let engine = Engine::open(root)?;
    let mut documents = Vec::new();
    let mut code = 0;
    for name in &a.names {
        match engine.find_object(name, kind) {
            Ok(object) => {
                if crate::explain::enabled() {
                    explain::lines(&object).into_iter().for_each(|line| crate::explain::step(|| line));
                }
                documents.push(object.document());
            }
            Err(e) => {
                eprintln!("Error: {e}");
                if code == 0 {
                    code = e.exit_code();
                }
            }
        }
    }
    match template {
        Some(t) => {
            for doc in &documents {
                println!("{}", t.render(&doc.to_value())?);
            }
        }
        None if compact => println!("{}", serde_json::to_string(&documents)?),
        None => println!("{}", serde_json::to_string_pretty(&documents)?),
    }
    Ok(code)
}
