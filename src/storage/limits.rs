//! How far an archive from elsewhere may go: a layer's unpacked size, its compression ratio,
//! and what may follow its end. A 2 MiB gzip can unpack to 2 GB, and `/dev/zero` never ends;
//! both stop at these limits. The defaults fit real images; a user raises them with
//! `SHIBAFU_MAX_LAYER_SIZE` (bytes, or with k/m/g/t) and `SHIBAFU_MAX_LAYER_RATIO`.

use super::{Result, StorageError};

/// Environment variable that raises (or lowers) the unpacked size limit of one layer.
pub const SIZE_VAR: &str = "SHIBAFU_MAX_LAYER_SIZE";
/// Environment variable that sets the largest unpacked/compressed ratio of one layer.
pub const RATIO_VAR: &str = "SHIBAFU_MAX_LAYER_RATIO";
/// A layer may unpack to 16 GiB by default (the largest real layers are a few GiB).
pub const DEFAULT_MAX_SIZE: u64 = 16 << 30;
/// A layer may unpack to 200 times its compressed size by default (gzip of real files stays
/// far below; gzip of zeros reaches about 1000).
pub const DEFAULT_MAX_RATIO: u64 = 200;
/// The ratio is judged only past this many unpacked bytes: a small tar is mostly padding
/// and compresses far beyond any ratio.
pub const RATIO_FLOOR: u64 = 64 << 20;
/// What may follow a tar's end marker (its padding to a record) before the rest is refused.
pub const MAX_TRAILING: u64 = 4 << 20;

/// The limits one unpack runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest unpacked (tar) size in bytes.
    pub max_size: u64,
    /// Largest unpacked/compressed ratio.
    pub max_ratio: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_size: DEFAULT_MAX_SIZE, max_ratio: DEFAULT_MAX_RATIO }
    }
}

impl Limits {
    /// The defaults, changed by the environment variables when they are set.
    pub fn from_env() -> Result<Limits> {
        let mut limits = Limits::default();
        if let Ok(text) = std::env::var(SIZE_VAR) {
            limits.max_size = parse_size(&text).map_err(|e| StorageError::OverLimit(format!("{SIZE_VAR}: {e}")))?;
        }
        if let Ok(text) = std::env::var(RATIO_VAR) {
            limits.max_ratio = match text.trim().parse::<u64>() {
                Ok(n) if n >= 1 => n,
                _ => return Err(StorageError::OverLimit(format!("{RATIO_VAR}: invalid ratio {text:?}: use a whole number of at least 1"))),
            };
        }
        Ok(limits)
    }

    /// Checks what was unpacked so far against the limits; `compressed` is what was read of a
    /// compressed archive (None for a plain tar).
    pub fn check(&self, unpacked: u64, compressed: Option<u64>) -> Result<()> {
        if unpacked > self.max_size {
            return Err(StorageError::OverLimit(format!(
                "the layer unpacks to more than {} (the limit; {SIZE_VAR} raises it)",
                human(self.max_size)
            )));
        }
        if let Some(packed) = compressed.filter(|_| unpacked > RATIO_FLOOR) {
            if unpacked / packed.max(1) > self.max_ratio {
                return Err(StorageError::OverLimit(format!(
                    "the layer unpacks to more than {} times its compressed size, a decompression bomb ({} from {}; {RATIO_VAR} raises the limit of {})",
                    self.max_ratio,
                    human(unpacked),
                    human(packed),
                    self.max_ratio
                )));
            }
        }
        Ok(())
    }
}

/// Parses a size: bytes, or a number with b, k, m, g or t (powers of 1024); positive, and
/// refused when it does not fit in 63 bits.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let lower = text.trim().to_lowercase();
    let (num, shift) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 10),
        Some('m') => (&lower[..lower.len() - 1], 20),
        Some('g') => (&lower[..lower.len() - 1], 30),
        Some('t') => (&lower[..lower.len() - 1], 40),
        Some('b') => (&lower[..lower.len() - 1], 0),
        _ => (lower.as_str(), 0),
    };
    let invalid = || format!("invalid size {text:?}: use a positive number with an optional k, m, g or t");
    let n: u64 = num.parse().map_err(|_| invalid())?;
    if n == 0 {
        return Err(invalid());
    }
    n.checked_mul(1u64 << shift)
        .filter(|v| *v <= i64::MAX as u64)
        .ok_or_else(|| format!("size {text:?} is too large: at most {} bytes", i64::MAX))
}

/// Bytes as a person reads them (binary units).
pub fn human(bytes: u64) -> String {
    let (value, unit) = scaled(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]);
    if unit == "B" { format!("{bytes} B") } else { format!("{value:.1} {unit}") }
}

/// `bytes` divided by `base` until it is under it (or the units run out), with its unit.
pub fn scaled(bytes: u64, base: f64, units: &[&'static str]) -> (f64, &'static str) {
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= base && unit < units.len() - 1 {
        value /= base;
        unit += 1;
    }
    (value, units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_overflow_is_refused() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        for bad in ["0", "-1", "x", "", "1.5g"] {
            assert!(parse_size(bad).unwrap_err().starts_with("invalid size"), "{bad}");
        }
        assert!(parse_size("17179869184g").unwrap_err().contains("too large"));
        assert!(parse_size("9223372036854775808").unwrap_err().contains("too large"));
    }

    #[test]
    fn a_bomb_is_caught_by_its_ratio_and_a_big_tar_by_its_size() {
        let limits = Limits { max_size: 1 << 30, max_ratio: 100 };
        assert!(limits.check(RATIO_FLOOR, Some(1)).is_ok(), "small layers are not judged by ratio");
        assert!(limits.check(RATIO_FLOOR + 1, Some(RATIO_FLOOR / 50)).is_ok());
        let err = limits.check(RATIO_FLOOR + 1, Some(RATIO_FLOOR / 1000)).unwrap_err().to_string();
        assert!(err.contains("decompression bomb") && err.contains(RATIO_VAR), "{err}");
        assert!(limits.check(1 << 30, None).is_ok());
        let err = limits.check((1 << 30) + 1, None).unwrap_err().to_string();
        assert!(err.contains("more than 1.0 GiB") && err.contains(SIZE_VAR), "{err}");
    }
}
