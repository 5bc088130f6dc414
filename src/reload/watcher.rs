//! File watcher: `notify` on its own thread, debounced, typed.
//!
//! Watches the *directories* holding the config, feed and allow files (non-recursively), so a
//! file replaced by rename (editors, `rsync`, `curl -o tmp && mv`), deleted and re-created, or
//! written in place is seen the same way. Directories are re-added after every burst to follow
//! inode changes (a directory itself replaced). A burst of events is absorbed until 250 ms pass
//! quietly (at most 1 s), then one request is sent: `ConfigChanged` if the config file was among
//! the paths, else `FilesChanged`.
//!
//! Events for other files in those directories (an event log or a cache written next to the
//! config, editor swap files) are dropped in notify's callback by file name, before they wake the
//! watcher thread: an event file in the config folder is written hundreds of times a second
//! under load, and each event used to cost a wake-up and a `canonicalize`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{ReloadHandle, ReloadRequest};

/// Quiet time that ends a burst.
const QUIET: Duration = Duration::from_millis(250);
/// Longest a burst can delay a reload.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Starts the watcher thread. `paths` may change (after a config reload); `config` is the config
/// file, whose changes are reported as `ConfigChanged`.
pub fn spawn(
    paths: Arc<Mutex<Vec<PathBuf>>>,
    config: Option<PathBuf>,
    reload: ReloadHandle,
    shutdown: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // Created and armed before this returns, so no change made after start-up is missed.
    let (tx, rx) = channel::<notify::Result<notify::Event>>();
    let names: Arc<Mutex<HashSet<OsString>>> = Arc::default();
    let filter = names.clone();
    let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let wanted = match &ev {
            Ok(ev) => filter.lock().is_ok_and(|names| concerns(ev, &names)),
            Err(_) => true,
        };
        if wanted {
            let _ = tx.send(ev);
        }
    })
    .map_err(std::io::Error::other)?;
    let mut state = WatchState {
        watcher,
        watched: HashSet::new(),
        interesting: HashSet::new(),
        names,
        paths,
    };
    state.refresh();
    std::thread::Builder::new()
        .name("iocdns-watch".into())
        .spawn(move || run(state, rx, config, reload, shutdown))
}

struct WatchState {
    watcher: notify::RecommendedWatcher,
    watched: HashSet<PathBuf>,
    interesting: HashSet<PathBuf>,
    /// File names of `interesting`, for the cheap filter in notify's callback.
    names: Arc<Mutex<HashSet<OsString>>>,
    paths: Arc<Mutex<Vec<PathBuf>>>,
}

/// Whether `ev` may concern a watched file: not a mere access, and naming a watched file name
/// (the full path check against `interesting` follows on the watcher thread). An event without
/// paths (a queue overflow) is passed on.
fn concerns(ev: &notify::Event, names: &HashSet<OsString>) -> bool {
    if matches!(ev.kind, EventKind::Access(_)) {
        return false;
    }
    ev.paths.is_empty()
        || ev
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| names.contains(n)))
}

impl WatchState {
    /// (Re-)watches the directories of the current path list.
    fn refresh(&mut self) {
        let list = self.paths.lock().map(|p| p.clone()).unwrap_or_default();
        self.interesting.clear();
        let mut dirs = HashSet::new();
        for p in &list {
            let k = key(p);
            if let Some(d) = k.parent() {
                dirs.insert(d.to_path_buf());
            }
            self.interesting.insert(k);
        }
        if let Ok(mut names) = self.names.lock() {
            names.clear();
            names.extend(
                list.iter()
                    .filter_map(|p| p.file_name())
                    .map(OsString::from),
            );
        }
        for d in self.watched.drain() {
            let _ = self.watcher.unwatch(&d);
        }
        for d in dirs {
            match self.watcher.watch(&d, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(d);
                }
                Err(e) => debug!(dir = %d.display(), error = %e, "cannot watch directory"),
            }
        }
    }
}

fn key(p: &Path) -> PathBuf {
    let parent = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = parent
        .canonicalize()
        .unwrap_or_else(|_| parent.to_path_buf());
    match p.file_name() {
        Some(n) => dir.join(n),
        None => dir,
    }
}

fn run(
    mut state: WatchState,
    rx: std::sync::mpsc::Receiver<notify::Result<notify::Event>>,
    config: Option<PathBuf>,
    reload: ReloadHandle,
    shutdown: CancellationToken,
) {
    let config_key = config.as_deref().map(key);
    while !shutdown.is_cancelled() {
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut config_changed = false;
        let mut files_changed = false;
        let mut classify = |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            if matches!(ev.kind, EventKind::Access(_)) {
                return;
            }
            for p in &ev.paths {
                let k = key(p);
                if config_key.as_ref() == Some(&k) {
                    config_changed = true;
                } else if state.interesting.contains(&k) {
                    files_changed = true;
                }
            }
        };
        classify(first);
        let burst_start = Instant::now();
        while burst_start.elapsed() < MAX_DELAY {
            match rx.recv_timeout(QUIET) {
                Ok(ev) => classify(ev),
                Err(_) => break,
            }
        }
        if config_changed {
            reload.request(ReloadRequest::ConfigChanged);
        } else if files_changed {
            reload.request(ReloadRequest::FilesChanged);
        }
        if config_changed || files_changed {
            debug!(config_changed, files_changed, "watched files changed");
            state.refresh();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, ModifyKind};

    fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
        let mut ev = notify::Event::new(kind);
        ev.paths = paths.iter().map(PathBuf::from).collect();
        ev
    }

    #[test]
    fn callback_filter_passes_watched_names_only() {
        let names: HashSet<OsString> = ["iocdns.toml", "threatfox.csv"]
            .into_iter()
            .map(OsString::from)
            .collect();
        let modify = EventKind::Modify(ModifyKind::Any);
        assert!(concerns(
            &event(modify, &["/etc/iocdns/threatfox.csv"]),
            &names
        ));
        assert!(concerns(
            &event(modify, &["/etc/iocdns/iocdns.toml"]),
            &names
        ));
        // A rename names both sides; the new name counts.
        assert!(concerns(
            &event(
                modify,
                &["/etc/iocdns/.tmp123", "/etc/iocdns/threatfox.csv"]
            ),
            &names
        ));
        assert!(concerns(
            &event(EventKind::Create(CreateKind::File), &["x/threatfox.csv"]),
            &names
        ));
        assert!(!concerns(
            &event(modify, &["/etc/iocdns/events.ndjson"]),
            &names
        ));
        assert!(!concerns(
            &event(
                EventKind::Access(AccessKind::Any),
                &["/etc/iocdns/threatfox.csv"]
            ),
            &names
        ));
        // No path (e.g. the kernel queue overflowed): let the watcher thread decide.
        assert!(concerns(&event(EventKind::Other, &[]), &names));
    }
}
