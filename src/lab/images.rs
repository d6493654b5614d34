//! The lab's image list (images/build-all's images.txt, shipped in the appliance as
//! /usr/share/shibafu/images/images.txt): `NAME:TAG LAYOUT DIGEST` a line, layouts relative to
//! the list. `lab check` imports from it into its scratch data roots; `lab reset` restores
//! from it.

use std::path::{Path, PathBuf};

use super::LabError;

/// One image the lab ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabImage {
    /// NAME:TAG.
    pub reference: String,
    /// Its OCI layout.
    pub layout: PathBuf,
    /// Its manifest's digest (`-` where the list does not say).
    pub digest: String,
}

/// Reads the list at `list`.
pub fn read(list: &Path) -> Result<Vec<LabImage>, LabError> {
    let failed = |e| LabError::Io(format!("read the lab's image list {} (SHIBAFU_LAB_IMAGES names another)", list.display()), e);
    let list = std::fs::canonicalize(list).map_err(failed)?;
    let text = std::fs::read_to_string(&list).map_err(failed)?;
    let base = list.parent().unwrap_or(Path::new("/"));
    Ok(text
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [reference, layout, ref rest @ ..] => Some(LabImage { reference: reference.into(), layout: base.join(layout), digest: rest.first().unwrap_or(&"-").to_string() }),
            _ => None,
        })
        .collect())
}

/// The entries of `wanted` in the list at `list`, in order; an image it lacks is named.
pub fn find(wanted: &[String], list: &Path) -> Result<Vec<LabImage>, LabError> {
    let all = read(list)?;
    wanted
        .iter()
        .map(|name| all.iter().find(|i| &i.reference == name).cloned().ok_or_else(|| LabError::Invalid(format!("the lab's image list {} has no {name}", list.display()))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_come_from_the_list_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("images.txt");
        std::fs::write(&list, "busybox:latest oci/busybox sha256:aa\npostgres:15 /abs/postgres\n").unwrap();
        let found = find(&["busybox:latest".into(), "postgres:15".into()], &list).unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!((found[0].layout.clone(), found[0].digest.as_str()), (base.join("oci/busybox"), "sha256:aa"));
        assert_eq!((found[1].layout.clone(), found[1].digest.as_str()), (PathBuf::from("/abs/postgres"), "-"));
        let err = find(&["node:18".into()], &list).unwrap_err();
        assert!(err.to_string().contains("has no node:18"), "{err}");
    }
}
