//! TFRecord framing of TensorBoard event files: `length: u64 LE | masked CRC-32C of the
//! length | data | masked CRC-32C of the data`, mask = ((crc >> 15) | (crc << 17)) +
//! 0xa282ead8. The reader streams record by record; a record has no resync point, so
//! reading stops at the first bad one and the rest of the file is reported as [`Damage`].

use std::io::{self, Read};

use super::{read_full, Damage};

/// Largest record accepted: the largest value tidelog logs plus room around it. A longer
/// length is damage, never an allocation.
pub const MAX_RECORD_BYTES: u64 = crate::core::run_log::MAX_VALUE_BYTES as u64 + (1 << 20);

/// TFRecord's masked CRC-32C.
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// Frames `data` as one TFRecord (what TensorBoard writers append).
pub fn encode(out: &mut Vec<u8>, data: &[u8]) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
}

/// Reads the records of an event file from any byte source.
pub struct RecordReader<R> {
    src: R,
    offset: u64,
    record_offset: u64,
    buf: Vec<u8>,
    damage: Option<Damage>,
}

impl<R: Read> RecordReader<R> {
    /// Reads from the start of `src`.
    pub fn new(src: R) -> Self {
        RecordReader {
            src,
            offset: 0,
            record_offset: 0,
            buf: Vec::new(),
            damage: None,
        }
    }

    /// Where reading stopped early, if it did: the offset and the bytes left unread.
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }

    /// File offset of the last record returned (for error messages).
    pub fn record_offset(&self) -> u64 {
        self.record_offset
    }

    /// Notes the damage at the current record, counting what is left of the file.
    fn stop(&mut self, read: u64, why: &'static str) -> io::Result<Option<&[u8]>> {
        let rest = io::copy(&mut self.src, &mut io::sink())?;
        self.damage = Some(Damage {
            offset: self.offset,
            bytes: read + rest,
            why,
        });
        Ok(None)
    }

    /// The next intact record's data, `None` at the end or at the first bad record.
    pub fn next_record(&mut self) -> io::Result<Option<&[u8]>> {
        if self.damage.is_some() {
            return Ok(None);
        }
        let mut head = [0u8; 12];
        let n = read_full(&mut self.src, &mut head)?;
        if n == 0 {
            return Ok(None);
        }
        if n < head.len() {
            return self.stop(n as u64, "the file ends inside a record header");
        }
        let len_bytes: [u8; 8] = head[..8].try_into().expect("8 bytes");
        if masked_crc(&len_bytes).to_le_bytes() != head[8..] {
            return self.stop(12, "a record length checksum mismatch");
        }
        let len = u64::from_le_bytes(len_bytes);
        if len > MAX_RECORD_BYTES {
            return self.stop(12, "a record longer than the limit");
        }
        let len = len as usize;
        // Grown as bytes arrive, so a length that claims more than the file holds costs
        // only what is there.
        self.buf.clear();
        let got = (&mut self.src).take(len as u64 + 4).read_to_end(&mut self.buf)?;
        if got < len + 4 {
            return self.stop(12 + got as u64, "the file ends inside a record");
        }
        if masked_crc(&self.buf[..len]).to_le_bytes() != self.buf[len..] {
            return self.stop(12 + got as u64, "a record data checksum mismatch");
        }
        self.record_offset = self.offset;
        self.offset += 12 + len as u64 + 4;
        Ok(Some(&self.buf[..len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> (Vec<Vec<u8>>, Option<Damage>) {
        let mut r = RecordReader::new(bytes);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec.to_vec());
        }
        (out, r.damage().cloned())
    }

    #[test]
    fn the_mask_matches_tensorflow() {
        // TensorFlow's crc32c_test: Mask(Value("foo")) round trip; CRC-32C("123456789")
        // is 0xe3069283, masked as TensorFlow does.
        let crc: u32 = 0xe306_9283;
        assert_eq!(
            masked_crc(b"123456789"),
            crc.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn reads_and_stops_at_damage() {
        let mut bytes = Vec::new();
        for i in 0..5u8 {
            encode(&mut bytes, &vec![i; 10 + usize::from(i)]);
        }
        let (got, damage) = read_all(&bytes);
        assert_eq!(got.len(), 5);
        assert!(damage.is_none());
        for cut in 0..bytes.len() {
            let (got, damage) = read_all(&bytes[..cut]);
            let ends: Vec<usize> = (0..5)
                .scan(0, |e, i| {
                    *e += 16 + 10 + i;
                    Some(*e)
                })
                .collect();
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(got.len(), whole, "cut {cut}");
            let start = if whole == 0 { 0 } else { ends[whole - 1] };
            match damage {
                Some(d) => assert_eq!((d.offset, d.bytes), (start as u64, (cut - start) as u64)),
                None => assert_eq!(start, cut),
            }
        }
        bytes[30] ^= 1;
        let (got, damage) = read_all(&bytes);
        assert_eq!(got.len(), 1);
        assert_eq!(damage.unwrap().offset, 26);
        let mut huge = Vec::new();
        encode(&mut huge, b"x");
        let len = (MAX_RECORD_BYTES + 1).to_le_bytes();
        huge[..8].copy_from_slice(&len);
        huge[8..12].copy_from_slice(&masked_crc(&len).to_le_bytes());
        assert_eq!(read_all(&huge).1.unwrap().why, "a record longer than the limit");
    }
}
