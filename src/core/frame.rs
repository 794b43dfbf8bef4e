//! Length + CRC32C framing of `records.tlog`: what makes a torn tail detectable.
//!
//! A frame is `len: u32 LE | crc: u32 LE | payload[len]`, where `crc` is CRC32C over the
//! length bytes and the payload. An empty payload is never written, so a zero-filled tail
//! (what some filesystems leave after a crash) is not mistaken for a record.

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

/// One intact frame found by [`Frames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Byte offset of the frame's header in the log.
    pub offset: usize,
    /// The record bytes.
    pub payload: &'a [u8],
}

/// Iterates the intact frames of a log, stopping at the first torn or corrupt one.
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Frames<'a> {
    /// Reads frames from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Frames { buf, pos: 0 }
    }

    /// Byte length of the intact prefix read so far: where the next append belongs.
    pub fn valid_len(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        let rest = &self.buf[self.pos..];
        if rest.len() < HEADER {
            return None;
        }
        let len_bytes: [u8; 4] = rest[..4].try_into().ok()?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().ok()?);
        if len == 0 || rest.len() - HEADER < len {
            return None;
        }
        let payload = &rest[HEADER..HEADER + len];
        if crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload) != crc {
            return None;
        }
        let frame = Frame {
            offset: self.pos,
            payload,
        };
        self.pos += HEADER + len;
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

    #[test]
    fn corruption_and_zero_tails_stop_the_reader() {
        let mut log = Vec::new();
        push(&mut log, b"abc");
        let mut flipped = log.clone();
        flipped[HEADER + 1] ^= 1;
        assert_eq!(Frames::new(&flipped).count(), 0);
        log.extend_from_slice(&[0u8; 64]);
        let mut frames = Frames::new(&log);
        assert_eq!(frames.by_ref().count(), 1);
        assert_eq!(frames.valid_len(), HEADER + 3);
    }
}
