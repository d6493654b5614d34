//! The registry client commands: push-layer, create-manifest, push, pull.

use std::path::Path;

use anyhow::{anyhow, Result};

use crate::engine::Engine;
use crate::image::distribution::RemoteRef;

fn remote(text: &str) -> Result<RemoteRef> {
    RemoteRef::parse(text).ok_or_else(|| anyhow!("{text:?} names no registry: write HOST[:PORT]/REPO[:TAG], like localhost:5000/base/alpine:latest"))
}

/// `push-layer LAYER REF`.
pub fn push_layer(root: &Path, layer: &str, target: &str) -> Result<i32> {
    let target = remote(target)?;
    let engine = Engine::open(root)?;
    let digest = engine.images().push_layer(layer, &target)?;
    println!("{target} {digest}");
    Ok(0)
}

/// `create-manifest --layers A,B REF`.
pub fn create_manifest(root: &Path, layers: &[String], target: &str) -> Result<i32> {
    let target = remote(target)?;
    let engine = Engine::open(root)?;
    let digest = engine.images().create_manifest(layers, &target)?;
    println!("{target} {digest}");
    Ok(0)
}

/// `push IMAGE REF`.
pub fn push(root: &Path, image: &str, target: &str) -> Result<i32> {
    let target = remote(target)?;
    let engine = Engine::open(root)?;
    let store = engine.images();
    let row = store.resolve(image)?;
    let digest = store.push(&row, &target)?;
    println!("{target} {digest}");
    Ok(0)
}

/// `pull REF`.
pub fn pull(root: &Path, source: &str) -> Result<i32> {
    let source = remote(source)?;
    let engine = Engine::open(root)?;
    let row = engine.images().pull(&source)?;
    println!("{} {}", row.reference(), row.manifest_digest);
    Ok(0)
}
