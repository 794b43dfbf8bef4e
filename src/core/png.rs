//! A PNG writer for 8-bit RGBA: signature, IHDR, one zlib IDAT (flate2, already used for
//! bundles), IEND. The `png` crate's encoder also carries its text-chunk and decoder code
//! into the wasm module (about 50 KB, 20 KB gzipped); this keeps only what tidelog writes.

use std::io::Write;

use flate2::write::ZlibEncoder;
use flate2::{Compression, Crc};

const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
/// Colour type 6: RGBA; bit depth 8.
const RGBA8: [u8; 2] = [8, 6];

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    // Chunk data is at most the zlib stream of a buffer whose size the caller bounded.
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// PNG bytes of `rgba` (`width * height * 4` bytes, checked by the caller); each row is
/// stored with filter type 0 and the whole image deflated at the default level.
pub fn encode_rgba8(rgba: &[u8], width: u32, height: u32) -> Vec<u8> {
    let row = width as usize * 4;
    let mut z = ZlibEncoder::new(Vec::with_capacity(rgba.len() / 2 + 64), Compression::default());
    for line in rgba.chunks_exact(row) {
        // Writing into a Vec cannot fail.
        let _ = z.write_all(&[0]).and_then(|()| z.write_all(line));
    }
    let idat = z.finish().unwrap_or_default();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&RGBA8);
    ihdr.extend_from_slice(&[0, 0, 0]);
    let mut out = Vec::with_capacity(idat.len() + 57);
    out.extend_from_slice(SIGNATURE);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::ZlibDecoder;

    use super::*;

    fn chunks(png: &[u8]) -> Vec<(&[u8], &[u8], u32)> {
        let mut at = 8;
        let mut out = Vec::new();
        while at < png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
            let kind = &png[at + 4..at + 8];
            let data = &png[at + 8..at + 8 + len];
            let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
            out.push((kind, data, crc));
            at += 12 + len;
        }
        out
    }

    #[test]
    fn writes_checksummed_chunks_whose_pixels_inflate_back() {
        let rgba: Vec<u8> = (0..3 * 2 * 4).map(|i| i as u8 * 7).collect();
        let png = encode_rgba8(&rgba, 3, 2);
        assert_eq!(&png[..8], SIGNATURE);
        let chunks = chunks(&png);
        let kinds: Vec<&[u8]> = chunks.iter().map(|c| c.0).collect();
        assert_eq!(kinds, [&b"IHDR"[..], b"IDAT", b"IEND"]);
        for (kind, data, crc) in &chunks {
            let mut c = Crc::new();
            c.update(kind);
            c.update(data);
            assert_eq!(c.sum(), *crc, "CRC of {}", String::from_utf8_lossy(kind));
        }
        assert_eq!(chunks[0].1, [0, 0, 0, 3, 0, 0, 0, 2, 8, 6, 0, 0, 0]);
        let mut raw = Vec::new();
        ZlibDecoder::new(chunks[1].1).read_to_end(&mut raw).unwrap();
        let mut want = Vec::new();
        for line in rgba.chunks(12) {
            want.push(0);
            want.extend_from_slice(line);
        }
        assert_eq!(raw, want);
    }
}
