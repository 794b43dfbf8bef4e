//! Length + CRC32C framing of `records.tlog`: what makes damage detectable and the log
//! readable past it.
//!
//! A frame is `len: u32 LE | crc: u32 LE | payload[len]`, where `crc` is CRC32C over the
//! length bytes and the payload. An empty payload is never written, so a zero-filled tail
//! (what some filesystems leave after a crash) is not mistaken for a record. Because the
//! checksum covers the length, any offset can be tested for "an intact frame starts here",
//! which is how [`Frames`] resynchronises after a damaged frame and tells corruption (intact
//! frames follow) from a torn tail (none do).

/// Bytes of framing in front of every payload.
pub const HEADER: usize = 8;

/// Starts a frame in `buf`; returns the position to pass to [`end`] once the payload is in.
#[inline(always)]
pub fn begin(buf: &mut Vec<u8>) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0u8; HEADER]);
    at
}

/// Completes the frame started at `at` by filling in its length and checksum.
#[inline(always)]
pub fn end(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at - HEADER) as u32;
    let len_bytes = len.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), &buf[at + HEADER..]);
    buf[at..at + 4].copy_from_slice(&len_bytes);
    buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Frames `payload` onto the end of `buf`.
pub fn push(buf: &mut Vec<u8>, payload: &[u8]) {
    let at = begin(buf);
    buf.extend_from_slice(payload);
    end(buf, at);
}

/// Longest payload a frame may declare. Far above any record the writer produces (a value is
/// at most `MAX_VALUE_BYTES`); a larger declared length is a damaged header, which keeps the
/// resynchronising scan from chasing garbage lengths.
pub const MAX_FRAME: usize = 1 << 30;

/// One intact frame found by [`Frames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Byte offset of the frame's header in the log.
    pub offset: usize,
    /// The record bytes.
    pub payload: &'a [u8],
}

/// The intact frame starting at `at`, if there is one: a plausible length that fits in `buf`
/// and a matching checksum.
fn frame_at(buf: &[u8], at: usize) -> Option<Frame<'_>> {
    let rest = buf.get(at..)?;
    if rest.len() < HEADER {
        return None;
    }
    let len_bytes: [u8; 4] = rest[..4].try_into().ok()?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len == 0 || len > MAX_FRAME || rest.len() - HEADER < len {
        return None;
    }
    let crc = u32::from_le_bytes(rest[4..8].try_into().ok()?);
    let payload = &rest[HEADER..HEADER + len];
    (crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload) == crc)
        .then_some(Frame { offset: at, payload })
}

/// Whether `buf` is exactly one intact frame.
pub fn is_one_frame(buf: &[u8]) -> bool {
    frame_at(buf, 0).is_some_and(|f| HEADER + f.payload.len() == buf.len())
}

/// The length the frame header at `at` declares, when 4 bytes are there.
fn declared(buf: &[u8], at: usize) -> Option<usize> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
}

/// Where the first intact frame after a bad one at `bad` starts, trying every later offset
/// (the earliest wins: a damaged length may point past good frames); `None` when nothing
/// intact follows, so the bad bytes are a torn tail. Before paying for a checksum, a
/// candidate must declare a length that fits, and be followed by the log's end, a short tail
/// or a header whose length is at most [`MAX_FRAME`] (zero for a zero-filled tail), which
/// rules out most offsets inside a payload.
fn resync(buf: &[u8], bad: usize) -> Option<usize> {
    (bad + 1..buf.len().saturating_sub(HEADER)).find(|&at| {
        let Some(len) = declared(buf, at).filter(|&l| l > 0 && l <= MAX_FRAME) else {
            return false;
        };
        let Some(end) = (at + HEADER).checked_add(len).filter(|&e| e <= buf.len()) else {
            return false;
        };
        declared(buf, end).is_none_or(|next| next <= MAX_FRAME) && frame_at(buf, at).is_some()
    })
}

/// A stretch of the log that holds no intact frame but has intact frames after it: damage in
/// the middle of the log, never a crash's torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Corruption {
    /// Byte offset where the unreadable bytes start.
    pub offset: usize,
    /// How many bytes could not be read.
    pub len: usize,
}

/// Iterates the intact frames of a log. A bad frame followed by an intact one is skipped and
/// recorded as [`Corruption`]; a bad frame with nothing intact after it ends the log (a torn
/// tail).
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
    corrupt: Vec<Corruption>,
    more: bool,
}

impl<'a> Frames<'a> {
    /// Reads frames from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Frames::window(buf, false)
    }

    /// Reads frames from a window of a longer log; with `more` (the log goes on past `buf`), a
    /// frame cut by the window's end stops the iterator where it starts instead of counting as
    /// a torn tail, so the next window can begin there.
    pub fn window(buf: &'a [u8], more: bool) -> Self {
        Frames {
            buf,
            pos: 0,
            corrupt: Vec::new(),
            more,
        }
    }

    /// Whether the frame at the current position runs past the window (only with `more`).
    fn cut_off(&self) -> bool {
        let rest = self.buf.len() - self.pos;
        self.more
            && (rest < HEADER
                || declared(self.buf, self.pos)
                    .is_some_and(|len| len > 0 && len <= MAX_FRAME && len > rest - HEADER))
    }

    /// End of the last intact frame read so far: where the next append belongs, and where a
    /// torn tail starts once the iterator is done.
    pub fn valid_len(&self) -> usize {
        self.pos
    }

    /// The damaged stretches skipped so far, in log order.
    pub fn corruption(&self) -> &[Corruption] {
        &self.corrupt
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let frame = match frame_at(self.buf, self.pos) {
            Some(f) => f,
            None if self.cut_off() => return None,
            None => {
                let next = resync(self.buf, self.pos)?;
                self.corrupt.push(Corruption {
                    offset: self.pos,
                    len: next - self.pos,
                });
                frame_at(self.buf, next).expect("resync found an intact frame")
            }
        };
        self.pos = frame.offset + HEADER + frame.payload.len();
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_at_every_offset_keeps_earlier_frames() {
        let mut log = Vec::new();
        push(&mut log, b"first");
        push(&mut log, b"second record");
        let whole = log.len();
        let last_start = HEADER + 5;
        for cut in last_start..whole {
            let mut frames = Frames::new(&log[..cut]);
            assert_eq!(frames.next().map(|f| f.payload), Some(&b"first"[..]));
            assert_eq!(frames.next(), None, "cut at {cut}");
            assert_eq!(frames.valid_len(), last_start);
        }
        assert_eq!(Frames::new(&log).count(), 2);
    }

    /// A window that cuts a frame stops before it (the next window starts there); without
    /// `more` the same bytes are a torn tail.
    #[test]
    fn a_window_stops_at_the_frame_it_cuts() {
        let mut log = Vec::new();
        push(&mut log, b"first");
        push(&mut log, b"second record");
        for cut in HEADER + 5..log.len() {
            let mut frames = Frames::window(&log[..cut], true);
            assert_eq!(frames.by_ref().count(), 1, "cut at {cut}");
            assert_eq!(frames.valid_len(), HEADER + 5);
            assert!(frames.corruption().is_empty());
        }
        assert!(is_one_frame(&log[HEADER + 5..]));
        assert!(!is_one_frame(&log[HEADER + 4..]));
        assert!(!is_one_frame(&log));
    }

    #[test]
    fn a_bad_last_frame_and_zero_tails_are_torn_tails() {
        let mut log = Vec::new();
        push(&mut log, b"abc");
        let mut flipped = log.clone();
        flipped[HEADER + 1] ^= 1;
        let mut frames = Frames::new(&flipped);
        assert_eq!(frames.by_ref().count(), 0);
        assert!(frames.corruption().is_empty());
        log.extend_from_slice(&[0u8; 64]);
        let mut frames = Frames::new(&log);
        assert_eq!(frames.by_ref().count(), 1);
        assert_eq!(frames.valid_len(), HEADER + 3);
        assert!(frames.corruption().is_empty());
    }

    /// Flips every bit of a log in turn: the damaged frame alone is lost, every other frame is
    /// read, and the damage is reported as corruption exactly when intact frames follow it.
    #[test]
    fn a_flipped_bit_anywhere_loses_only_its_frame() {
        let payloads: Vec<Vec<u8>> = (0..6u8)
            .map(|i| {
                (0..(3 + i as usize * 7))
                    .map(|j| (j as u8).wrapping_mul(31) ^ i)
                    .collect()
            })
            .collect();
        let mut log = Vec::new();
        let mut starts = Vec::new();
        for p in &payloads {
            starts.push(log.len());
            push(&mut log, p);
        }
        starts.push(log.len());
        for bit in 0..log.len() * 8 {
            let mut bad = log.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let hit = starts
                .iter()
                .rposition(|&s| s <= bit / 8)
                .expect("inside a frame");
            let mut frames = Frames::new(&bad);
            let read: Vec<&[u8]> = frames.by_ref().map(|f| f.payload).collect();
            let expected: Vec<&[u8]> = payloads
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != hit)
                .map(|(_, p)| &p[..])
                .collect();
            assert_eq!(read, expected, "bit {bit}");
            let last = hit == payloads.len() - 1;
            let expected_corruption = if last {
                vec![]
            } else {
                vec![Corruption {
                    offset: starts[hit],
                    len: starts[hit + 1] - starts[hit],
                }]
            };
            assert_eq!(frames.corruption(), &expected_corruption[..], "bit {bit}");
            assert_eq!(frames.valid_len(), if last { starts[hit] } else { log.len() });
        }
    }

    #[test]
    fn overlong_declared_lengths_are_bad_frames() {
        let mut log = Vec::new();
        push(&mut log, b"one");
        let second = log.len();
        push(&mut log, b"two");
        log[second..second + 4].copy_from_slice(&((MAX_FRAME as u32) + 1).to_le_bytes());
        push(&mut log, b"three");
        let mut frames = Frames::new(&log);
        assert_eq!(frames.by_ref().count(), 2);
        assert_eq!(
            frames.corruption(),
            &[Corruption {
                offset: second,
                len: HEADER + 3
            }]
        );
    }

    #[test]
    fn frames_after_damage_are_found_before_a_torn_or_zeroed_tail() {
        for tail in [vec![0u8; 40], {
            let mut torn = Vec::new();
            push(&mut torn, &[7u8; 100]);
            torn.truncate(50);
            torn
        }] {
            let mut log = Vec::new();
            push(&mut log, b"first");
            let bad = log.len();
            push(&mut log, b"damaged");
            let after = log.len();
            push(&mut log, b"after");
            let good_end = log.len();
            log.extend_from_slice(&tail);
            log[bad + HEADER] ^= 0x10;
            let mut frames = Frames::new(&log);
            let read: Vec<&[u8]> = frames.by_ref().map(|f| f.payload).collect();
            assert_eq!(read, [&b"first"[..], b"after"]);
            assert_eq!(
                frames.corruption(),
                &[Corruption {
                    offset: bad,
                    len: after - bad
                }]
            );
            assert_eq!(frames.valid_len(), good_end);
        }
    }
}
