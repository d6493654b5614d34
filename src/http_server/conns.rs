//! The table of open connections: the limit, and which connection gives way when it is reached.
//!
//! Each connection is either waiting for a request head (fresh, kept alive between requests, or
//! receiving a head) or busy with a request. At the limit, a new connection takes the place of
//! the one that has waited longest, the way nginx reuses its idle connections when it runs out:
//! holding connections open without finishing a request then costs an attacker his oldest
//! connection each time anyone connects, and never starves a client that sends its request. Only
//! when every connection is busy is the new one refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// One connection's shared state: what its head timer, its I/O and the table know of it.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    state: Mutex<ConnState>,
    evicted: Notify,
    accepted: Instant,
    /// When bytes last moved either way, in milliseconds after `accepted`.
    moved: AtomicU64,
    /// A refused head's status and the socket to answer it on, once hyper let the socket go.
    owed: Mutex<Option<(hyper::StatusCode, std::net::TcpStream)>>,
}

#[derive(Debug)]
struct ConnState {
    /// How many head waits began (wait 0 is the admission's, until hyper's first).
    waits: u64,
    /// The head wait in progress, if any.
    waiting: Option<Wait>,
}

/// A wait for a request head.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    /// Which wait of the connection this is (1 for the first request).
    pub number: u64,
    /// When the wait began.
    pub since: Instant,
    /// When the head's first byte arrived.
    pub first_byte: Option<Instant>,
}

impl Conn {
    /// Keeps the answer owed to a head refused with `status`, and the socket for it.
    pub fn owe_answer(&self, status: hyper::StatusCode, stream: std::net::TcpStream) {
        *self.owed.lock().expect("a connection's answer lock is never poisoned") = Some((status, stream));
    }

    /// The answer owed, if a head was refused.
    pub fn take_owed_answer(&self) -> Option<(hyper::StatusCode, std::net::TcpStream)> {
        self.owed.lock().expect("a connection's answer lock is never poisoned").take()
    }

    fn state(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().expect("a connection's state lock is never poisoned")
    }

    /// Starts waiting for a request head; returns the wait's number.
    pub fn begin_wait(&self) -> u64 {
        let mut s = self.state();
        s.waits += 1;
        // The first wait counts from the accept (the admission's wait 0).
        let since = match s.waiting {
            Some(w) if w.number == 0 => w.since,
            _ => Instant::now(),
        };
        s.waiting = Some(Wait { number: s.waits, since, first_byte: None });
        s.waits
    }

    /// Ends wait `number` (its head arrived, or the connection ends); a later wait stays.
    pub fn end_wait(&self, number: u64) {
        let mut s = self.state();
        if s.waiting.is_some_and(|w| w.number == number) {
            s.waiting = None;
        }
    }

    /// The wait in progress.
    pub fn wait(&self) -> Option<Wait> {
        self.state().waiting
    }

    /// When wait `number` times out, if it is still the wait in progress: the header timeout
    /// after the head's first byte (or after the accept, for the first request), the idle
    /// timeout after a kept-alive connection began waiting while no byte came.
    pub fn head_deadline(&self, number: u64, header: Duration, idle: Duration) -> Option<Instant> {
        let w = self.wait().filter(|w| w.number == number)?;
        Some(match w.first_byte {
            Some(first) => first + header,
            None if w.number == 1 => w.since + header,
            None => w.since + idle,
        })
    }

    /// Notes that request bytes arrived; returns the wait they belong to, if a head is awaited.
    pub fn bytes_arrived(&self) -> Option<u64> {
        let mut s = self.state();
        let w = s.waiting.as_mut()?;
        w.first_byte.get_or_insert_with(Instant::now);
        Some(w.number)
    }

    /// Notes that bytes moved (read or written).
    pub fn bytes_moved(&self) {
        let ms = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.moved.fetch_max(ms, Ordering::Relaxed);
    }

    /// When bytes last moved either way (or the connection was accepted).
    pub fn last_moved(&self) -> Instant {
        self.accepted + Duration::from_millis(self.moved.load(Ordering::Relaxed))
    }

    /// Resolves when the connection is busy with a request and no byte moved either way for
    /// `limit`: a body that stopped coming, a response the client stopped reading (waits for a
    /// head are the head timer's).
    pub async fn stalled(&self, limit: Duration) {
        loop {
            let deadline = self.last_moved() + limit;
            if Instant::now() < deadline {
                tokio::time::sleep_until(deadline.into()).await;
            } else if self.wait().is_none() {
                return;
            } else {
                tokio::time::sleep(limit).await;
            }
        }
    }

    /// Resolves when the table gave this connection's place to a new one.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

/// The open connections, at most `max`.
#[derive(Debug)]
pub struct Conns {
    max: usize,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

/// What became of a new connection.
#[derive(Debug)]
pub enum Admission {
    /// It has a place.
    Admitted(Arc<Conn>),
    /// Every place is taken by a busy connection.
    Refused,
}

impl Conns {
    /// An empty table for `max` connections.
    pub fn new(max: usize) -> Conns {
        Conns { max, open: Mutex::new(HashMap::new()) }
    }

    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().expect("the connection table lock is never poisoned")
    }

    /// The most connections served at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Gives a new connection a place: a free one, or the place of the connection that has
    /// waited longest for a request head (told to close).
    pub fn admit(&self, id: u64) -> Admission {
        let mut open = self.open();
        if open.len() >= self.max && !Self::evict_longest_waiting(&mut open) {
            return Admission::Refused;
        }
        // Waiting from the start: a connection whose task has not run yet is not busy.
        let waiting = Some(Wait { number: 0, since: Instant::now(), first_byte: None });
        let conn = Arc::new(Conn { id, state: Mutex::new(ConnState { waits: 0, waiting }), evicted: Notify::new(), accepted: Instant::now(), moved: AtomicU64::new(0), owed: Mutex::new(None) });
        open.insert(id, conn.clone());
        Admission::Admitted(conn)
    }

    /// Tells the connection that has waited longest for a request head to close, and frees its
    /// place now (when the descriptor table is full, say); false when every connection is busy.
    pub fn evict_one(&self) -> bool {
        Self::evict_longest_waiting(&mut self.open())
    }

    fn evict_longest_waiting(open: &mut HashMap<u64, Arc<Conn>>) -> bool {
        let longest = open.values().filter_map(|c| Some((c.wait()?.since, c.id))).min().map(|(_, id)| id);
        let Some(conn) = longest.and_then(|id| open.remove(&id)) else {
            return false;
        };
        conn.evicted.notify_one();
        true
    }

    /// Frees a connection's place when it ends (an evicted one has none any more).
    pub fn leave(&self, conn: &Conn) {
        self.open().remove(&conn.id);
    }
}

#[cfg(test)]
mod tests {
    use super::{Admission, Conns};

    fn admitted(a: Admission) -> std::sync::Arc<super::Conn> {
        match a {
            Admission::Admitted(c) => c,
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn at_the_limit_the_longest_waiting_connection_gives_way_and_busy_ones_never_do() {
        let conns = Conns::new(3);
        let busy = admitted(conns.admit(1));
        let n = busy.begin_wait();
        busy.bytes_arrived();
        busy.end_wait(n);
        let older = admitted(conns.admit(2));
        let newer = admitted(conns.admit(3));
        older.begin_wait();
        std::thread::sleep(std::time::Duration::from_millis(2));
        newer.begin_wait();
        let fourth = admitted(conns.admit(4));
        assert_eq!(conns.open().len(), 3);
        // The evicted one was told (a permit is stored for its task), and its leave is a no-op.
        futures::executor::block_on(older.evicted());
        conns.leave(&older);
        assert_eq!(conns.open().len(), 3);
        // A head that arrives makes a connection busy: it can no longer be evicted.
        let n = newer.begin_wait();
        assert_eq!(newer.bytes_arrived(), Some(n));
        newer.end_wait(n);
        let first = fourth.begin_wait();
        assert_eq!(first, 1, "the first wait of a connection is number 1");
        fourth.end_wait(first);
        assert!(matches!(conns.admit(5), Admission::Refused), "all three busy");
        // Kept alive and waiting again: it gives way.
        fourth.begin_wait();
        admitted(conns.admit(6));
        futures::executor::block_on(fourth.evicted());
        conns.leave(&busy);
        conns.leave(&newer);
        assert_eq!(conns.open().len(), 1);
    }

    #[test]
    fn a_wait_ends_only_itself() {
        let conns = Conns::new(1);
        let c = admitted(conns.admit(1));
        let accepted = c.wait().expect("waiting from the accept").since;
        let first = c.begin_wait();
        assert_eq!(c.wait().unwrap().since, accepted, "the first wait counts from the accept");
        let second = c.begin_wait();
        c.end_wait(first);
        assert_eq!(c.wait().map(|w| w.number), Some(second), "a stale end leaves the new wait");
        assert!(c.wait().unwrap().first_byte.is_none());
        c.bytes_arrived();
        assert!(c.wait().unwrap().first_byte.is_some());
        c.end_wait(second);
        assert!(c.wait().is_none() && c.bytes_arrived().is_none());
    }
}
