//! The bundle's gzip stream: one deflate stream at a fast level, with stored blocks for spans
//! a sample shows to be noise. The low mantissa bytes of noisy metrics compress by nothing,
//! yet matching them was most of a bundle's build time.
//!
//! miniz_oxide's compressor is driven directly: before a stored span it is flushed with
//! `Full` (byte-aligned, and its window forgotten, so nothing later refers back across the
//! span), then the span goes out as RFC 1951 stored blocks. miniz_oxide's own level 0 cannot
//! be switched to mid-stream (0.9.1 overflows), and flate2 cannot switch at all. The gzip
//! framing is RFC 1952's ten-byte header and CRC-32 + length trailer.

use std::ops::Range;

use miniz_oxide::deflate::core::{create_comp_flags_from_zip_params, CompressorOxide};
use miniz_oxide::deflate::stream::deflate;
use miniz_oxide::{MZError, MZFlush, MZStatus};

/// gzip level: column planes compress well already at a fast level.
const LEVEL: u8 = 1;
/// The most a stored block holds (its length is 16 bits).
const STORED_MAX: usize = 0xffff;
/// Raw deflate (no zlib header): the gzip framing is written here.
const RAW_DEFLATE: i32 = -15;
/// ID1 ID2, deflate, no flags, no mtime, no extra flags, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// Bytes a span is sampled at to judge it.
const SAMPLE: usize = 4096;
/// Spans shorter than this are compressed whatever they hold: judging costs more than it saves.
const MIN_SPAN: usize = 4 * SAMPLE;
/// Σ count² over a sample's byte values up to which it is noise: that is its collision
/// entropy −log2(Σ p²) at 7.8 bits a byte or more (uniform bytes give ~7.91 over a sample;
/// deflate gains at most a few per cent above this). In integers, so no `log2` is linked into
/// the wasm module.
const NOISE_SQUARES: u64 = (SAMPLE * SAMPLE) as u64 * 1150 / 256_000;

/// Builds a `.gz` in memory.
pub struct GzSink {
    comp: Box<CompressorOxide>,
    out: Vec<u8>,
    /// What one deflate call writes into, then copied to `out`.
    scratch: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl GzSink {
    /// An empty stream.
    pub fn new() -> GzSink {
        GzSink::with_scratch(64 << 10)
    }

    /// An empty stream whose deflate calls write at most `scratch` bytes each.
    fn with_scratch(scratch: usize) -> GzSink {
        GzSink {
            comp: Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(
                LEVEL.into(),
                RAW_DEFLATE,
                0,
            ))),
            out: HEADER.to_vec(),
            scratch: vec![0; scratch.max(1)],
            crc: crc32fast::Hasher::new(),
            len: 0,
        }
    }

    /// Appends `data`, compressing it.
    pub fn write(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.deflate(data, MZFlush::None);
        }
    }

    /// Appends `data`, storing rather than compressing those of `spans` (ranges of `data`,
    /// ascending) that sample as noise.
    pub fn write_spans(&mut self, data: &[u8], spans: &[Range<usize>]) {
        let mut at = 0;
        for span in spans {
            if span.start < at || span.end > data.len() || !is_noise(&data[span.start..span.end]) {
                continue;
            }
            self.write(&data[at..span.start]);
            self.stored(&data[span.start..span.end]);
            at = span.end;
        }
        self.write(&data[at..]);
    }

    /// Ends the stream: the last block, then CRC-32 and length (mod 2^32), little-endian.
    pub fn finish(mut self) -> Vec<u8> {
        self.deflate(&[], MZFlush::Finish);
        self.out.extend_from_slice(&self.crc.finalize().to_le_bytes());
        self.out.extend_from_slice(&(self.len as u32).to_le_bytes());
        self.out
    }

    /// Appends `data` as stored blocks: not final, type 00, then LEN and its complement.
    fn stored(&mut self, data: &[u8]) {
        self.deflate(&[], MZFlush::Full);
        self.crc.update(data);
        self.len += data.len() as u64;
        self.out.reserve(data.len() + data.len() / STORED_MAX * 5 + 5);
        for block in data.chunks(STORED_MAX) {
            let len = block.len() as u16;
            self.out.push(0);
            self.out.extend_from_slice(&len.to_le_bytes());
            self.out.extend_from_slice(&(!len).to_le_bytes());
            self.out.extend_from_slice(block);
        }
    }

    fn deflate(&mut self, mut data: &[u8], flush: MZFlush) {
        self.crc.update(data);
        self.len += data.len() as u64;
        // A `Full` flush is asked once: calling it again would add an empty block each time.
        // Later calls only drain what it left, and `Finish` must be repeated until the end.
        let mut now = flush;
        loop {
            let res = deflate(&mut self.comp, data, &mut self.scratch, now);
            self.out.extend_from_slice(&self.scratch[..res.bytes_written]);
            data = &data[res.bytes_consumed..];
            let done = match res.status {
                Ok(MZStatus::StreamEnd) => true,
                // deflate returns once the input is taken and the output written, or full.
                Ok(_) => now != MZFlush::Finish && data.is_empty() && res.bytes_written < self.scratch.len(),
                // Called again after the output filled exactly: nothing was left to write.
                Err(MZError::Buf) if data.is_empty() && now == MZFlush::None => true,
                Err(e) => unreachable!("deflate into a scratch buffer: {e:?}"),
            };
            if done {
                return;
            }
            if now == MZFlush::Full {
                now = MZFlush::None;
            }
        }
    }
}

impl Default for GzSink {
    fn default() -> Self {
        GzSink::new()
    }
}

/// A span whose sampled bytes are spread so evenly that deflate cannot shrink it.
fn is_noise(span: &[u8]) -> bool {
    if span.len() < MIN_SPAN {
        return false;
    }
    let stride = span.len() / SAMPLE;
    let mut counts = [0u32; 256];
    for i in 0..SAMPLE {
        counts[span[i * stride] as usize] += 1;
    }
    counts.iter().map(|&c| u64::from(c) * u64::from(c)).sum::<u64>() <= NOISE_SQUARES
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn noise_is_stored_and_the_rest_compressed_in_one_readable_stream() {
        let mut next = crate::core::bundle::tests::xorshift(0x2545_F491_4F6C_DD1D);
        let noise: Vec<u8> = (0..200_000).map(|_| next() as u8).collect();
        let smooth: Vec<u8> = (0..200_000u32).map(|i| (i / 1000) as u8).collect();
        let data = [&smooth[..], &noise[..], &smooth[..]].concat();
        let spans = [0..200_000, 200_000..400_000, 400_000..600_000];
        let mut gz = GzSink::new();
        gz.write(b"head");
        gz.write_spans(&data, &spans);
        let gz = gz.finish();
        assert_eq!(gunzip(&gz), [&b"head"[..], &data].concat());
        assert!(is_noise(&noise) && !is_noise(&smooth));
        // Stored blocks cost 5 bytes per 64 KiB; the smooth spans shrink to almost nothing.
        assert!(gz.len() < noise.len() + 4_000, "{}", gz.len());
        assert!(gz.len() > noise.len(), "{}", gz.len());
    }

    #[test]
    fn output_that_fills_the_scratch_exactly_is_all_written() {
        // Even over 251 values: noise to the sampler, so the stored path runs too.
        let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
        assert!(is_noise(&data[..20_000]));
        for scratch in [1, 2, 3, 5, 8, 13, 64, 100] {
            let mut gz = GzSink::with_scratch(scratch);
            for piece in data.chunks(977) {
                gz.write(piece);
            }
            gz.write_spans(&data, &[0..20_000, 20_000..40_000]);
            assert_eq!(
                gunzip(&gz.finish()),
                [&data[..], &data].concat(),
                "scratch {scratch}"
            );
        }
    }

    #[test]
    fn an_empty_stream_is_a_valid_gzip_file() {
        assert_eq!(gunzip(&GzSink::new().finish()), b"");
    }
}
