//! Fetching the blobs of a pull: a few at a time (`SHIBAFU_MAX_CONCURRENT_DOWNLOADS`, 3 by
//! default, as Docker's max-concurrent-downloads), each streamed into its partial download
//! (`storage::partial`), which continues an interrupted one with a Range request, and stored
//! only once its digest is verified. The first failure stops the others: their requests are
//! dropped, their bytes so far stay as partials for the next pull, and nothing unverified
//! reaches the store.

use futures::TryStreamExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::super::progress::layers::{Board, Step};
use super::super::{ImageError, Result};
use super::client::{failed, Registry};
use super::resume::{decide, Resume};
use crate::storage::blobs::BlobStore;
use crate::storage::partial::{Partial, Partials};
use crate::storage::StorageError;

/// Environment variable that sets how many blobs a pull fetches at once.
pub const CONCURRENCY_VAR: &str = "SHIBAFU_MAX_CONCURRENT_DOWNLOADS";
/// How many blobs a pull fetches at once by default (Docker's default too).
pub const DEFAULT_CONCURRENCY: usize = 3;
/// The most `SHIBAFU_MAX_CONCURRENT_DOWNLOADS` may ask for.
pub const MAX_CONCURRENCY: usize = 32;

/// A blob to fetch, as its descriptor names it.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// `sha256:<hex>`, checked to be one.
    pub digest: String,
    /// Its size by the descriptor: more bytes than this are refused.
    pub size: u64,
    /// Whether it has a line on the board (layers do; the config does not).
    pub shown: bool,
}

/// How many blobs to fetch at once: `SHIBAFU_MAX_CONCURRENT_DOWNLOADS`, or 3.
pub fn concurrency() -> Result<usize> {
    parse_concurrency(std::env::var(CONCURRENCY_VAR).ok().as_deref())
}

fn parse_concurrency(text: Option<&str>) -> Result<usize> {
    let Some(text) = text else { return Ok(DEFAULT_CONCURRENCY) };
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err(ImageError::Setting(format!("{CONCURRENCY_VAR}={text:?}: use a whole number from 1 to {MAX_CONCURRENCY}"))),
    }
}

/// One pull's fetching: where the blobs go and what shows their progress.
pub struct Fetcher<'a> {
    /// The registry.
    pub registry: &'a Registry,
    /// The repository the blobs are in.
    pub repo: &'a str,
    /// The store verified blobs go to.
    pub store: &'a BlobStore,
    /// Where downloads are kept until verified.
    pub partials: &'a Partials,
    /// The pull's owned scratch layout's `blobs/sha256`: each verified blob is linked there
    /// before it enters the store, so `gc` knows it is wanted.
    pub lend_to: &'a std::path::Path,
    /// The pull's progress board.
    pub board: &'a Board,
}

impl Fetcher<'_> {
    /// Fetches every blob of `wanted` into the store, at most `limit` at a time; the first
    /// failure ends the others and is returned.
    pub fn fetch_all(&self, wanted: &[Wanted], limit: usize) -> Result<()> {
        let work = futures::stream::iter(wanted.iter().map(Ok)).try_for_each_concurrent(limit, |w| self.fetch(w));
        self.registry.block_on(work)
    }

    /// Fetches one blob into the store. Bytes kept from an earlier try are continued; when the
    /// whole then fails its digest check, they were not the blob's, and it is fetched again
    /// from the start once.
    async fn fetch(&self, w: &Wanted) -> Result<()> {
        let mut partial = self.partials.open(&w.digest)?;
        let kept = self.transfer(w, &mut partial).await?;
        self.show(w, Step::Verifying);
        if let Some(kept) = kept.filter(|_| partial.digest() != w.digest) {
            self.show(w, Step::Restarting(format!("the {kept} bytes kept did not verify")));
            partial.restart()?;
            self.transfer(w, &mut partial).await?;
            self.show(w, Step::Verifying);
        }
        partial.store(self.store, &w.digest, Some(self.lend_to)).map_err(|e| match e {
            StorageError::DigestMismatch { actual, .. } => failed(format!("blob {} arrived with digest {actual}: the registry sent wrong bytes; nothing was stored", w.digest)),
            other => other.into(),
        })?;
        crate::fault::point("pull:blob-stored");
        self.show(w, Step::Downloaded);
        Ok(())
    }

    /// Streams the blob into `partial` up to its size, continuing the bytes it holds when the
    /// registry answers the Range request; how many bytes were kept when it did so (they are
    /// then part of what the digest check judges).
    async fn transfer(&self, w: &Wanted, partial: &mut Partial) -> Result<Option<u64>> {
        if partial.len() > w.size {
            partial.restart()?;
        }
        if !partial.is_empty() && partial.len() == w.size {
            // Complete already (the last try stopped before storing it): only the check is left.
            return Ok(Some(partial.len()));
        }
        let from = partial.len();
        let mut resp = self.registry.get_blob(self.repo, &w.digest, (from > 0).then_some(from)).await?;
        let content_range = header(&resp, "content-range");
        let kept = match decide(resp.status(), content_range.as_deref(), from, w.size) {
            Resume::Continue => {
                self.show(w, Step::Resuming { from, total: w.size });
                Some(from)
            }
            Resume::FromStart => {
                partial.restart()?;
                None
            }
            Resume::AskWhole(why) => {
                self.show(w, Step::Restarting(why));
                partial.restart()?;
                resp = self.registry.get_blob(self.repo, &w.digest, None).await?;
                if resp.status() != hyper::StatusCode::OK {
                    return Err(failed(format!("get blob {}: {}", w.digest, resp.status())));
                }
                None
            }
            Resume::Fail(status) => return Err(failed(format!("get blob {}: {status}", w.digest))),
        };
        check_length(w, partial.len(), header(&resp, "content-length").as_deref())?;
        self.stream(w, resp.into_body(), partial).await?;
        Ok(kept)
    }

    /// Appends the body to `partial`, refusing bytes past the blob's size. When the body ends
    /// early the bytes stay, for the next pull to continue.
    async fn stream(&self, w: &Wanted, mut body: Incoming, partial: &mut Partial) -> Result<()> {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                let kept = if partial.is_kept() { "; pulling again continues from there" } else { "" };
                failed(format!("blob {} stopped after {} of {} bytes ({e}){kept}", w.digest, partial.len(), w.size))
            })?;
            let Some(data) = frame.data_ref() else { continue };
            if partial.len() + data.len() as u64 > w.size {
                partial.restart()?;
                return Err(failed(format!("the registry sent more than the {} bytes blob {} has by its descriptor", w.size, w.digest)));
            }
            partial.append(data)?;
            self.show(w, Step::Downloading { done: partial.len(), total: w.size });
        }
        if partial.len() < w.size {
            return Err(failed(format!("blob {} ended after {} of {} bytes; pulling again continues from there", w.digest, partial.len(), w.size)));
        }
        Ok(())
    }

    fn show(&self, w: &Wanted, step: Step) {
        if w.shown {
            self.board.step(&w.digest, step);
        }
    }
}

/// A Content-Length that promises other than the `size - held` bytes still missing is refused
/// before any byte is read.
fn check_length(w: &Wanted, held: u64, content_length: Option<&str>) -> Result<()> {
    let Some(text) = content_length else { return Ok(()) };
    let missing = w.size - held;
    match text.trim().parse::<u64>() {
        Ok(n) if n == missing => Ok(()),
        _ => Err(failed(format!("the registry would send {text} bytes of blob {}, which has {missing} bytes to come by its descriptor", w.digest))),
    }
}

fn header(resp: &hyper::Response<Incoming>, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(size: u64) -> Wanted {
        Wanted { digest: format!("sha256:{}", "a".repeat(64)), size, shown: true }
    }

    #[test]
    fn a_content_length_must_be_what_is_missing() {
        assert!(check_length(&wanted(100), 0, Some("100")).is_ok());
        assert!(check_length(&wanted(100), 40, Some("60")).is_ok());
        assert!(check_length(&wanted(100), 40, None).is_ok());
        for bad in ["100", "61", "-1", "many", "99999999999999999999999"] {
            assert!(check_length(&wanted(100), 40, Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn concurrency_is_bounded() {
        assert_eq!(parse_concurrency(None).unwrap(), DEFAULT_CONCURRENCY);
        assert_eq!(parse_concurrency(Some("5")).unwrap(), 5);
        for bad in ["0", "33", "x", ""] {
            assert!(parse_concurrency(Some(bad)).unwrap_err().to_string().contains(CONCURRENCY_VAR), "{bad}");
        }
    }
}
