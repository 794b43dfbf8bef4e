//! LEB128 varints and zigzag: hand-written (a dozen lines) because the hot path encodes
//! straight into a reused buffer, which the varint crates' APIs make awkward.

/// Appends `v` as an unsigned LEB128 varint.
#[inline(always)]
pub fn put_u64(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends `v` zigzag-encoded so small negative numbers stay short.
#[inline(always)]
pub fn put_i64(buf: &mut Vec<u8>, v: i64) {
    put_u64(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads an unsigned varint, advancing `pos`; `None` on truncation or overflow.
#[inline]
pub fn get_u64(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return None;
        }
        out |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(out);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Reads a zigzag varint written by [`put_i64`].
#[inline]
pub fn get_i64(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let u = get_u64(buf, pos)?;
    Some(((u >> 1) as i64) ^ -((u & 1) as i64))
}

/// Reads `n` raw bytes, advancing `pos`.
#[inline]
pub fn get_bytes<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
    let end = pos.checked_add(n)?;
    let s = buf.get(*pos..end)?;
    *pos = end;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_edges() {
        let mut b = Vec::new();
        let us = [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX];
        let is = [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX];
        for &u in &us {
            put_u64(&mut b, u);
        }
        for &i in &is {
            put_i64(&mut b, i);
        }
        let mut p = 0;
        for &u in &us {
            assert_eq!(get_u64(&b, &mut p), Some(u));
        }
        for &i in &is {
            assert_eq!(get_i64(&b, &mut p), Some(i));
        }
        assert_eq!(p, b.len());
        assert_eq!(get_u64(&b, &mut p), None);
        assert_eq!(get_u64(&[0xff; 11], &mut 0), None);
    }
}
