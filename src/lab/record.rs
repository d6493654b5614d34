//! Which phases the learner's own work passed (`lab check --mine`), and when: lines
//! `PHASE UNIX_TIME` in `lab-done` of the data root, written to a temp name and renamed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::LabError;

/// The record's file in the data root `root`.
pub fn path(root: &Path) -> PathBuf {
    root.join("lab-done")
}

/// The phases done, with when; an absent or unreadable record reads as none.
pub fn read(root: &Path) -> BTreeMap<u8, u64> {
    let text = std::fs::read_to_string(path(root)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (phase, at) = l.split_once(' ')?;
            Some((phase.parse().ok()?, at.trim().parse().ok()?))
        })
        .collect()
}

/// Records `phase` as done now.
pub fn mark_done(root: &Path, phase: u8) -> Result<(), LabError> {
    let mut done = read(root);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    done.insert(phase, now);
    let text: String = done.iter().map(|(p, at)| format!("{p} {at}\n")).collect();
    let tmp = root.join(".lab-done.tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path(root)))
        .map_err(|e| {
            LabError::Io(
                format!("record phase {phase} as done in {}", root.display()),
                e,
            )
        })
}

/// Forgets every phase done (`lab reset`); whether there was a record.
pub fn clear(root: &Path) -> Result<bool, LabError> {
    match std::fs::remove_file(path(root)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(LabError::Io("remove the lab's record".into(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_phases_are_kept_with_their_time_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).is_empty());
        mark_done(dir.path(), 3).unwrap();
        mark_done(dir.path(), 0).unwrap();
        assert_eq!(read(dir.path()).keys().copied().collect::<Vec<_>>(), [0, 3]);
        assert!(clear(dir.path()).unwrap());
        assert!(!clear(dir.path()).unwrap() && read(dir.path()).is_empty());
    }
}
