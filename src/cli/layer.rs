//! Layer commands (phase 3): prepare-layer, layers, layer rm, commit, gc.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

use crate::engine::Engine;
use crate::storage::pack::PackOptions;

/// `layer ...`.
#[derive(Debug, Subcommand)]
pub enum LayerCommand {
    /// Remove layer names; a layer's files go once nothing uses it.
    Rm {
        /// Layer names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List layers.
    #[command(alias = "ls")]
    List,
}

/// Runs `prepare-layer NAME SOURCE`.
pub fn prepare(root: &Path, name: &str, source: &Path, keep_mtime: bool) -> Result<i32> {
    crate::network::check_name("layer name", name, 63)?;
    let engine = Engine::open(root)?;
    let layer = engine.images().prepare_layer(name, source, PackOptions { keep_mtime, ..Default::default() })?;
    println!("{name} {} ({})", layer.diff_id, super::image::human_size(layer.size));
    Ok(0)
}

/// Runs `layer ...`.
pub fn layer(root: &Path, cmd: LayerCommand) -> Result<i32> {
    match cmd {
        LayerCommand::Rm { names } => {
            let engine = Engine::open(root)?;
            for n in names {
                engine.images().remove_layer_name(&n)?;
                println!("{n}");
            }
            Ok(0)
        }
        LayerCommand::List => layers(root),
    }
}

/// Runs `layers`: name, digest, size and users of every layer.
pub fn layers(root: &Path) -> Result<i32> {
    let engine = Engine::open(root)?;
    println!("{:<24}  {:<19}  {:>10}  {:>6}  {:>10}", "NAME", "DIGEST", "SIZE", "IMAGES", "CONTAINERS");
    for l in engine.images().layer_infos()? {
        let name = if l.names.is_empty() { "<none>".to_string() } else { l.names.join(",") };
        let digest = format!("sha256:{}", &crate::storage::hex(&l.diff_id)[..12]);
        println!("{name:<24}  {digest:<19}  {:>10}  {:>6}  {:>10}", super::image::human_size(l.size), l.images, l.containers);
    }
    Ok(0)
}

/// Runs `commit CONTAINER IMAGE`.
pub fn commit(root: &Path, container: &str, image: &str) -> Result<i32> {
    let row = Engine::open(root)?.commit(container, image)?;
    println!("{}:{} {}", row.name, row.tag, row.config_digest);
    Ok(0)
}

/// Runs `gc`.
pub fn gc(root: &Path) -> Result<i32> {
    let done = Engine::open(root)?.gc()?;
    for line in &done.removed {
        println!("removed {line}");
    }
    println!("gc: {} removed, {} freed", done.removed.len(), super::image::human_size(done.bytes as i64));
    Ok(0)
}
