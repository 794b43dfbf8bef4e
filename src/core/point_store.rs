//! Where a run folder keeps its resume point: `.resume` while the run is live, `run.spec`'s
//! `resume` once it has ended, so a finished folder holds only CONTRACT §3's entries. Reads
//! are bounded: a file over the cap is refused unread and the resume replays from byte 0.

use std::io;
use std::path::Path;

use super::folder::{write_json, Dir, FolderRun};
use super::layout::{RunSpec, RESUME, RUN_SPEC};
use super::record::{RunInfo, RunState};
use super::resume_point::ResumePoint;

/// Largest point kept or read (its JSON); a bigger one is dropped and a resume replays more.
pub const MAX_POINT_BYTES: u64 = 8 << 20;
/// Room in `run.spec` for the fields beside its point.
const SPEC_SLACK: u64 = 64 << 10;

/// The file at `path` if it exists and holds at most `cap` bytes; a longer one is not read.
fn read_capped<D: Dir>(dir: &D, path: &Path, cap: u64) -> io::Result<Option<Vec<u8>>> {
    match dir.size(path)? {
        Some(len) if len <= cap => {
            let bytes = dir.read_at(path, 0, cap as usize + 1)?;
            Ok((bytes.len() as u64 <= cap).then_some(bytes))
        }
        _ => Ok(None),
    }
}

impl<D: Dir> FolderRun<D> {
    /// Replaces the live run's resume point, atomically: a resume sees the old one or the new.
    pub fn put_resume_point(&self, point: &ResumePoint) -> io::Result<()> {
        let bytes = serde_json::to_vec(point).map_err(io::Error::other)?;
        if bytes.len() as u64 > MAX_POINT_BYTES {
            return Err(io::Error::other(format!(
                "{} bytes, over the {MAX_POINT_BYTES}-byte cap",
                bytes.len()
            )));
        }
        self.dir().write_atomic(&self.path().join(RESUME), &bytes)
    }

    /// Removes the live point once `run.spec` holds the ended run's, and the temporary copies
    /// a killed writer left half-written (`.resume.<pid>.<n>.tmp~`).
    pub fn remove_live_point(&self) -> io::Result<()> {
        for name in self.dir().list(self.path())? {
            let temp = name
                .strip_prefix(RESUME)
                .is_some_and(|t| t.starts_with('.') && t.ends_with(".tmp~"));
            if name == RESUME || temp {
                self.dir().remove(&self.path().join(name))?;
            }
        }
        Ok(())
    }

    /// Records the end of a run: `run.spec` in `state` with the ended run's point (see
    /// [`Self::spec_point`]), then the live point goes, so the folder holds only CONTRACT §3's
    /// entries. Every writer (native, Node) ends a run through this.
    pub fn write_ended(
        &self,
        info: &RunInfo,
        state: RunState,
        point: Option<&ResumePoint>,
    ) -> io::Result<()> {
        let resume = self.spec_point(point)?;
        self.write_specs(info, state, resume)?;
        self.remove_live_point()
    }

    /// The point `run.spec` is to hold: `point` if it fits the cap, else the one it holds (a
    /// resumed run keeps its ended point until it makes a newer one).
    pub fn spec_point(&self, point: Option<&ResumePoint>) -> io::Result<Option<serde_json::Value>> {
        // Through bytes, not `to_value`: the (de)serializers that takes are there already.
        let bytes = point.and_then(|p| serde_json::to_vec(p).ok());
        if let Some(b) = bytes.filter(|b| b.len() as u64 <= MAX_POINT_BYTES) {
            return Ok(serde_json::from_slice(&b).ok());
        }
        Ok(self.stored_spec()?.and_then(|s| s.resume))
    }

    /// `run.spec`, unless it is missing, damaged or too long to hold a point worth reading.
    fn stored_spec(&self) -> io::Result<Option<RunSpec>> {
        let bytes = read_capped(
            self.dir(),
            &self.path().join(RUN_SPEC),
            MAX_POINT_BYTES + SPEC_SLACK,
        )?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// The stored points as stored (the live one, then the ended run's), for a resume to check.
    pub(super) fn stored_points(&self) -> io::Result<Vec<Vec<u8>>> {
        let live = read_capped(self.dir(), &self.path().join(RESUME), MAX_POINT_BYTES)?;
        let ended = self
            .stored_spec()?
            .and_then(|s| s.resume)
            .and_then(|v| serde_json::to_vec(&v).ok());
        Ok(live.into_iter().chain(ended).collect())
    }

    /// Forgets both points: a log found damaged before its end is replayed whole again.
    pub fn drop_points(&self) -> io::Result<()> {
        self.remove_live_point()?;
        match self.stored_spec()? {
            Some(mut spec) if spec.resume.is_some() => {
                spec.resume = None;
                write_json(self.dir(), &self.path().join(RUN_SPEC), &spec)
            }
            _ => Ok(()),
        }
    }
}
