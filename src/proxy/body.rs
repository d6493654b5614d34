//! Bodies passed through as they come: a read buffer per connection, and relays that copy a
//! body from one socket to the other by its framing, a buffer at a time, never the whole body.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::message::Framing;
use crate::http_server::Conn;

/// How much is read at once: a head (most fit in far less), a body.
pub const HEAD_READ: usize = 4 * 1024;
pub const BODY_READ: usize = 16 * 1024;
/// The most a buffer keeps between requests.
pub const KEPT_SIZE: usize = 64 * 1024;
/// How much of a chunked body is gathered before it is written on.
const WRITE_SIZE: usize = 64 * 1024;
/// The longest chunk-size line, and the most trailer bytes.
const CHUNK_LINE_LIMIT: usize = 4096;
const TRAILER_LIMIT: usize = 64 * 1024;

/// Bytes read from a socket and not used yet.
#[derive(Debug, Default)]
pub struct Buf {
    data: Vec<u8>,
    start: usize,
}

impl Buf {
    /// The unused bytes.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..]
    }

    /// Drops the unused bytes.
    pub fn clear(&mut self) {
        self.data.clear();
        self.start = 0;
    }

    /// How much it holds without growing.
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// Marks the first `n` unused bytes used.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
            // A long head grew it: a kept-alive connection does not keep that much.
            if self.data.capacity() > KEPT_SIZE {
                self.data.shrink_to(BODY_READ);
            }
        }
    }

    /// Reads what `from` has (at least a byte, or 0 at its end), after the unused bytes, with
    /// room for at least `room` bytes.
    pub async fn fill(&mut self, from: &mut Side<'_, impl AsyncRead + Unpin>, room: usize) -> io::Result<usize> {
        if self.start > 0 {
            self.data.drain(..self.start);
            self.start = 0;
        }
        self.data.reserve(room);
        let n = from.io.read_buf(&mut self.data).await?;
        from.moved(n);
        Ok(n)
    }
}

/// One direction of a socket, and the client's connection when it is the client's (bytes that
/// move there keep it from counting as stalled).
pub struct Side<'a, T> {
    /// The socket half.
    pub io: T,
    /// The client's connection, when this is its socket.
    pub conn: Option<&'a Conn>,
}

impl<T> Side<'_, T> {
    fn moved(&self, n: usize) {
        if let (Some(conn), true) = (self.conn, n > 0) {
            conn.bytes_moved();
        }
    }
}

impl<T: AsyncWrite + Unpin> Side<'_, T> {
    /// Writes all of `bytes`.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.moved(bytes.len());
        Ok(())
    }
}

fn cut_short() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the body was cut short")
}

fn bad_chunk(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("bad chunked body: {what}"))
}

/// Copies a body framed by `framing` from `buf` and `from` to `to`, after writing `pending`
/// (a head, sent in the same write as the body's first bytes). With `dechunk`, a chunked body
/// arrives as its data alone. Returns once the body's last byte was written; bytes after it
/// stay in `buf`.
pub async fn relay<R, W>(framing: Framing, dechunk: bool, buf: &mut Buf, from: &mut Side<'_, R>, to: &mut Side<'_, W>, pending: &mut Vec<u8>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match framing {
        Framing::None => flush(pending, to).await,
        Framing::Length(n) => relay_length(n, buf, from, to, pending).await,
        Framing::Chunked => relay_chunked(dechunk, buf, from, to, pending).await,
        Framing::UntilClose => relay_until_close(buf, from, to, pending).await,
    }
}

async fn flush<W: AsyncWrite + Unpin>(pending: &mut Vec<u8>, to: &mut Side<'_, W>) -> io::Result<()> {
    if !pending.is_empty() {
        to.write_all(pending).await?;
        pending.clear();
    }
    Ok(())
}

async fn relay_length<R, W>(mut left: u64, buf: &mut Buf, from: &mut Side<'_, R>, to: &mut Side<'_, W>, pending: &mut Vec<u8>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let take = buf.filled().len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if pending.is_empty() {
            to.write_all(&buf.filled()[..take]).await?;
        } else {
            pending.extend_from_slice(&buf.filled()[..take]);
            flush(pending, to).await?;
        }
        buf.consume(take);
        left -= take as u64;
        if left == 0 {
            return Ok(());
        }
        if buf.fill(from, BODY_READ).await? == 0 {
            return Err(cut_short());
        }
    }
}

async fn relay_until_close<R, W>(buf: &mut Buf, from: &mut Side<'_, R>, to: &mut Side<'_, W>, pending: &mut Vec<u8>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        pending.extend_from_slice(buf.filled());
        buf.consume(buf.filled().len());
        flush(pending, to).await?;
        if buf.fill(from, BODY_READ).await? == 0 {
            return Ok(());
        }
    }
}

async fn relay_chunked<R, W>(dechunk: bool, buf: &mut Buf, from: &mut Side<'_, R>, to: &mut Side<'_, W>, pending: &mut Vec<u8>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunks = Chunks::default();
    loop {
        let step = chunks.next(buf.filled())?;
        match step {
            Step::Data(n) | Step::Frame(n) | Step::End(n) => {
                if matches!(step, Step::Data(_)) || !dechunk {
                    pending.extend_from_slice(&buf.filled()[..n]);
                }
                buf.consume(n);
                if matches!(step, Step::End(_)) {
                    return flush(pending, to).await;
                }
                if pending.len() >= WRITE_SIZE {
                    flush(pending, to).await?;
                }
            }
            Step::More => {
                flush(pending, to).await?;
                if buf.fill(from, BODY_READ).await? == 0 {
                    return Err(cut_short());
                }
            }
        }
    }
}

/// What the next bytes of a chunked body are.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// This many bytes of data.
    Data(usize),
    /// This many bytes of framing (a size line, a chunk's CRLF, a trailer line).
    Frame(usize),
    /// The body's last bytes (the empty line after the trailers).
    End(usize),
    /// More bytes are needed to tell.
    More,
}

/// Where a chunked body stands (RFC 9112 7.1).
#[derive(Debug, Default)]
enum Chunks {
    /// At a chunk-size line.
    #[default]
    Size,
    /// In a chunk's data, this many bytes left.
    Data(u64),
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// In the trailers, after this many bytes of them.
    Trailers(usize),
}

impl Chunks {
    fn next(&mut self, bytes: &[u8]) -> io::Result<Step> {
        match *self {
            Chunks::Size => match httparse::parse_chunk_size(bytes) {
                Ok(httparse::Status::Complete((n, size))) => {
                    *self = if size == 0 { Chunks::Trailers(0) } else { Chunks::Data(size) };
                    Ok(Step::Frame(n))
                }
                Ok(httparse::Status::Partial) if bytes.len() > CHUNK_LINE_LIMIT => Err(bad_chunk("a size line too long")),
                Ok(httparse::Status::Partial) => Ok(Step::More),
                Err(_) => Err(bad_chunk("a size that is not hexadecimal")),
            },
            Chunks::Data(left) => {
                if bytes.is_empty() {
                    return Ok(Step::More);
                }
                let n = bytes.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                *self = if left == n as u64 { Chunks::DataEnd } else { Chunks::Data(left - n as u64) };
                Ok(Step::Data(n))
            }
            Chunks::DataEnd => match bytes {
                [b'\r', b'\n', ..] => {
                    *self = Chunks::Size;
                    Ok(Step::Frame(2))
                }
                [] | [b'\r'] => Ok(Step::More),
                _ => Err(bad_chunk("no line end after a chunk")),
            },
            Chunks::Trailers(seen) => {
                if bytes.starts_with(b"\r\n") {
                    return Ok(Step::End(2));
                }
                if bytes.starts_with(b"\n") {
                    return Ok(Step::End(1));
                }
                match bytes.iter().position(|&b| b == b'\n') {
                    Some(i) if seen + i < TRAILER_LIMIT => {
                        *self = Chunks::Trailers(seen + i + 1);
                        Ok(Step::Frame(i + 1))
                    }
                    None if seen + bytes.len() < TRAILER_LIMIT => Ok(Step::More),
                    _ => Err(bad_chunk("trailers too long")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the decoder over `body` fed in pieces of `piece` bytes; returns the data and
    /// whether the end was found, with the bytes left after it.
    fn decode(body: &[u8], piece: usize) -> io::Result<(Vec<u8>, usize)> {
        let mut chunks = Chunks::default();
        let (mut data, mut at, mut have) = (Vec::new(), 0, piece.min(body.len()));
        loop {
            match chunks.next(&body[at..have])? {
                Step::Data(n) => {
                    data.extend_from_slice(&body[at..at + n]);
                    at += n;
                }
                Step::Frame(n) => at += n,
                Step::End(n) => return Ok((data, body.len() - at - n)),
                Step::More if have == body.len() => return Err(cut_short()),
                Step::More => have = (have + piece).min(body.len()),
            }
        }
    }

    #[test]
    fn a_chunked_body_is_found_whole_however_it_arrives() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\n\r\nGET /next";
        for piece in [1, 2, 3, 7, 100] {
            let (data, left) = decode(body, piece).unwrap();
            assert_eq!(data, b"helloabcdefghijklmnopqrstuvwxyz", "pieces of {piece}");
            assert_eq!(left, 9, "the next request stays");
        }
    }

    #[test]
    fn a_broken_chunked_body_is_an_error() {
        for bad in [&b"zz\r\nhello\r\n0\r\n\r\n"[..], b"5\r\nhelloXX0\r\n\r\n", b"5\r\nhel"] {
            assert!(decode(bad, 4).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long_line = [b'1'; CHUNK_LINE_LIMIT + 10];
        assert!(decode(&long_line, 100).is_err());
    }
}
