//! Resuming a blob download: what a registry's answer to `Range: bytes=N-` allows. A 206 whose
//! `Content-Range` starts at N and runs to the blob's end continues the kept bytes; a 200 (a
//! registry that ignores Range) is the whole blob again; a 206 with another range, or a 416,
//! is not trusted, and the blob is asked for again whole.

use hyper::StatusCode;

/// `Content-Range: bytes FIRST-LAST/TOTAL` of a 206 (TOTAL may be `*`, unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// The first byte sent.
    pub first: u64,
    /// The last byte sent (inclusive).
    pub last: u64,
    /// The whole blob's size, when given.
    pub total: Option<u64>,
}

/// Reads `bytes FIRST-LAST/TOTAL`; None for anything else (several ranges, `bytes */N`, a
/// last byte before the first, or a range past the total).
pub fn parse_content_range(text: &str) -> Option<ContentRange> {
    let spec = text.trim().strip_prefix("bytes ")?;
    let (range, total) = spec.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let number = |s: &str| -> Option<u64> { if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) { s.parse().ok() } else { None } };
    let (first, last) = (number(first)?, number(last)?);
    let total = if total == "*" { None } else { Some(number(total)?) };
    let fits = first <= last && total.is_none_or(|t| last < t);
    fits.then_some(ContentRange { first, last, total })
}

/// What to do with the answer to a blob GET that asked for the bytes from `from` on of a blob
/// of `size` bytes (`from` 0: no Range was asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// A 206 with the asked range: append the body to the kept bytes.
    Continue,
    /// A 200: the body is the whole blob; drop the kept bytes.
    FromStart,
    /// A range answer that cannot be trusted: drop the kept bytes and ask for the whole blob.
    AskWhole(String),
    /// A failure (404, 500, ...).
    Fail(StatusCode),
}

/// Decides from the status and `Content-Range` of the answer.
pub fn decide(status: StatusCode, content_range: Option<&str>, from: u64, size: u64) -> Resume {
    match status {
        StatusCode::OK => Resume::FromStart,
        StatusCode::PARTIAL_CONTENT if from > 0 => match content_range.map(|t| (t, parse_content_range(t))) {
            Some((_, Some(r))) if r.first == from && r.last + 1 == size && r.total.is_none_or(|t| t == size) => Resume::Continue,
            Some((text, _)) => Resume::AskWhole(format!("the registry answered bytes {from}- of {size} with Content-Range {text:?}")),
            None => Resume::AskWhole("the registry answered a range without Content-Range".into()),
        },
        StatusCode::RANGE_NOT_SATISFIABLE if from > 0 => Resume::AskWhole(format!("the registry refused bytes {from}- of {size} (416)")),
        other => Resume::Fail(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some(ContentRange { first: 100, last: 199, total: Some(200) }));
        assert_eq!(parse_content_range("bytes 0-0/*"), Some(ContentRange { first: 0, last: 0, total: None }));
        for bad in ["bytes */200", "bytes 5-4/10", "bytes 0-10/10", "items 0-1/2", "bytes 0-1", "bytes -1-5/9", "bytes 0-1/x", "bytes 1-2,4-5/9", "bytes +1-2/9", ""] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_matching_206_continues() {
        assert_eq!(decide(StatusCode::PARTIAL_CONTENT, Some("bytes 40-99/100"), 40, 100), Resume::Continue);
        assert_eq!(decide(StatusCode::PARTIAL_CONTENT, Some("bytes 40-99/*"), 40, 100), Resume::Continue);
    }

    #[test]
    fn a_200_starts_again_with_its_body() {
        assert_eq!(decide(StatusCode::OK, None, 40, 100), Resume::FromStart);
        assert_eq!(decide(StatusCode::OK, None, 0, 100), Resume::FromStart);
    }

    #[test]
    fn a_range_that_does_not_fit_asks_for_the_whole_blob() {
        for range in [Some("bytes 0-99/100"), Some("bytes 40-59/100"), Some("bytes 40-99/120"), Some("garbage"), None] {
            assert!(matches!(decide(StatusCode::PARTIAL_CONTENT, range, 40, 100), Resume::AskWhole(_)), "{range:?}");
        }
        assert!(matches!(decide(StatusCode::RANGE_NOT_SATISFIABLE, Some("bytes */100"), 40, 100), Resume::AskWhole(_)));
    }

    #[test]
    fn failures_and_unasked_ranges_fail() {
        assert_eq!(decide(StatusCode::NOT_FOUND, None, 40, 100), Resume::Fail(StatusCode::NOT_FOUND));
        assert_eq!(decide(StatusCode::PARTIAL_CONTENT, Some("bytes 0-99/100"), 0, 100), Resume::Fail(StatusCode::PARTIAL_CONTENT));
        assert_eq!(decide(StatusCode::RANGE_NOT_SATISFIABLE, None, 0, 100), Resume::Fail(StatusCode::RANGE_NOT_SATISFIABLE));
    }
}
