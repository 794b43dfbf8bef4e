//! A walk over the fields of one protobuf message, one field at a time and without copying:
//! repeated fields of foreign files (a history record's items, a summary's values) are read
//! element by element, so a hostile count never allocates. Single small messages are decoded
//! with `prost` derives next to their format.

use crate::core::varint::{get_bytes, get_u64};

/// One field's value as it sits on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wire<'a> {
    /// Varint: int32/int64/uint/bool/enum.
    Varint(u64),
    /// Eight little-endian bytes: double, fixed64.
    Fixed64([u8; 8]),
    /// Length-delimited: string, bytes, a sub-message, a packed repeated field.
    Bytes(&'a [u8]),
    /// Four little-endian bytes: float, fixed32.
    Fixed32([u8; 4]),
}

impl<'a> Wire<'a> {
    /// The payload of a length-delimited field.
    pub fn bytes(self) -> Option<&'a [u8]> {
        match self {
            Wire::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A string field (invalid UTF-8 is an error the caller names).
    pub fn str(self) -> Option<&'a str> {
        self.bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// A varint field.
    pub fn varint(self) -> Option<u64> {
        match self {
            Wire::Varint(v) => Some(v),
            _ => None,
        }
    }

    /// A `double` field.
    pub fn f64(self) -> Option<f64> {
        match self {
            Wire::Fixed64(b) => Some(f64::from_le_bytes(b)),
            _ => None,
        }
    }

    /// A `float` field.
    pub fn f32(self) -> Option<f32> {
        match self {
            Wire::Fixed32(b) => Some(f32::from_le_bytes(b)),
            _ => None,
        }
    }
}

/// Iterates `(field number, value)` of a message; yields one `Err` at a malformed field
/// (with its byte offset inside the message) and then stops.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

/// Fields of the message in `buf`.
pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields {
        buf,
        pos: 0,
        failed: false,
    }
}

/// Why a message could not be walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf at byte {offset} of a {len}-byte message: {what}")]
pub struct WireError {
    /// Offset of the bad field inside the message.
    pub offset: usize,
    /// The message's length.
    pub len: usize,
    /// What was wrong.
    pub what: &'static str,
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Result<(u32, Wire<'a>), &'static str> {
        let key = get_u64(self.buf, &mut self.pos).ok_or("truncated field key")?;
        let number = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        if number == 0 {
            return Err("field number 0");
        }
        let wire = match key & 7 {
            0 => Wire::Varint(get_u64(self.buf, &mut self.pos).ok_or("truncated varint")?),
            1 => Wire::Fixed64(self.fixed::<8>()?),
            2 => {
                let len = get_u64(self.buf, &mut self.pos).ok_or("truncated length")?;
                let len = usize::try_from(len).map_err(|_| "length out of range")?;
                Wire::Bytes(
                    get_bytes(self.buf, &mut self.pos, len).ok_or("length past the end of the message")?,
                )
            }
            5 => Wire::Fixed32(self.fixed::<4>()?),
            _ => return Err("unsupported wire type (groups are not used by these formats)"),
        };
        Ok((number, wire))
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let b = get_bytes(self.buf, &mut self.pos, N).ok_or("truncated fixed-width field")?;
        Ok(b.try_into().expect("N bytes"))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Wire<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let offset = self.pos;
        Some(self.field().map_err(|what| {
            self.failed = true;
            WireError {
                offset,
                len: self.buf.len(),
                what,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Sample {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(double, tag = "2")]
        x: f64,
        #[prost(int64, tag = "3")]
        n: i64,
        #[prost(float, repeated, tag = "4")]
        fs: Vec<f32>,
        #[prost(float, tag = "5")]
        y: f32,
    }

    #[test]
    fn walks_what_prost_writes() {
        let m = Sample {
            name: "a".into(),
            x: 1.5,
            n: -3,
            fs: vec![1.0, 2.0],
            y: 0.25,
        };
        let bytes = m.encode_to_vec();
        let got: Vec<_> = fields(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(got[0], (1, Wire::Bytes(b"a")));
        assert_eq!(got[1].1.f64(), Some(1.5));
        assert_eq!(got[2].1.varint().map(|v| v as i64), Some(-3));
        assert_eq!(got[3].1.bytes().map(<[u8]>::len), Some(8));
        assert_eq!(got[4].1.f32(), Some(0.25));
    }

    #[test]
    fn malformed_input_is_one_error_with_its_offset() {
        // Field 1, length-delimited, claims 100 bytes of a 3-byte message.
        let bad = [0x0a, 100, 0];
        let got: Vec<_> = fields(&bad).collect();
        assert_eq!(got.len(), 1);
        let e = got[0].clone().unwrap_err();
        assert_eq!((e.offset, e.what), (0, "length past the end of the message"));
        // A field number of 0 and a group wire type are refused.
        assert!(fields(&[0x00, 1]).next().unwrap().is_err());
        assert!(fields(&[0x0b]).next().unwrap().is_err());
    }
}
