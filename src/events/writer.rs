//! The event writer thread: bounded queue in, NDJSON lines out.
//!
//! A plain OS thread, not a tokio task, so a slow disk can never stall the runtime's workers.
//! Lines are buffered and flushed at least once a second, and on [`EventWriter::close`], which
//! drains everything already queued before returning: nothing accepted is lost on a clean stop.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use super::{EventSink, EventStats, QueryRecord, TimeCache, write_line};
use crate::config::EventsConfig;

/// Errors starting the writer.
#[derive(Debug, thiserror::Error)]
pub enum EventWriterError {
    /// The event file (or its directory) could not be created or opened.
    #[error("cannot open event file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The thread could not be spawned.
    #[error("cannot start event writer thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Owns the writer thread. Call [`close`](EventWriter::close) on shutdown.
#[derive(Debug)]
pub struct EventWriter {
    closing: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Pause between batches when the queue is empty.
const BATCH_PAUSE: Duration = Duration::from_millis(5);

/// How often buffered lines reach the file at the latest.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

impl EventWriter {
    /// Opens the file (creating parent directories) and starts the thread. Returns the sink for
    /// the DNS path. With no `path` or `queries = "none"`, returns a disabled sink and no thread.
    pub fn start(
        cfg: &EventsConfig,
        computer: &str,
    ) -> Result<(EventSink, Option<EventWriter>), EventWriterError> {
        let Some(path) = cfg.path.clone() else {
            return Ok((EventSink::disabled(), None));
        };
        let file = open(&path).map_err(|source| EventWriterError::Open {
            path: path.clone(),
            source,
        })?;
        let (tx, rx) = sync_channel(cfg.queue);
        let stats = Arc::new(EventStats::default());
        let closing = Arc::new(AtomicBool::new(false));
        let mut worker = Worker {
            rx,
            out: Some(BufWriter::with_capacity(64 * 1024, file)),
            path,
            computer: computer.to_owned(),
            source_system: cfg.source_system.clone(),
            stats: stats.clone(),
            closing: closing.clone(),
            last_warn: None,
            times: TimeCache::default(),
        };
        let thread = std::thread::Builder::new()
            .name("iocdns-events".into())
            .spawn(move || worker.run())
            .map_err(EventWriterError::Spawn)?;
        let sink = EventSink {
            tx: Some(tx),
            queries: Arc::new(std::sync::atomic::AtomicU8::new(super::queries_code(
                cfg.queries,
            ))),
            stats,
        };
        Ok((
            sink,
            Some(EventWriter {
                closing,
                thread: Some(thread),
            }),
        ))
    }

    /// Writes everything queued so far, flushes, closes the file and stops the thread.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            error!("event writer thread panicked");
        }
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

struct Worker {
    rx: Receiver<QueryRecord>,
    out: Option<BufWriter<File>>,
    path: PathBuf,
    computer: String,
    source_system: String,
    stats: Arc<EventStats>,
    closing: Arc<AtomicBool>,
    last_warn: Option<Instant>,
    times: TimeCache,
}

impl Worker {
    /// Drains the queue in batches and sleeps between them. The writer never blocks *in* the
    /// channel: a blocked receiver would make every `try_send` on the DNS path pay for a futex
    /// wake-up and a context switch (on one core, that halves the query rate). Sleeping
    /// [`BATCH_PAUSE`] bounds the added latency of a line to a few milliseconds.
    fn run(&mut self) {
        let mut last_flush = Instant::now();
        let mut line = Vec::with_capacity(1024);
        loop {
            let mut drained = 0usize;
            loop {
                match self.rx.try_recv() {
                    Ok(rec) => {
                        self.write(&rec, &mut line);
                        drained += 1;
                        if drained >= 4096 {
                            break;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.flush();
                        return;
                    }
                }
            }
            if drained < 4096 {
                std::thread::sleep(BATCH_PAUSE);
            }
            if last_flush.elapsed() >= FLUSH_INTERVAL {
                self.flush();
                last_flush = Instant::now();
            }
            if self.closing.load(Ordering::SeqCst) {
                break;
            }
        }
        // Drain what was accepted before the close.
        while let Ok(rec) = self.rx.try_recv() {
            self.write(&rec, &mut line);
        }
        self.flush();
    }

    fn write(&mut self, rec: &QueryRecord, line: &mut Vec<u8>) {
        if write_line(
            rec,
            &self.computer,
            &self.source_system,
            &mut self.times,
            line,
        )
        .is_err()
        {
            self.stats.dropped_io.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.out.is_none() {
            // Re-open after an earlier failure (disk full, file removed by rotation).
            match open(&self.path) {
                Ok(f) => self.out = Some(BufWriter::with_capacity(64 * 1024, f)),
                Err(e) => {
                    self.io_failed(&e);
                    return;
                }
            }
        }
        let result = self.out.as_mut().map(|o| o.write_all(line));
        match result {
            Some(Ok(())) => {
                self.stats.written.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                self.out = None;
                self.io_failed(&e);
            }
            None => {}
        }
    }

    fn flush(&mut self) {
        if let Some(out) = self.out.as_mut()
            && let Err(e) = out.flush()
        {
            self.out = None;
            self.io_failed(&e);
        }
    }

    fn io_failed(&mut self, e: &std::io::Error) {
        self.stats.dropped_io.fetch_add(1, Ordering::Relaxed);
        if self
            .last_warn
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
        {
            warn!(path = %self.path.display(), error = %e, "event write failed; events are being dropped");
            self.last_warn = Some(Instant::now());
        }
    }
}
