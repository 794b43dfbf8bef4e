//! The framing of W&B's `.wandb` transaction log: LevelDB's log format behind a 7-byte file
//! header. The file is 32 KiB blocks (the header sits in the first); each block holds chunks
//! `crc32: u32 LE | length: u16 LE | type: u8 | payload`, the CRC-32 (IEEE) covering the type
//! byte and the payload; a record is one FULL chunk or FIRST, MIDDLE..., LAST; a block tail
//! shorter than a chunk header is padding.
//!
//! The reader streams one block at a time. Like LevelDB it survives damage: a bad chunk
//! spoils the rest of its block and reading resumes at the next block boundary; the bytes
//! lost are reported as [`Damage`].

use std::io::{self, Read};

use super::read_full;
pub use super::Damage;

/// Block size of the log.
pub const BLOCK: usize = 32 * 1024;
/// Chunk header: crc32, length, type.
const CHUNK_HEADER: usize = 7;
/// The file header: ident `:W&B`, magic 0xBEE1 (little-endian), version 0.
pub const FILE_HEADER: [u8; 7] = [b':', b'W', b'&', b'B', 0xe1, 0xbe, 0x00];
/// Largest record assembled from chunks: the largest value tidelog logs plus room for its
/// record around it. A longer record is damage, never an allocation.
pub const MAX_RECORD_BYTES: usize = crate::core::run_log::MAX_VALUE_BYTES + (1 << 20);

const FULL: u8 = 1;
const FIRST: u8 = 2;
const MIDDLE: u8 = 3;
const LAST: u8 = 4;

/// Why a file is not a W&B log at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The first 7 bytes are not `:W&B`, 0xBEE1, 0.
    #[error(
        "not a W&B transaction log: the file header is {0:02x?}, expected :W&B, magic 0xBEE1, version 0"
    )]
    Header(Vec<u8>),
}

/// Reads the records of a `.wandb` log from any byte source, one block in memory at a time.
pub struct LogReader<R> {
    src: R,
    block: Box<[u8]>,
    block_len: usize,
    block_start: u64,
    pos: usize,
    record: Vec<u8>,
    record_start: Option<u64>,
    record_offset: u64,
    eof: bool,
    damage: Vec<Damage>,
    end_of_good: u64,
}

impl<R: Read> LogReader<R> {
    /// Checks the file header and positions the reader at the first chunk.
    pub fn new(mut src: R) -> Result<Self, OpenError> {
        let mut block = vec![0u8; BLOCK].into_boxed_slice();
        let block_len = read_full(&mut src, &mut block)?;
        if block_len < FILE_HEADER.len() || block[..FILE_HEADER.len()] != FILE_HEADER {
            return Err(OpenError::Header(
                block[..block_len.min(FILE_HEADER.len())].to_vec(),
            ));
        }
        Ok(LogReader {
            src,
            block,
            block_len,
            block_start: 0,
            pos: FILE_HEADER.len(),
            record: Vec::new(),
            record_start: None,
            record_offset: 0,
            eof: block_len < BLOCK,
            damage: Vec::new(),
            end_of_good: FILE_HEADER.len() as u64,
        })
    }

    /// The stretches skipped so far, in file order (adjacent ones merged).
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// File offset just past the last record returned: damage beyond it, with nothing
    /// readable after, is a torn tail.
    pub fn end_of_good(&self) -> u64 {
        self.end_of_good
    }

    /// File offset where the last returned record began (for error messages).
    pub fn record_offset(&self) -> u64 {
        self.record_offset
    }

    fn at(&self) -> u64 {
        self.block_start + self.pos as u64
    }

    fn note(&mut self, offset: u64, end: u64, why: &'static str) {
        if end <= offset {
            return;
        }
        if let Some(last) = self.damage.last_mut() {
            if last.offset + last.bytes == offset {
                last.bytes += end - offset;
                return;
            }
        }
        self.damage.push(Damage {
            offset,
            bytes: end - offset,
            why,
        });
    }

    /// Drops a record being assembled, noting its chunks read so far as damage.
    fn drop_partial(&mut self, why: &'static str) {
        if let Some(start) = self.record_start.take() {
            let at = self.at();
            self.note(start, at, why);
        }
        self.record.clear();
    }

    /// Skips the rest of the current block after a chunk that cannot be trusted.
    fn spoil_block(&mut self, why: &'static str) {
        self.drop_partial(why);
        let (at, end) = (self.at(), self.block_start + self.block_len as u64);
        self.note(at, end, why);
        self.pos = self.block_len;
    }

    fn next_block(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        self.block_start += self.block_len as u64;
        self.block_len = read_full(&mut self.src, &mut self.block)?;
        self.pos = 0;
        self.eof = self.block_len < BLOCK;
        Ok(self.block_len > 0)
    }

    /// The next intact record's bytes, `None` at the end of the file.
    pub fn next_record(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            if self.block_len - self.pos < CHUNK_HEADER {
                if !self.eof {
                    // Padding at the end of a full block.
                    self.pos = self.block_len;
                    if self.next_block()? {
                        continue;
                    }
                }
                let (at, end) = (self.at(), self.block_start + self.block_len as u64);
                self.drop_partial("the file ends inside a record");
                if self.block[self.pos..self.block_len].iter().any(|&b| b != 0) {
                    self.note(at, end, "the file ends inside a chunk header");
                }
                self.pos = self.block_len;
                return Ok(None);
            }
            let h = &self.block[self.pos..self.pos + CHUNK_HEADER];
            let crc = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let len = usize::from(u16::from_le_bytes([h[4], h[5]]));
            let kind = h[6];
            let body = self.pos + CHUNK_HEADER;
            if crc == 0 && len == 0 && kind == 0 {
                if self.block[self.pos..self.block_len].iter().all(|&b| b == 0) {
                    // Zeros a writer preallocated or padded: nothing was ever written here.
                    self.pos = self.block_len;
                    if !self.next_block()? {
                        self.drop_partial("the file ends inside a record");
                        return Ok(None);
                    }
                    continue;
                }
                self.spoil_block("a zero chunk header followed by data");
                continue;
            }
            if body + len > self.block_len {
                let why = if self.eof {
                    "the file ends inside a chunk"
                } else {
                    "a chunk length past the end of its block"
                };
                self.spoil_block(why);
                continue;
            }
            let payload = body..body + len;
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&[kind]);
            hasher.update(&self.block[payload.clone()]);
            if hasher.finalize() != crc {
                self.spoil_block("a chunk checksum mismatch");
                continue;
            }
            let chunk_start = self.at();
            match kind {
                FULL | FIRST => {
                    self.drop_partial("a record cut short by the next one");
                    self.record.clear();
                    self.record.extend_from_slice(&self.block[payload]);
                    self.record_start = Some(chunk_start);
                }
                MIDDLE | LAST if self.record_start.is_some() => {
                    if self.record.len() + len > MAX_RECORD_BYTES {
                        self.pos = body + len;
                        self.drop_partial("a record over the size limit");
                        continue;
                    }
                    self.record.extend_from_slice(&self.block[payload]);
                }
                MIDDLE | LAST => {
                    self.pos = body + len;
                    let at = self.at();
                    self.note(chunk_start, at, "a continuation chunk without its first chunk");
                    continue;
                }
                _ => {
                    self.spoil_block("an unknown chunk type");
                    continue;
                }
            }
            self.pos = body + len;
            if kind == FULL || kind == LAST {
                self.record_offset = self.record_start.take().unwrap_or(chunk_start);
                self.end_of_good = self.at();
                return Ok(Some(&self.record));
            }
        }
    }
}

/// Writes records in this format (FULL/FIRST/MIDDLE/LAST across 32 KiB blocks): the unit
/// tests' way to build logs with chunks split at block boundaries.
#[cfg(test)]
pub fn encode(records: &[&[u8]]) -> Vec<u8> {
    let mut out = FILE_HEADER.to_vec();
    for rec in records {
        let mut rest: &[u8] = rec;
        let mut first = true;
        loop {
            let left = BLOCK - out.len() % BLOCK;
            if left < CHUNK_HEADER {
                out.resize(out.len() + left, 0);
                continue;
            }
            let n = rest.len().min(left - CHUNK_HEADER);
            let last = n == rest.len();
            let kind = match (first, last) {
                (true, true) => FULL,
                (true, false) => FIRST,
                (false, false) => MIDDLE,
                (false, true) => LAST,
            };
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&[kind]);
            hasher.update(&rest[..n]);
            out.extend_from_slice(&hasher.finalize().to_le_bytes());
            out.extend_from_slice(&(n as u16).to_le_bytes());
            out.push(kind);
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            first = false;
            if last {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> (Vec<Vec<u8>>, Vec<Damage>) {
        let mut r = LogReader::new(bytes).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec.to_vec());
        }
        (out, r.damage().to_vec())
    }

    fn records() -> Vec<Vec<u8>> {
        (0..40u8)
            .map(|i| vec![i; 1 + 3000 * usize::from(i % 7)])
            .collect()
    }

    #[test]
    fn reads_records_across_blocks() {
        let recs = records();
        let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
        let bytes = encode(&refs);
        assert!(bytes.len() > 3 * BLOCK);
        let (got, damage) = read_all(&bytes);
        assert_eq!(got, recs);
        assert!(damage.is_empty());
    }

    #[test]
    fn refuses_a_foreign_header() {
        assert!(matches!(
            LogReader::new(&b":W&B\xe1\xbe\x01rest"[..]),
            Err(OpenError::Header(_))
        ));
        assert!(matches!(LogReader::new(&b""[..]), Err(OpenError::Header(_))));
    }

    #[test]
    fn a_bad_block_is_skipped_and_reading_resumes_at_the_next() {
        let recs = records();
        let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
        let mut bytes = encode(&refs);
        bytes[BLOCK + 100] ^= 0xff;
        let (got, damage) = read_all(&bytes);
        assert_eq!(damage.len(), 1, "{damage:?}");
        let d = &damage[0];
        assert!(
            d.offset < BLOCK as u64 + 100 && d.offset + d.bytes >= 2 * BLOCK as u64,
            "{d:?}"
        );
        // Everything wholly outside the damage survives, in order.
        assert!(
            got.len() < recs.len() && got.len() >= recs.len() - 4,
            "{}",
            got.len()
        );
        let mut it = recs.iter();
        for g in &got {
            assert!(it.any(|r| r == g));
        }
        assert_eq!(got.last(), recs.last());
    }

    #[test]
    fn a_torn_tail_keeps_every_complete_record() {
        let recs = records();
        let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
        let bytes = encode(&refs);
        let mut ends = Vec::new();
        let mut r = LogReader::new(&bytes[..]).unwrap();
        while r.next_record().unwrap().is_some() {
            ends.push(r.end_of_good());
        }
        for cut in bytes.len() - 9000..bytes.len() {
            let (got, damage) = read_all(&bytes[..cut]);
            let whole = ends.iter().filter(|&&e| e <= cut as u64).count();
            assert_eq!(got[..], recs[..whole], "cut {cut}");
            let after = ends[..whole].last().map_or(7, |&e| e as usize);
            if bytes[after..cut].iter().any(|&b| b != 0) {
                assert_eq!(damage.len(), 1, "cut {cut}: {damage:?}");
                assert_eq!(damage[0].offset + damage[0].bytes, cut as u64, "cut {cut}");
                let start = damage[0].offset as usize;
                assert!(
                    start >= after && bytes[after..start].iter().all(|&b| b == 0),
                    "cut {cut}"
                );
            } else {
                assert!(damage.is_empty(), "cut {cut}: {damage:?}");
            }
        }
    }

    #[test]
    fn zero_padding_is_not_damage() {
        let mut bytes = encode(&[b"a", b"b"]);
        bytes.resize(BLOCK + 50, 0);
        let (got, damage) = read_all(&bytes);
        assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(damage.is_empty(), "{damage:?}");
    }
}
