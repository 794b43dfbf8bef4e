//! The background writer of a native run: it appends `log()`'s batches to `records.tlog` at
//! most [`FLUSH_INTERVAL`] after they were logged, cuts a failed append back to the last whole
//! record, and answers [`Shared::flush`].

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::core::record::RunInfo;
use crate::core::resume_point::ResumePoint;
use crate::core::run_log::RunLog;

use super::store::RunDir;

/// Longest a logged value waits in memory before it reaches the file.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// A batch this large wakes the writer early, bounding memory while logging fast.
const EARLY_FLUSH_BYTES: usize = 1 << 20;
pub use crate::core::resume_point::RESUME_POINT_BYTES;

/// What `log()` and the writer thread share.
pub(super) struct Shared {
    pub(super) log: Mutex<RunLog>,
    pub(super) wake: Condvar,
    pub(super) closing: AtomicBool,
    pub(super) failure: Mutex<Option<String>>,
    /// Flush tickets handed out; bumped under the `log` lock, so a ticket covers every value
    /// logged before it.
    asked: AtomicU64,
    /// The highest ticket whose records are on disk and fsynced.
    flushed: Mutex<u64>,
    flushed_cv: Condvar,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, RunLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the writer when a batch has just grown from `before` to `after` bytes past
    /// [`EARLY_FLUSH_BYTES`]: once a batch, as a wake is a syscall and the writer takes a
    /// non-empty batch without waiting.
    pub(super) fn grew(&self, before: usize, after: usize) {
        if before < EARLY_FLUSH_BYTES && after >= EARLY_FLUSH_BYTES {
            self.wake.notify_one();
        }
    }
}

impl Shared {
    /// A writer's shared state over `log`.
    pub(super) fn new(log: RunLog) -> Shared {
        Shared {
            log: Mutex::new(log),
            wake: Condvar::new(),
            closing: AtomicBool::new(false),
            failure: Mutex::new(None),
            asked: AtomicU64::new(0),
            flushed: Mutex::new(0),
            flushed_cv: Condvar::new(),
        }
    }

    /// The last storage error, while records are held back in memory.
    pub(super) fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Blocks until every record logged before the call is appended and fsynced; the storage
    /// error when the disk refuses (the records stay in memory, the writer keeps trying).
    pub(super) fn flush(&self) -> Result<(), String> {
        let ticket = {
            let _log = self.lock();
            self.asked.fetch_add(1, Ordering::AcqRel) + 1
        };
        self.wake.notify_one();
        let mut done = self.flushed.lock().unwrap_or_else(|p| p.into_inner());
        while *done < ticket {
            if let Some(e) = self.failure() {
                return Err(e);
            }
            done = self.flushed_cv.wait(done).unwrap_or_else(|p| p.into_inner());
        }
        Ok(())
    }
}

/// Where and for which run the writer keeps its resume point.
pub(super) struct Points {
    pub(super) folder: RunDir,
    pub(super) run: RunInfo,
    /// Log bytes between two points.
    pub(super) every: u64,
}

/// The state after `buf` is appended to a log of `good_len` bytes, when a resume point is due
/// (every [`Points::every`] bytes and at close).
fn due_point(log: &RunLog, points: &Points, buf: &[u8], good_len: u64, due: bool) -> Option<ResumePoint> {
    due.then(|| log.point_after(&points.run, buf, good_len)).flatten()
}

/// Makes live resume points durable off the writer's thread: an fsync there would hold appends
/// back (and the batch would grow in memory) for as long as the disk takes.
struct Pointer {
    slot: Arc<(Mutex<Slot>, Condvar)>,
    thread: JoinHandle<()>,
}

/// What the writer hands its point thread.
#[derive(Default)]
struct Slot {
    /// The newest point not yet written.
    next: Option<ResumePoint>,
    /// Set at close: the thread ends.
    closing: bool,
}

impl Pointer {
    /// A thread that fsyncs `log` (a handle on the run's log) and then writes the newest point
    /// offered, so a point never covers records that are not on disk.
    fn start(log: File, folder: RunDir, run: &str) -> io::Result<Pointer> {
        let slot = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let theirs = Arc::clone(&slot);
        let thread = std::thread::Builder::new()
            .name(format!("tidelog-points-{run}"))
            .spawn(move || {
                let (lock, cv) = &*theirs;
                loop {
                    let point = {
                        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
                        while s.next.is_none() && !s.closing {
                            s = cv.wait(s).unwrap_or_else(|p| p.into_inner());
                        }
                        if s.closing {
                            return;
                        }
                        s.next.take()
                    };
                    // A point that fails to be written leaves the older one, which a resume
                    // still uses (it replays more).
                    let put = point.map_or(Ok(()), |p| {
                        log.sync_data().and_then(|()| folder.put_resume_point(&p))
                    });
                    if let Err(e) = put {
                        log::warn!(
                            "tidelog: resume point not written ({e}); a resume replays more of the log"
                        );
                    }
                }
            })?;
        Ok(Pointer { slot, thread })
    }

    /// Hands `point` over, replacing one not yet written.
    fn offer(&self, point: ResumePoint) {
        let (lock, cv) = &*self.slot;
        lock.lock().unwrap_or_else(|p| p.into_inner()).next = Some(point);
        cv.notify_one();
    }

    /// Stops the thread, dropping a point not yet written: the run's end makes its own.
    fn stop(self) {
        let (lock, cv) = &*self.slot;
        lock.lock().unwrap_or_else(|p| p.into_inner()).closing = true;
        cv.notify_one();
        let _ = self.thread.join();
    }
}

/// The writer thread's body: appends batches to `file`, whose first `good_len` bytes are
/// whole records, until the run closes, keeping the live run's resume point in the run folder;
/// returns the last point made (its records fsynced at close), for the ended run's `run.spec`.
pub(super) fn writer_loop(
    shared: &Shared,
    mut file: File,
    mut good_len: u64,
    points: &Points,
) -> Option<ResumePoint> {
    let mut buf = Vec::new();
    let mut flushed = 0;
    let mut next_point = good_len + points.every;
    let pointer = file
        .try_clone()
        .and_then(|log| Pointer::start(log, points.folder.clone(), &points.run.id))
        .map_err(|e| log::warn!("tidelog: no resume points while the run is live ({e})"))
        .ok();
    let mut newest = None;
    let mut taken = Instant::now();
    let made = loop {
        let (closing, asked, point) = {
            let mut log = shared.lock();
            // Everything in the batch was logged since `taken`, so it may wait until then
            // plus FLUSH_INTERVAL: a fast loop hands over batches of EARLY_FLUSH_BYTES, not
            // whatever a write left behind, and no lock is fought over per record.
            let deadline = taken + FLUSH_INTERVAL;
            loop {
                let waits = log.batch_len() < EARLY_FLUSH_BYTES
                    && !shared.closing.load(Ordering::Acquire)
                    && shared.asked.load(Ordering::Acquire) == flushed;
                let left = deadline.saturating_duration_since(Instant::now());
                if !waits || left.is_zero() {
                    break;
                }
                log = shared
                    .wake
                    .wait_timeout(log, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            log.take_batch(&mut buf);
            taken = Instant::now();
            let closing = shared.closing.load(Ordering::Acquire);
            let due = closing || good_len + buf.len() as u64 >= next_point;
            (
                closing,
                shared.asked.load(Ordering::Acquire),
                due_point(&log, points, &buf, good_len, due),
            )
        };
        let mut written = if buf.is_empty() {
            Ok(())
        } else {
            file.write_all(&buf)
        };
        if written.is_ok() && (asked != flushed || (closing && point.is_some())) {
            written = file.sync_data();
        }
        if let (Ok(()), Some(p)) = (&written, point) {
            // The one made at close goes to `run.spec` instead.
            if let Some(pointer) = pointer.as_ref().filter(|_| !closing) {
                pointer.offer(p.clone());
            }
            next_point = p.offset + points.every;
            newest = Some(p);
        }
        match written {
            Ok(()) => {
                good_len += buf.len() as u64;
                buf.clear();
                *shared.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
                if buf.capacity() > 8 * EARLY_FLUSH_BYTES {
                    buf = Vec::new();
                }
                if asked != flushed {
                    flushed = asked;
                    *shared.flushed.lock().unwrap_or_else(|p| p.into_inner()) = asked;
                    shared.flushed_cv.notify_all();
                }
            }
            Err(e) => {
                let _ = file.set_len(good_len);
                log::error!("tidelog: cannot write records ({e}); keeping them in memory");
                {
                    let _waiters = shared.flushed.lock().unwrap_or_else(|p| p.into_inner());
                    *shared.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                }
                shared.flushed_cv.notify_all();
                shared.lock().restore_batch(std::mem::take(&mut buf));
                if closing {
                    break newest;
                }
                std::thread::sleep(FLUSH_INTERVAL);
                continue;
            }
        }
        if closing && shared.lock().batch_len() == 0 {
            let _ = file.sync_all();
            break newest;
        }
    };
    if let Some(pointer) = pointer {
        pointer.stop();
    }
    made
}
