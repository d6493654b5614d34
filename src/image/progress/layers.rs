//! The board of a pull: one line per layer, named by the first 12 hex digits of its digest, as
//! Docker shows it. On a terminal each layer's line is redrawn in place (ANSI cursor moves) as
//! it goes from `Pulling fs layer` or `Waiting` through `Downloading [====>     ] 12.3MB/45.6MB`,
//! `Verifying Checksum`, `Download complete` and `Extracting` to `Pull complete`, or says
//! `Already exists` for a layer the store has. Anywhere else (a log, a pipe, a test) each step
//! is one plain line, and byte counts are left out. Everything goes to stderr: stdout stays
//! what scripts read.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one layer's `Downloading` line may be redrawn.
const REDRAW: Duration = Duration::from_millis(100);
/// The width of the bar of a `Downloading` line.
const BAR: u64 = 20;

/// Where a layer of a pull is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The store has it: nothing to fetch.
    Cached,
    /// About to be fetched.
    Pulling,
    /// To be fetched once a running download ends (downloads run a few at a time).
    Waiting,
    /// Bytes arriving.
    Downloading {
        /// Bytes held so far.
        done: u64,
        /// The blob's size.
        total: u64,
    },
    /// An interrupted download continues from the bytes kept.
    Resuming {
        /// Bytes kept.
        from: u64,
        /// The blob's size.
        total: u64,
    },
    /// The kept bytes could not be continued; the whole blob is fetched again (the reason).
    Restarting(String),
    /// The digest is being checked.
    Verifying,
    /// Fetched and verified.
    Downloaded,
    /// Being unpacked.
    Extracting,
    /// Unpacked and recorded.
    Complete,
}

impl Step {
    /// What the layer's line says.
    pub fn text(&self) -> String {
        match self {
            Step::Cached => "Already exists".into(),
            Step::Pulling => "Pulling fs layer".into(),
            Step::Waiting => "Waiting".into(),
            Step::Downloading { done, total } => format!("Downloading {} {}/{}", bar(*done, *total), human_size(*done), human_size(*total)),
            Step::Resuming { from, total } => format!("Resuming from {} of {}", human_size(*from), human_size(*total)),
            Step::Restarting(why) => format!("Downloading again from the start: {why}"),
            Step::Verifying => "Verifying Checksum".into(),
            Step::Downloaded => "Download complete".into(),
            Step::Extracting => "Extracting".into(),
            Step::Complete => "Pull complete".into(),
        }
    }

    /// Whether a log gets a line for it (byte counts are for terminals only).
    fn logged(&self) -> bool {
        !matches!(self, Step::Downloading { .. })
    }
}

/// `[=========>          ]`: how far `done` is of `total`.
fn bar(done: u64, total: u64) -> String {
    let filled = done.min(total).saturating_mul(BAR).checked_div(total).unwrap_or(BAR).min(BAR);
    let arrow = if filled < BAR { ">" } else { "" };
    let rest = BAR - filled - arrow.len() as u64;
    format!("[{}{arrow}{}]", "=".repeat(filled as usize), " ".repeat(rest as usize))
}

/// Bytes in decimal units with four significant digits, as Docker prints them: `512B`,
/// `12.35MB`, `1.5GB`.
pub fn human_size(bytes: u64) -> String {
    let (value, unit) = crate::storage::limits::scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB", "EB"]);
    let decimals = if value >= 100.0 { 1 } else if value >= 10.0 { 2 } else { 3 };
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    format!("{text}{unit}")
}

/// The name of a layer's line: the first 12 hex digits of its digest.
pub fn layer_id(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

/// Turns steps into the text to write: lines redrawn in place on a terminal, plain lines
/// anywhere else.
pub struct Renderer {
    terminal: bool,
    /// The lines written so far, each with the layer it shows (None for a note).
    lines: Vec<Option<String>>,
}

impl Renderer {
    /// A renderer for a terminal (`true`) or for a log.
    pub fn new(terminal: bool) -> Renderer {
        Renderer { terminal, lines: Vec::new() }
    }

    /// The text that shows layer `id` at `step`.
    pub fn step(&mut self, id: &str, step: &Step) -> String {
        let line = format!("{id}: {}", step.text());
        if !self.terminal {
            return if step.logged() { format!("{line}\n") } else { String::new() };
        }
        match self.lines.iter().position(|l| l.as_deref() == Some(id)) {
            // Up to the layer's line, clear it, write, and back down to below the last line.
            Some(i) => {
                let up = self.lines.len() - i;
                format!("\x1b[{up}A\r\x1b[2K{line}\r\x1b[{up}B")
            }
            None => {
                self.lines.push(Some(id.to_string()));
                format!("{line}\n")
            }
        }
    }

    /// A line of its own, not about one layer (`latest: Pulling from apps/webapp`).
    pub fn note(&mut self, text: &str) -> String {
        self.lines.push(None);
        format!("{text}\n")
    }
}

/// The board of one pull, shared by its concurrent downloads; writes to stderr.
pub struct Board {
    inner: Mutex<Inner>,
}

struct Inner {
    renderer: Renderer,
    out: Box<dyn Write + Send>,
    drawn: HashMap<String, Instant>,
}

impl Board {
    /// A board on stderr, drawn in place when stderr is a terminal.
    pub fn stderr() -> Board {
        Board::new(std::io::stderr().is_terminal(), Box::new(std::io::stderr()))
    }

    /// A board writing to `out`, as on a terminal or as in a log.
    pub fn new(terminal: bool, out: Box<dyn Write + Send>) -> Board {
        Board { inner: Mutex::new(Inner { renderer: Renderer::new(terminal), out, drawn: HashMap::new() }) }
    }

    /// Shows the layer of blob `digest` at `step`. A byte count is drawn at most ten times a
    /// second per layer (and always when it reaches the total).
    pub fn step(&self, digest: &str, step: Step) {
        let id = layer_id(digest);
        let mut inner = self.inner.lock().expect("never poisoned");
        if let Step::Downloading { done, total } = step {
            let now = Instant::now();
            if !due(inner.drawn.get(id).copied(), now, done, total) {
                return;
            }
            inner.drawn.insert(id.to_string(), now);
        }
        let text = inner.renderer.step(id, &step);
        inner.write(&text);
    }

    /// A line of its own.
    pub fn note(&self, text: &str) {
        let mut inner = self.inner.lock().expect("never poisoned");
        let text = inner.renderer.note(text);
        inner.write(&text);
    }
}

/// Whether a byte count is drawn: the first, one at least `REDRAW` after the last drawn, and
/// the total.
fn due(last: Option<Instant>, now: Instant, done: u64, total: u64) -> bool {
    done >= total || last.is_none_or(|t| now.duration_since(t) >= REDRAW)
}

impl Inner {
    fn write(&mut self, text: &str) {
        if !text.is_empty() {
            let _ = self.out.write_all(text.as_bytes());
            let _ = self.out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two layers, one cached, one fetched; then a note.
    fn events(r: &mut Renderer) -> String {
        let mut out = r.note("latest: Pulling from apps/webapp");
        out += &r.step("aaaaaaaaaaaa", &Step::Cached);
        out += &r.step("bbbbbbbbbbbb", &Step::Pulling);
        out += &r.step("bbbbbbbbbbbb", &Step::Downloading { done: 12_345_678, total: 45_600_000 });
        out += &r.step("bbbbbbbbbbbb", &Step::Verifying);
        out += &r.step("bbbbbbbbbbbb", &Step::Downloaded);
        out += &r.step("bbbbbbbbbbbb", &Step::Extracting);
        out += &r.step("bbbbbbbbbbbb", &Step::Complete);
        out += &r.note("Digest: sha256:cccc");
        out
    }

    #[test]
    fn a_log_gets_one_plain_line_per_step_and_no_byte_counts() {
        assert_eq!(
            events(&mut Renderer::new(false)),
            "latest: Pulling from apps/webapp\n\
             aaaaaaaaaaaa: Already exists\n\
             bbbbbbbbbbbb: Pulling fs layer\n\
             bbbbbbbbbbbb: Verifying Checksum\n\
             bbbbbbbbbbbb: Download complete\n\
             bbbbbbbbbbbb: Extracting\n\
             bbbbbbbbbbbb: Pull complete\n\
             Digest: sha256:cccc\n"
        );
    }

    #[test]
    fn a_terminal_gets_one_line_per_layer_redrawn_in_place() {
        let out = events(&mut Renderer::new(true));
        let redraw = |text: &str| format!("\x1b[1A\r\x1b[2Kbbbbbbbbbbbb: {text}\r\x1b[1B");
        let want = [
            "latest: Pulling from apps/webapp\n".to_string(),
            "aaaaaaaaaaaa: Already exists\n".into(),
            "bbbbbbbbbbbb: Pulling fs layer\n".into(),
            redraw("Downloading [=====>              ] 12.35MB/45.6MB"),
            redraw("Verifying Checksum"),
            redraw("Download complete"),
            redraw("Extracting"),
            redraw("Pull complete"),
            "Digest: sha256:cccc\n".into(),
        ]
        .concat();
        assert_eq!(out, want);
    }

    #[test]
    fn an_earlier_line_is_reached_by_moving_up_past_the_later_ones() {
        let mut r = Renderer::new(true);
        r.step("aaaaaaaaaaaa", &Step::Pulling);
        r.step("bbbbbbbbbbbb", &Step::Waiting);
        r.step("cccccccccccc", &Step::Waiting);
        assert_eq!(r.step("aaaaaaaaaaaa", &Step::Complete), "\x1b[3A\r\x1b[2Kaaaaaaaaaaaa: Pull complete\r\x1b[3B");
        assert_eq!(r.step("cccccccccccc", &Step::Resuming { from: 1_500_000, total: 3_000_000 }), "\x1b[1A\r\x1b[2Kcccccccccccc: Resuming from 1.5MB of 3MB\r\x1b[1B");
    }

    #[test]
    fn sizes_read_as_docker_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(12_345_678), "12.35MB");
        assert_eq!(human_size(45_600_000), "45.6MB");
        assert_eq!(human_size(123_456_789), "123.5MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
    }

    #[test]
    fn bars_fill_with_the_bytes() {
        assert_eq!(bar(0, 100), format!("[>{}]", " ".repeat(19)));
        assert_eq!(bar(50, 100), format!("[{}>{}]", "=".repeat(10), " ".repeat(9)));
        assert_eq!(bar(100, 100), format!("[{}]", "=".repeat(20)));
        assert_eq!(bar(0, 0), format!("[{}]", "=".repeat(20)));
    }

    #[test]
    fn layers_are_named_by_twelve_hex_digits() {
        assert_eq!(layer_id("sha256:abcd1234ef0123456789"), "abcd1234ef01");
    }

    #[test]
    fn byte_counts_are_drawn_at_most_ten_times_a_second() {
        let t0 = Instant::now();
        assert!(due(None, t0, 1, 10), "the first");
        assert!(!due(Some(t0), t0 + Duration::from_millis(99), 2, 10));
        assert!(due(Some(t0), t0 + REDRAW, 2, 10));
        assert!(due(Some(t0), t0, 10, 10), "the total");
    }

    #[test]
    fn the_board_writes_what_the_renderer_gives() {
        #[derive(Clone, Default)]
        struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Shared::default();
        let board = Board::new(false, Box::new(out.clone()));
        board.note("1: Pulling from lab/x");
        board.step("sha256:aaaaaaaaaaaabbbb", Step::Pulling);
        board.step("sha256:aaaaaaaaaaaabbbb", Step::Downloading { done: 10, total: 10 });
        board.step("sha256:aaaaaaaaaaaabbbb", Step::Complete);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "1: Pulling from lab/x\naaaaaaaaaaaa: Pulling fs layer\naaaaaaaaaaaa: Pull complete\n");
    }
}
