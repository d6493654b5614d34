//! Image commands: image import, images, export, bundle.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Subcommand;

use crate::engine::Engine;
use crate::image::reference;

/// `image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image layout (directory or tar) or a rootfs tarball (plain or gzip, as a
    /// one-layer image).
    Import {
        /// The layout directory, layout tar or rootfs tarball.
        source: PathBuf,
        /// NAME[:TAG]; for a layout, which manifest (by its ref.name tag) and its name here.
        /// Needed for a rootfs tarball.
        reference: Option<String>,
    },
    /// List images.
    #[command(alias = "ls")]
    List,
    /// Show an image: IDs, layers with their blobs, config.
    Inspect {
        /// Image.
        image: String,
    },
    /// Remove images (refused while a container uses one).
    Rm {
        /// Images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Write an image as an OCI image layout: a directory, or a tar (DEST ending in .tar, or -).
    Export {
        /// Image.
        image: String,
        /// Directory, FILE.tar, or - for a tar on stdout.
        dest: PathBuf,
    },
}

/// Runs `image ...`.
pub fn image(root: &Path, cmd: ImageCommand) -> Result<i32> {
    match cmd {
        ImageCommand::Import { source, reference: text } => {
            let r = text.map(|t| reference::parse(&t).map_err(anyhow::Error::msg)).transpose()?;
            let engine = Engine::open(root)?;
            let store = engine.images();
            let rows = if crate::image::layout::is_layout(&source) {
                store.import_layout(&source, r.as_ref())?
            } else {
                let Some(r) = r else { bail!("{} is a rootfs tarball: give the image a name (shibafu image import {} NAME[:TAG])", source.display(), source.display()) };
                vec![store.import_rootfs(&source, &r)?]
            };
            for row in rows {
                println!("{}:{} {}", row.name, row.tag, row.config_digest);
            }
            Ok(0)
        }
        ImageCommand::List => images(root),
        ImageCommand::Inspect { image } => {
            let engine = Engine::open(root)?;
            let store = engine.images();
            println!("{}", serde_json::to_string_pretty(&store.inspect(&store.resolve(&image)?)?)?);
            Ok(0)
        }
        ImageCommand::Rm { images } => {
            let engine = Engine::open(root)?;
            let store = engine.images();
            let containers = engine.db.containers()?;
            for text in images {
                let row = store.resolve(&text)?;
                let tag = row.reference();
                let users = containers.iter().filter(|c| c.image == tag).count();
                store.remove(&row, users)?;
                println!("untagged {tag}");
            }
            Ok(0)
        }
        ImageCommand::Export { image, dest } => {
            if dest.as_os_str() == "-" && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                bail!("refusing to write a tar to a terminal: redirect it");
            }
            let engine = Engine::open(root)?;
            let store = engine.images();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            store.export_layout(&store.resolve(&image)?, &dest, &mut out)?;
            out.flush()?;
            Ok(0)
        }
    }
}

/// Runs `images`.
pub fn images(root: &Path) -> Result<i32> {
    let engine = Engine::open(root)?;
    println!("{:<40}  {:<12}  {:<12}  {:<22}  {:>10}", "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE");
    for i in engine.db.images()? {
        let id = &crate::storage::hex(&i.config_digest)[..12];
        println!("{:<40}  {:<12}  {:<12}  {:<22}  {:>10}", i.name, i.tag, id, format!("{} ago", crate::engine::list::ago(&i.created_at)), human_size(i.size));
    }
    Ok(0)
}

/// Bytes as Docker prints them (`docker images`' kB, MB, GB, four significant digits): the
/// pull progress lines' format, one formatter for both.
pub fn human_size(bytes: i64) -> String {
    crate::image::progress::layers::human_size(bytes.max(0) as u64)
}

/// Runs `export IMAGE`: the flattened rootfs as a tar on stdout.
pub fn export_image(root: &Path, image: &str) -> Result<i32> {
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("refusing to write a tar to a terminal: redirect it (shibafu export {image} | tar -C DIR -xf -)");
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    Engine::open(root)?.export(image, &mut out)?;
    out.flush()?;
    Ok(0)
}

/// Runs `bundle IMAGE DIR`: DIR/rootfs and DIR/config.json, ready for `runc run`.
pub fn bundle(root: &Path, image: &str, dir: &Path, command: &[String], terminal: bool) -> Result<i32> {
    Engine::open(root)?.bundle(image, dir, command, terminal)?;
    println!("{}", dir.display());
    Ok(0)
}
