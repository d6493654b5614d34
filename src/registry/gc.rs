//! `registry gc`: mark and sweep. Marked are every manifest and what it refers to, in its own
//! repository; a repository's link to anything unmarked goes, and then every blob of the shared
//! store that neither the registry nor the local images want (the rule of `shibafu gc`). A dry
//! run does the same in a transaction it rolls back, and deletes no file.

use std::collections::HashSet;
use std::path::Path;

use crate::engine::Engine;

/// What `registry gc` removed (or, with `dry_run`, would remove), one line each.
pub fn collect(root: &Path, dry_run: bool) -> anyhow::Result<Vec<String>> {
    let engine = Engine::open(root)?;
    // Exclusive: no writer is between storing a blob and recording it (storage::lock_layers).
    let _removing = crate::storage::lock_layers(root, true)?;
    let tx = engine.db.immediate()?;
    let mut marked: HashSet<(String, String)> = HashSet::new();
    for m in engine.db.registry_manifests()? {
        marked.extend(m.refs.iter().map(|d| (m.repo.clone(), d.clone())));
        marked.insert((m.repo.clone(), m.digest.clone()));
    }
    let mut removed = Vec::new();
    for (repo, digest) in engine.db.blob_links()? {
        if !marked.contains(&(repo.clone(), digest.clone())) {
            engine.db.unlink_blob(&repo, &digest)?;
            removed.push(format!("link {repo}@{digest}"));
        }
    }
    let files = engine.unwanted_blobs()?;
    if dry_run {
        tx.rollback()?;
    } else {
        tx.commit()?;
    }
    for (path, digest) in files {
        if !dry_run {
            std::fs::remove_file(&path)?;
        }
        removed.push(format!("blob {digest}"));
    }
    Ok(removed)
}
