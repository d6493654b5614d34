//! Capabilities as runc applies them: drop the bounding set, keep capabilities across the user
//! switch, then set effective, permitted, inheritable and (best effort) ambient sets.

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::LinuxCapabilities;

use super::error::{Result, RuntimeError};
use crate::explain;

/// The capability sets of a process, resolved to the kernel's names.
pub struct CapabilityPlan {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

impl CapabilityPlan {
    /// Resolves the spec's capability names; unknown names are an error.
    pub fn from_spec(spec: &LinuxCapabilities) -> Result<Self> {
        Ok(CapabilityPlan {
            bounding: resolve(spec.bounding())?,
            effective: resolve(spec.effective())?,
            permitted: resolve(spec.permitted())?,
            inheritable: resolve(spec.inheritable())?,
            ambient: resolve(spec.ambient())?,
        })
    }

    /// Step one, while still root: shrink the bounding set.
    pub fn drop_bounding(&self) -> Result<()> {
        explain::step(|| format!("capsh --drop-bounding-except={}", names(&self.bounding)));
        for cap in caps::all() {
            if !self.bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).or_else(ignore_unsupported)
                    .map_err(|e| RuntimeError::Init(format!("drop {cap} from the bounding set: {e}")))?;
            }
        }
        Ok(())
    }

    /// Step two, after the user switch: set the process's own sets.
    pub fn apply(&self) -> Result<()> {
        explain::step(|| format!("capsh --caps={}+ep", names(&self.effective)));
        for (set, value) in [
            (CapSet::Effective, &self.effective),
            (CapSet::Permitted, &self.permitted),
            (CapSet::Inheritable, &self.inheritable),
        ] {
            caps::set(None, set, value).map_err(|e| RuntimeError::Init(format!("set {set:?} capabilities: {e}")))?;
        }
        // Like runc: an ambient capability that is not also inheritable cannot be raised.
        for cap in &self.ambient {
            let _ = caps::raise(None, CapSet::Ambient, *cap);
        }
        Ok(())
    }
}

fn ignore_unsupported(e: caps::errors::CapsError) -> std::result::Result<(), caps::errors::CapsError> {
    // Capabilities newer than the running kernel cannot be dropped and need not be.
    if e.to_string().contains("Invalid argument") { Ok(()) } else { Err(e) }
}

fn resolve(set: &Option<oci_spec::runtime::Capabilities>) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for cap in set.iter().flatten() {
        let name = serde_json::to_value(cap).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let cap = Capability::from_str(&name).map_err(|_| RuntimeError::Init(format!("unknown capability {name:?}")))?;
        out.insert(cap);
    }
    Ok(out)
}

fn names(set: &CapsHashSet) -> String {
    let mut list: Vec<String> = set.iter().map(|c| c.to_string().to_lowercase()).collect();
    list.sort();
    list.join(",")
}
