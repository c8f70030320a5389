//! Timing of the writer's transactions and of the checkpoints, to find what an
//! acknowledgement waited behind. Off unless `NIMRIZ_LISTEN_PROFILE` is set (to anything but
//! `0`); then, on stderr: one summary line a second for the writer and one for the
//! checkpointer, and one line for each group of acknowledgements whose oldest waited more
//! than [`SLOW_ACK`] for its commit, naming the transactions the writer ran before it.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The environment variable that turns the profile on.
pub const ENV: &str = "NIMRIZ_LISTEN_PROFILE";

/// An acknowledgement that waited longer than this (queue + commit) is traced.
pub const SLOW_ACK: Duration = Duration::from_millis(20);

/// Transactions remembered between two acknowledgement commits (for the trace).
const KEEP: usize = 6;

pub fn enabled() -> bool {
    std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn say(line: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
}

#[derive(Default)]
struct Window {
    ack_commits: u64,
    acks: u64,
    ack_busy: Duration,
    ack_max: Duration,
    wait_max: Duration,
    slow: u64,
    /// Worker changes committed with acknowledgements.
    folded: u64,
    op_commits: u64,
    ops: u64,
    op_busy: Duration,
    op_max: Duration,
    op_max_n: usize,
    slowest_op: Option<(&'static str, Duration)>,
}

/// The writer thread's profile (a no-op when off).
pub struct Profile {
    on: bool,
    start: Instant,
    w: Window,
    /// Worker transactions since the last acknowledgement commit, and how many more.
    before: Vec<String>,
    more: usize,
}

impl Profile {
    pub fn new(on: bool) -> Self {
        Profile {
            on,
            start: Instant::now(),
            w: Window::default(),
            before: Vec::new(),
            more: 0,
        }
    }

    pub fn on(&self) -> bool {
        self.on
    }

    /// A commit of `n` acknowledgements took `took`; the oldest had waited `waited` in all.
    pub fn acks(&mut self, n: usize, took: Duration, waited: Duration) {
        if !self.on {
            return;
        }
        let w = &mut self.w;
        w.ack_commits += 1;
        w.acks += n as u64;
        w.ack_busy += took;
        w.ack_max = w.ack_max.max(took);
        w.wait_max = w.wait_max.max(waited);
        if waited > SLOW_ACK {
            w.slow += 1;
            let mut line = format!(
                "profile: slow ack: oldest of {n} waited {:.1} ms (its commit {:.1} ms); before it:",
                ms(waited),
                ms(took)
            );
            if self.before.is_empty() {
                line.push_str(" nothing (acks only)");
            }
            for b in &self.before {
                let _ = write!(line, " [{b}]");
            }
            if self.more > 0 {
                let _ = write!(line, " and {} more", self.more);
            }
            say(&line);
        }
        self.before.clear();
        self.more = 0;
        self.tick();
    }

    /// Worker changes ran inside an acknowledgement commit (already timed with it).
    pub fn folded(&mut self, ops: &[(&'static str, Duration)]) {
        if !self.on {
            return;
        }
        self.w.folded += ops.len() as u64;
        for &(label, d) in ops {
            if self.w.slowest_op.is_none_or(|(_, m)| d > m) {
                self.w.slowest_op = Some((label, d));
            }
        }
    }

    /// A worker transaction ran `ops` (label, time inside the transaction) and took `took`
    /// from BEGIN to the end of COMMIT.
    pub fn ops(&mut self, ops: &[(&'static str, Duration)], took: Duration) {
        if !self.on {
            return;
        }
        let w = &mut self.w;
        w.op_commits += 1;
        w.ops += ops.len() as u64;
        w.op_busy += took;
        if took > w.op_max {
            w.op_max = took;
            w.op_max_n = ops.len();
        }
        for &(label, d) in ops {
            if w.slowest_op.is_none_or(|(_, m)| d > m) {
                w.slowest_op = Some((label, d));
            }
        }
        if self.before.len() < KEEP {
            // Per label: count and time, e.g. `8 ops 1.9 ms: claim×1 0.3, retry×7 0.9`.
            let mut by: Vec<(&'static str, usize, Duration)> = Vec::new();
            for &(label, d) in ops {
                match by.iter_mut().find(|(l, _, _)| *l == label) {
                    Some(e) => {
                        e.1 += 1;
                        e.2 += d;
                    }
                    None => by.push((label, 1, d)),
                }
            }
            let mut s = format!("{} ops {:.1} ms:", ops.len(), ms(took));
            for (label, n, d) in by {
                let _ = write!(s, " {label}×{n} {:.1}", ms(d));
            }
            self.before.push(s);
        } else {
            self.more += 1;
        }
        self.tick();
    }

    fn tick(&mut self) {
        let elapsed = self.start.elapsed();
        if elapsed < Duration::from_secs(1) {
            return;
        }
        let w = std::mem::take(&mut self.w);
        let busy = (w.ack_busy + w.op_busy).as_secs_f64() / elapsed.as_secs_f64() * 100.0;
        let slowest = w.slowest_op.map_or(String::new(), |(l, d)| {
            format!("; slowest op {l} {:.1} ms", ms(d))
        });
        say(&format!(
            "profile: writer {busy:.0}% busy | {} acks in {} commits (max {:.1} ms, oldest \
             waited max {:.1} ms, {} slow) | worker {} ops with acks, {} ops in {} commits (max \
             {:.1} ms with {} ops{slowest})",
            w.acks,
            w.ack_commits,
            ms(w.ack_max),
            ms(w.wait_max),
            w.slow,
            w.folded,
            w.ops,
            w.op_commits,
            ms(w.op_max),
            w.op_max_n,
        ));
        self.start = Instant::now();
    }
}

/// The checkpointer's profile: one line a second in which it copied anything.
pub struct CheckpointProfile {
    on: bool,
    start: Instant,
    runs: u64,
    pages: i64,
    max: Duration,
    wal: i64,
}

impl CheckpointProfile {
    pub fn new(on: bool) -> Self {
        CheckpointProfile {
            on,
            start: Instant::now(),
            runs: 0,
            pages: 0,
            max: Duration::ZERO,
            wal: 0,
        }
    }

    /// One PASSIVE checkpoint: `copied` pages moved to the database, the WAL is `wal`
    /// frames long.
    pub fn run(&mut self, took: Duration, copied: i64, wal: i64) {
        if !self.on {
            return;
        }
        self.runs += 1;
        self.pages += copied.max(0);
        self.max = self.max.max(took);
        self.wal = self.wal.max(wal);
        let elapsed = self.start.elapsed();
        if elapsed < Duration::from_secs(1) {
            return;
        }
        if self.pages > 0 {
            say(&format!(
                "profile: checkpoint {} runs, {} pages copied, max {:.1} ms, WAL up to {} frames",
                self.runs,
                self.pages,
                ms(self.max),
                self.wal
            ));
        }
        *self = CheckpointProfile::new(true);
    }
}
