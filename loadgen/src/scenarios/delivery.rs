//! What the fan-out scenarios (`ws-fanout`, `peers`) share: subscribers
//! that read frames and count deliveries, and writers paced at a fixed rate.
//!
//! Every written event carries its send time (unix microseconds) and an
//! ordinal that grows by one per event of its board (Streamboard's version,
//! the peer's per-board sequence). A subscriber counts an ordinal at or below
//! the last one it saw as a duplicate and a jump as a gap, and records the
//! latency of the events sent in the measured window.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Http, WsStream};
use crate::measure::{new_histogram, record, unix_micros};

/// The unsigned integer right after `key` in compact JSON text.
pub fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}

/// What a subscriber makes of one text frame.
pub enum Frame {
    /// An event: its send time (unix us) and its ordinal on its board.
    Delivery {
        sent_us: u64,
        ordinal: u64,
    },
    /// An event whose stamp could not be read: counted, not timed.
    Unstamped,
    /// The server asks for this answer (Engine.IO's ping gets "3").
    Answer(&'static str),
    /// An error frame from the server.
    Error,
    Other,
}

/// Delivery statistics, sharded to keep the readers off one lock.
struct Shard {
    hist: Histogram<u64>,
    delivered_in_window: u64,
}

/// What the readers share with the scenario that reads the totals.
pub struct DeliveryStats {
    shards: Vec<Mutex<Shard>>,
    /// Measured window, in unix microseconds of the send stamp.
    window_from_us: AtomicU64,
    window_until_us: AtomicU64,
    pub delivered_total: AtomicU64,
    pub gaps: AtomicU64,
    pub duplicates: AtomicU64,
    pub server_closes: AtomicU64,
    pub read_errors: AtomicU64,
    pub error_frames: AtomicU64,
    closes: Mutex<Vec<String>>,
}

impl DeliveryStats {
    pub fn new(shards: usize) -> Arc<DeliveryStats> {
        let shard = || {
            Mutex::new(Shard {
                hist: new_histogram(),
                delivered_in_window: 0,
            })
        };
        Arc::new(DeliveryStats {
            shards: (0..shards.max(1)).map(|_| shard()).collect(),
            window_from_us: AtomicU64::new(0),
            window_until_us: AtomicU64::new(0),
            delivered_total: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            server_closes: AtomicU64::new(0),
            read_errors: AtomicU64::new(0),
            error_frames: AtomicU64::new(0),
            closes: Mutex::new(Vec::new()),
        })
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Events sent in `from_us..until_us` are timed and counted as in the window.
    pub fn set_window(&self, from_us: u64, until_us: u64) {
        self.window_from_us.store(from_us, Ordering::Relaxed);
        self.window_until_us.store(until_us, Ordering::Relaxed);
    }

    pub fn delivered_in_window(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap().delivered_in_window)
            .sum()
    }

    /// The latency histogram of the window and the deliveries in it.
    pub fn window_histogram(&self) -> (Histogram<u64>, u64) {
        let mut hist = new_histogram();
        let mut delivered = 0;
        for shard in &self.shards {
            let shard = shard.lock().unwrap();
            hist.add(&shard.hist).ok();
            delivered += shard.delivered_in_window;
        }
        (hist, delivered)
    }

    /// Up to five close frames the server sent, as text.
    pub fn close_samples(&self) -> Vec<String> {
        self.closes.lock().unwrap().clone()
    }

    /// Waits, at most `drain`, until `expected` deliveries of the window came.
    pub async fn drain(&self, expected: u64, drain: Duration) {
        let until = Instant::now() + drain;
        while self.delivered_in_window() < expected && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn closed(&self, frame: String) {
        self.server_closes.fetch_add(1, Ordering::Relaxed);
        let mut closes = self.closes.lock().unwrap();
        if closes.len() < 5 {
            closes.push(frame);
        }
    }

    /// Counts one delivery to a subscriber whose last ordinal was `last`.
    fn delivered(&self, shard: usize, sent_us: u64, ordinal: u64, last: &mut Option<u64>) {
        let now = unix_micros();
        match *last {
            Some(seen) if ordinal <= seen => {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Some(seen) if ordinal > seen + 1 => {
                self.gaps.fetch_add(ordinal - seen - 1, Ordering::Relaxed);
            }
            _ => {}
        }
        *last = Some(last.map_or(ordinal, |seen| seen.max(ordinal)));
        let from = self.window_from_us.load(Ordering::Relaxed);
        let until = self.window_until_us.load(Ordering::Relaxed);
        if from != 0 && sent_us >= from && sent_us < until {
            let mut shard = self.shards[shard].lock().unwrap();
            shard.delivered_in_window += 1;
            shard
                .hist
                .saturating_record(now.saturating_sub(sent_us).max(1));
        }
    }
}

/// Reads one subscriber's frames until it closes, each through `parse`.
pub async fn read_deliveries(
    mut ws: WsStream,
    shard: usize,
    stats: Arc<DeliveryStats>,
    parse: fn(&str) -> Frame,
) {
    let mut last_ordinal: Option<u64> = None;
    while let Some(message) = ws.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => return stats.closed(format!("{frame:?}")),
            Ok(_) => continue,
            Err(_) => {
                stats.read_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match parse(&text) {
            Frame::Delivery { sent_us, ordinal } => {
                stats.delivered_total.fetch_add(1, Ordering::Relaxed);
                stats.delivered(shard, sent_us, ordinal, &mut last_ordinal);
            }
            Frame::Unstamped => {
                stats.delivered_total.fetch_add(1, Ordering::Relaxed);
            }
            Frame::Answer(reply) => {
                if ws.send(Message::text(reply)).await.is_err() {
                    stats.read_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            Frame::Error => {
                stats.error_frames.fetch_add(1, Ordering::Relaxed);
            }
            Frame::Other => {}
        }
    }
}

/// One writer's turns on a fixed-rate schedule shared by `writers`
/// connections: writer `w` makes writes w, w + writers, ... and is offset
/// inside one interval so that the sends spread evenly.
pub struct PacedTurns {
    next_write: u64,
    writers: u64,
    slot: u64,
    first_due: Instant,
    interval: Duration,
    stop_at: Instant,
    planned: u64,
    behind: Arc<AtomicU64>,
}

impl PacedTurns {
    /// `planned` writes at most, none due at or after `stop_at`; a turn
    /// taken more than 5 ms late is counted in `behind`.
    pub fn new(
        writer: usize,
        writers: usize,
        rate: f64,
        start: Instant,
        stop_at: Instant,
        behind: Arc<AtomicU64>,
    ) -> PacedTurns {
        let interval = Duration::from_secs_f64(writers as f64 / rate);
        let planned = (rate * (stop_at - start).as_secs_f64()).ceil() as u64;
        PacedTurns {
            next_write: writer as u64,
            writers: writers as u64,
            slot: 0,
            first_due: start + interval.mul_f64(writer as f64 / writers as f64),
            interval,
            stop_at,
            planned,
            behind,
        }
    }

    /// Sleeps until the next turn is due and returns the write's number,
    /// or `None` once the schedule is over.
    pub async fn next(&mut self) -> Option<u64> {
        let due = self.first_due + self.interval.mul_f64(self.slot as f64);
        if self.next_write >= self.planned || due >= self.stop_at {
            return None;
        }
        let now = Instant::now();
        if now < due {
            tokio::time::sleep_until(due.into()).await;
        } else if now - due > Duration::from_millis(5) {
            self.behind.fetch_add(1, Ordering::Relaxed);
        }
        let write = self.next_write;
        self.next_write += self.writers;
        self.slot += 1;
        Some(write)
    }
}

/// What a fan-out writer sends: write `k`, stamped `sent_us`, goes to board
/// `board_of(k)` as `method path` with `body`; `ok_status` means written.
pub trait WriteRequests: Send + Sync + 'static {
    fn board_of(&self, write: u64) -> usize;
    fn request(&self, write: u64, sent_us: u64, body: &mut Vec<u8>) -> (&'static str, String);
    fn ok_status(&self) -> u16;
}

/// The fixed-rate writers: where and how fast, and the measured window.
pub struct WriterPlan {
    pub addr: SocketAddr,
    pub token: Option<String>,
    pub writers: usize,
    pub rate: f64,
    pub boards: usize,
    pub start: Instant,
    pub stop_at: Instant,
    /// The measured window, in unix microseconds of the send stamp.
    pub window_us: (u64, u64),
}

/// What the writers counted.
pub struct WriterTotals {
    /// Writes acknowledged per board, of those sent in the window.
    pub ok_in_window: Vec<AtomicU64>,
    pub errors: AtomicU64,
    pub behind: Arc<AtomicU64>,
}

impl WriterTotals {
    /// Deliveries expected: each write in the window once per subscriber of its board.
    pub fn expected(&self, subscribers_per_board: &[u64]) -> u64 {
        self.ok_in_window
            .iter()
            .zip(subscribers_per_board)
            .map(|(ok, subs)| ok.load(Ordering::Relaxed) * subs)
            .sum()
    }

    pub fn in_window(&self) -> u64 {
        self.ok_in_window
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// Connects `plan.writers` HTTP connections and starts them on the shared
/// schedule; each hands back its request-latency histogram.
pub async fn spawn_writers(
    plan: &WriterPlan,
    requests: Arc<dyn WriteRequests>,
) -> anyhow::Result<(Vec<JoinHandle<Histogram<u64>>>, Arc<WriterTotals>)> {
    let totals = Arc::new(WriterTotals {
        ok_in_window: (0..plan.boards).map(|_| AtomicU64::new(0)).collect(),
        errors: AtomicU64::new(0),
        behind: Arc::new(AtomicU64::new(0)),
    });
    let mut handles = Vec::with_capacity(plan.writers);
    for w in 0..plan.writers {
        let http = Http::connect_as(plan.addr, plan.token.as_deref()).await?;
        let turns = PacedTurns::new(
            w,
            plan.writers,
            plan.rate,
            plan.start,
            plan.stop_at,
            Arc::clone(&totals.behind),
        );
        let writer = Writer {
            http,
            addr: plan.addr,
            token: plan.token.clone(),
            window_us: plan.window_us,
            requests: Arc::clone(&requests),
            totals: Arc::clone(&totals),
        };
        handles.push(tokio::spawn(writer.run(turns)));
    }
    Ok((handles, totals))
}

/// One paced, closed-loop writer connection.
struct Writer {
    http: Http,
    addr: SocketAddr,
    token: Option<String>,
    window_us: (u64, u64),
    requests: Arc<dyn WriteRequests>,
    totals: Arc<WriterTotals>,
}

impl Writer {
    async fn run(mut self, mut turns: PacedTurns) -> Histogram<u64> {
        let mut hist = new_histogram();
        let mut body = Vec::with_capacity(128);
        while let Some(k) = turns.next().await {
            let sent_us = unix_micros();
            body.clear();
            let (method, path) = self.requests.request(k, sent_us, &mut body);
            let began = Instant::now();
            match self.http.send(method, &path, Some(&body)).await {
                Ok(status) if status == self.requests.ok_status() => {
                    record(&mut hist, began.elapsed());
                    let (from, until) = self.window_us;
                    if sent_us >= from && sent_us < until {
                        let board = self.requests.board_of(k);
                        self.totals.ok_in_window[board].fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(_) => {
                    self.totals.errors.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.totals.errors.fetch_add(1, Ordering::Relaxed);
                    // A closed connection is opened again for the next turn.
                    if let Ok(fresh) = Http::connect_as(self.addr, self.token.as_deref()).await {
                        self.http = fresh;
                    }
                }
            }
        }
        hist
    }
}
