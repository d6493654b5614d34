//! The hostile-input corpus, made by the tests themselves: tar archives written byte by byte
//! (so names, links and headers can be anything an attacker writes), OCI layouts that lie, and
//! bombs. Nothing of it is committed as a binary.

#![allow(dead_code)]

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::path::Path;

/// A tar archive written header by header, with no checks at all.
#[derive(Default)]
pub struct Tar {
    bytes: Vec<u8>,
}

/// Tar type flags.
pub const FILE: u8 = b'0';
pub const HARDLINK: u8 = b'1';
pub const SYMLINK: u8 = b'2';
pub const CHAR: u8 = b'3';
pub const BLOCK: u8 = b'4';
pub const DIR: u8 = b'5';
pub const FIFO: u8 = b'6';

impl Tar {
    /// An empty archive.
    pub fn new() -> Tar {
        Tar::default()
    }

    /// Appends one entry: a ustar header (name cut at 100 bytes), then its data padded to 512.
    pub fn entry(mut self, name: &[u8], kind: u8, link: &[u8], data: &[u8]) -> Tar {
        let mode = if kind == DIR { 0o755 } else { 0o644 };
        self.bytes.extend_from_slice(&header(name, kind, link, data.len() as u64, mode));
        self.bytes.extend_from_slice(data);
        self.pad();
        self
    }

    /// A regular file.
    pub fn file(self, name: &str, data: &[u8]) -> Tar {
        self.entry(name.as_bytes(), FILE, b"", data)
    }

    /// A directory.
    pub fn dir(self, name: &str) -> Tar {
        self.entry(name.as_bytes(), DIR, b"", b"")
    }

    /// A symlink.
    pub fn symlink(self, name: &str, target: &str) -> Tar {
        self.entry(name.as_bytes(), SYMLINK, target.as_bytes(), b"")
    }

    /// A hard link.
    pub fn hardlink(self, name: &str, target: &str) -> Tar {
        self.entry(name.as_bytes(), HARDLINK, target.as_bytes(), b"")
    }

    /// A GNU long name ('L') record, then an entry that takes that name.
    pub fn gnu_long(self, name: &str, kind: u8, data: &[u8]) -> Tar {
        let mut long = name.as_bytes().to_vec();
        long.push(0);
        self.entry(b"././@LongLink", b'L', b"", &long).entry(b"short", kind, b"", data)
    }

    /// A PAX extended header with these records, then an entry they apply to.
    pub fn pax(self, records: &[(&str, &str)], name: &str, kind: u8, link: &str, data: &[u8]) -> Tar {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = format!(" {k}={v}\n");
            // The length counts its own digits.
            let mut len = rest.len() + 1;
            while format!("{len}{rest}").len() != len {
                len += 1;
            }
            body.extend_from_slice(format!("{len}{rest}").as_bytes());
        }
        self.entry(b"pax_header", b'x', b"", &body).entry(name.as_bytes(), kind, link.as_bytes(), data)
    }

    /// The archive with its end marker (two zero blocks) and padding to a 10 KiB record.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        let record = 10240;
        let rem = self.bytes.len() % record;
        if rem != 0 {
            self.bytes.resize(self.bytes.len() + record - rem, 0);
        }
        self.bytes
    }

    fn pad(&mut self) {
        let rem = self.bytes.len() % 512;
        if rem != 0 {
            self.bytes.resize(self.bytes.len() + 512 - rem, 0);
        }
    }
}

/// One ustar header block.
fn header(name: &[u8], kind: u8, link: &[u8], size: u64, mode: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, len: usize, v: &[u8]| h[at..at + v.len().min(len)].copy_from_slice(&v[..v.len().min(len)]);
    put(&mut h, 0, 100, name);
    put(&mut h, 100, 8, format!("{mode:07o}\0").as_bytes());
    put(&mut h, 108, 8, b"0000000\0");
    put(&mut h, 116, 8, b"0000000\0");
    put(&mut h, 124, 12, format!("{size:011o}\0").as_bytes());
    put(&mut h, 136, 12, b"00000000000\0");
    h[156] = kind;
    put(&mut h, 157, 100, link);
    put(&mut h, 257, 6, b"ustar\0");
    put(&mut h, 263, 2, b"00");
    if kind == CHAR || kind == BLOCK {
        put(&mut h, 329, 8, b"0000000\0");
        put(&mut h, 337, 8, b"0000000\0");
    }
    put(&mut h, 148, 8, b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
    h
}

/// gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A tar holding one file of `size` zero bytes, compressed as it is written (the tar itself
/// never sits in memory): a decompression bomb. `zstd` picks the compressor.
pub fn bomb(size: u64, zstd: bool) -> Vec<u8> {
    let sink = Rc::new(RefCell::new(Vec::new()));
    let mut out: Box<dyn Write> = if zstd {
        Box::new(zstd::stream::write::Encoder::new(Shared(sink.clone()), 3).unwrap().auto_finish())
    } else {
        Box::new(flate2::write::GzEncoder::new(Shared(sink.clone()), flate2::Compression::best()))
    };
    out.write_all(&header(b"zeros", FILE, b"", size, 0o644)).unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = size + 1024;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        out.write_all(&zeros[..n]).unwrap();
        left -= n as u64;
    }
    drop(out);
    Rc::try_unwrap(sink).expect("the encoder is gone").into_inner()
}

/// A writer into a shared buffer (the compressor owns its writer).
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// sha256:<hex> of bytes.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// How an OCI layout lies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lie {
    /// The layer blob's content is not what its digest says.
    LayerDigest,
    /// The manifest gives the layer a smaller size than it has.
    LayerSize,
    /// The config's diff_id is not the layer's.
    DiffId,
    /// The manifest's digest climbs out: `sha256:../../...`.
    DigestTraversal,
    /// The manifest's descriptor claims a terabyte.
    HugeManifest,
    /// The layer's blob is a symlink to a file outside the layout.
    BlobSymlink,
    /// The layer itself carries a `.wh...` whiteout.
    LayerWhiteoutDotDot,
}

/// Writes an OCI layout directory at `dir` whose one image lies as `lie` says; `canary` is a
/// file outside that a symlink may point at.
pub fn lying_layout(dir: &Path, lie: Lie, canary: &Path) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer_tar = match lie {
        Lie::LayerWhiteoutDotDot => Tar::new().file(".wh...", b"").finish(),
        _ => Tar::new().file("hello", b"hello\n").finish(),
    };
    let layer = gzip(&layer_tar);
    let mut layer_digest = digest(&layer);
    let write_blob = |bytes: &[u8]| {
        let d = digest(bytes);
        std::fs::write(blobs.join(&d[7..]), bytes).unwrap();
        d
    };
    match lie {
        Lie::LayerDigest => {
            std::fs::write(blobs.join(&layer_digest[7..]), gzip(&Tar::new().file("other", b"x").finish())).unwrap();
        }
        Lie::BlobSymlink => {
            layer_digest = format!("sha256:{}", "e".repeat(64));
            std::os::unix::fs::symlink(canary, blobs.join(&layer_digest[7..])).unwrap();
        }
        _ => {
            write_blob(&layer);
        }
    }
    let diff_id = if lie == Lie::DiffId { format!("sha256:{}", "0".repeat(64)) } else { digest(&layer_tar) };
    let config = format!(r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#);
    let config_digest = write_blob(config.as_bytes());
    let layer_size = if lie == Lie::LayerSize { layer.len() - 10 } else { layer.len() };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_digest}","size":{layer_size}}}]}}"#,
        config.len()
    );
    let mut manifest_digest = write_blob(manifest.as_bytes());
    let mut manifest_size = manifest.len() as u64;
    match lie {
        Lie::DigestTraversal => manifest_digest = "sha256:../../../../../../etc/passwd".into(),
        Lie::HugeManifest => manifest_size = 1 << 40,
        _ => {}
    }
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"1"}}}}]}}"#
    );
    std::fs::write(dir.join("index.json"), index).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}
