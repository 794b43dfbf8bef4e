//! Media encoders shared by every home, so an image or a sound logged in a browser and
//! natively become the same bytes: PNG from RGBA, WAV from samples, histogram bins.

use serde::Serialize;
use serde_json::{json, Value as Json};

use super::record::FileRef;

/// Why a media object could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    /// The pixel buffer does not match the stated size.
    #[error("image: {len} bytes is not {width}×{height} RGBA ({} bytes expected)", width * height * 4)]
    BadRgba {
        /// Bytes given.
        len: usize,
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
    },
    /// Bytes that are not a PNG file.
    #[error("image: not a PNG file ({0})")]
    NotPng(String),
    /// An unusable sample rate.
    #[error("audio: sample rate {0} is out of range")]
    BadRate(u32),
    /// A table row whose length differs from the columns.
    #[error("table: row {row} has {len} values for {columns} columns")]
    BadTable {
        /// The row's index.
        row: usize,
        /// Its length.
        len: usize,
        /// The number of columns.
        columns: usize,
    },
}

/// A rich value for a history row, like `wandb.Image` / `wandb.Audio` / `wandb.Histogram` /
/// `wandb.Table` / `wandb.plot`: images and audio are stored as files under `media/`.
#[derive(Debug, Clone, PartialEq)]
pub enum Media {
    /// A PNG image.
    Image {
        /// PNG bytes.
        png: Vec<u8>,
        /// Pixels.
        width: u32,
        /// Pixels.
        height: u32,
        /// Shown under it.
        caption: Option<String>,
    },
    /// A mono 16-bit WAV clip.
    Audio {
        /// WAV bytes.
        wav: Vec<u8>,
        /// Samples per second.
        sample_rate: u32,
        /// Seconds.
        duration: f64,
        /// Shown beside it.
        caption: Option<String>,
    },
    /// Binned values.
    Histogram(Histogram),
    /// Rows of values under named columns.
    Table {
        /// Column names.
        columns: Vec<String>,
        /// One array per row, one value per column.
        data: Vec<Vec<Json>>,
    },
    /// A chart given as data plus a Vega-Lite spec (like `wandb.plot.line`).
    Plot {
        /// The Vega-Lite spec.
        spec: Json,
        /// The data it draws, when kept apart from the spec.
        data: Json,
    },
}

impl Media {
    /// An image from 8-bit RGBA pixels.
    pub fn image_rgba(rgba: &[u8], width: u32, height: u32) -> Result<Media, MediaError> {
        Ok(Media::Image {
            png: encode_png(rgba, width, height)?,
            width,
            height,
            caption: None,
        })
    }

    /// An image from PNG bytes.
    pub fn image_png(png: Vec<u8>) -> Result<Media, MediaError> {
        let (width, height) = png_size(&png)?;
        Ok(Media::Image {
            png,
            width,
            height,
            caption: None,
        })
    }

    /// A sound from mono samples in [-1, 1].
    pub fn audio(samples: &[f32], sample_rate: u32) -> Result<Media, MediaError> {
        Ok(Media::Audio {
            wav: encode_wav(samples, sample_rate)?,
            sample_rate,
            duration: samples.len() as f64 / f64::from(sample_rate),
            caption: None,
        })
    }

    /// A table; every row must have one value per column.
    pub fn table(columns: Vec<String>, data: Vec<Vec<Json>>) -> Result<Media, MediaError> {
        if let Some((row, r)) = data.iter().enumerate().find(|(_, r)| r.len() != columns.len()) {
            return Err(MediaError::BadTable {
                row,
                len: r.len(),
                columns: columns.len(),
            });
        }
        Ok(Media::Table { columns, data })
    }

    /// A line chart of field `x` against field `y` over `rows` (objects), like `wandb.plot.line`.
    pub fn line(rows: Vec<Json>, x: &str, y: &str, title: Option<&str>) -> Media {
        Media::chart("line", rows, x, y, title)
    }

    /// A scatter plot of field `x` against field `y`, like `wandb.plot.scatter`.
    pub fn scatter(rows: Vec<Json>, x: &str, y: &str, title: Option<&str>) -> Media {
        Media::chart("point", rows, x, y, title)
    }

    /// A bar chart of field `y` per category in field `x`, like `wandb.plot.bar`.
    pub fn bar(rows: Vec<Json>, x: &str, y: &str, title: Option<&str>) -> Media {
        Media::chart("bar", rows, x, y, title)
    }

    /// The Vega-Lite spec the JS `Plot.line`/`scatter`/`bar` build too, so both draw alike.
    fn chart(mark: &str, rows: Vec<Json>, x: &str, y: &str, title: Option<&str>) -> Media {
        let x_type = if mark == "bar" { "nominal" } else { "quantitative" };
        let mut spec = json!({
            "mark": mark,
            "encoding": {
                "x": {"field": x, "type": x_type},
                "y": {"field": y, "type": "quantitative"},
            },
        });
        if let Some(title) = title {
            spec["title"] = json!(title);
        }
        Media::Plot {
            spec,
            data: json!({ "values": rows }),
        }
    }

    /// Adds a caption to an image or a sound (others have none).
    pub fn with_caption(mut self, text: impl Into<String>) -> Media {
        if let Media::Image { caption, .. } | Media::Audio { caption, .. } = &mut self {
            *caption = Some(text.into());
        }
        self
    }

    /// The file this value stores: its folder under `media/`, extension and bytes.
    pub fn file(&self) -> Option<(&'static str, &'static str, &[u8])> {
        match self {
            Media::Image { png, .. } => Some(("images", "png", png)),
            Media::Audio { wav, .. } => Some(("audio", "wav", wav)),
            _ => None,
        }
    }

    /// Where the file of `key` logged at `step` is saved.
    pub fn file_path(&self, key: &str, step: u64) -> Option<String> {
        let (dir, ext, _) = self.file()?;
        let safe: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Some(format!("media/{dir}/{safe}_{step}.{ext}"))
    }

    /// The JSON logged in the history row (the same shapes as the JS package's media).
    pub fn value(&self, file: Option<&FileRef>) -> Json {
        let file_fields = |kind: &str| json!({"_type": kind, "path": file.map(|f| &f.path), "sha256": file.map(|f| &f.sha256), "size": file.map(|f| f.size)});
        match self {
            Media::Image {
                width,
                height,
                caption,
                ..
            } => {
                let mut v = file_fields("image-file");
                v["width"] = json!(width);
                v["height"] = json!(height);
                v["caption"] = json!(caption);
                v
            }
            Media::Audio {
                sample_rate,
                duration,
                caption,
                ..
            } => {
                let mut v = file_fields("audio-file");
                v["sample_rate"] = json!(sample_rate);
                v["duration"] = json!(duration);
                v["caption"] = json!(caption);
                v
            }
            Media::Histogram(h) => json!({"_type": "histogram", "bins": h.bins, "counts": h.counts}),
            Media::Table { columns, data } => json!({"_type": "table", "columns": columns, "data": data}),
            Media::Plot { spec, data } => json!({"_type": "plot", "spec": spec, "data": data}),
        }
    }
}

/// Encodes 8-bit RGBA pixels as a PNG.
pub fn encode_png(rgba: &[u8], width: u32, height: u32) -> Result<Vec<u8>, MediaError> {
    let (w, h) = (width as usize, height as usize);
    if width == 0 || height == 0 || w.checked_mul(h).and_then(|p| p.checked_mul(4)) != Some(rgba.len()) {
        return Err(MediaError::BadRgba {
            len: rgba.len(),
            width: w,
            height: h,
        });
    }
    Ok(super::png::encode_rgba8(rgba, width, height))
}

/// Width and height of PNG bytes, read from the signature and the IHDR chunk (the pixels are
/// not decoded, which keeps a PNG decoder out of the wasm module).
pub fn png_size(png: &[u8]) -> Result<(u32, u32), MediaError> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || &png[..8] != SIGNATURE || &png[12..16] != b"IHDR" {
        return Err(MediaError::NotPng("no PNG signature and IHDR chunk".into()));
    }
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    let (width, height) = (be(16), be(20));
    if width == 0 || height == 0 {
        return Err(MediaError::NotPng("zero width or height".into()));
    }
    Ok((width, height))
}

/// Encodes mono samples in [-1, 1] as 16-bit PCM WAV.
pub fn encode_wav(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>, MediaError> {
    if !(1..=768_000).contains(&sample_rate) {
        return Err(MediaError::BadRate(sample_rate));
    }
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        let v = if s.is_nan() { 0.0 } else { s.clamp(-1.0, 1.0) };
        out.extend_from_slice(&((v * 32767.0).round() as i16).to_le_bytes());
    }
    Ok(out)
}

/// A histogram as logged: `bins` edges (one more than `counts`).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Bin edges, ascending.
    pub bins: Vec<f64>,
    /// Values per bin.
    pub counts: Vec<u64>,
}

/// Bins the finite values into `bins` equal-width bins (non-finite values are skipped).
pub fn histogram(values: &[f64], bins: usize) -> Histogram {
    let bins = bins.clamp(1, 512);
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    if lo > hi {
        return Histogram {
            bins: vec![0.0, 0.0],
            counts: vec![0],
        };
    }
    let width = if hi > lo { (hi - lo) / bins as f64 } else { 1.0 };
    let mut counts = vec![0u64; bins];
    for v in values.iter().filter(|v| v.is_finite()) {
        let i = (((v - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    Histogram {
        bins: (0..=bins).map(|i| lo + width * i as f64).collect(),
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_vega_lite_specs_with_their_rows() {
        let rows = vec![
            json!({"epoch": 0, "loss": 1.5}),
            json!({"epoch": 1, "loss": 0.75}),
        ];
        let line = Media::line(rows.clone(), "epoch", "loss", Some("loss"));
        assert_eq!(
            line.value(None),
            json!({"_type": "plot", "spec": {"mark": "line", "title": "loss", "encoding": {
                "x": {"field": "epoch", "type": "quantitative"},
                "y": {"field": "loss", "type": "quantitative"}}},
                "data": {"values": rows}})
        );
        let bar = Media::bar(vec![json!({"class": "cat", "n": 3})], "class", "n", None);
        assert_eq!(bar.value(None)["spec"]["encoding"]["x"]["type"], "nominal");
        assert_eq!(
            Media::scatter(vec![], "a", "b", None).value(None)["spec"]["mark"],
            "point"
        );
    }

    #[test]
    fn png_roundtrips_its_size_and_rejects_bad_buffers() {
        let png = encode_png(&[255u8; 3 * 2 * 4], 3, 2).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert_eq!(png_size(&png), Ok((3, 2)));
        assert!(matches!(
            encode_png(&[0u8; 5], 3, 2),
            Err(MediaError::BadRgba { .. })
        ));
        assert!(png_size(b"GIF89a").is_err());
    }

    #[test]
    fn wav_header_and_samples() {
        let wav = encode_wav(&[0.0, 1.0, -1.0, 2.0], 8000).unwrap();
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(wav.len(), 44 + 8);
        assert_eq!(i16::from_le_bytes([wav[46], wav[47]]), 32767);
        assert_eq!(i16::from_le_bytes([wav[48], wav[49]]), -32767);
        assert_eq!(i16::from_le_bytes([wav[50], wav[51]]), 32767, "clamped");
        assert!(encode_wav(&[], 0).is_err());
    }

    #[test]
    fn histogram_counts_every_finite_value() {
        let h = histogram(&[0.0, 1.0, 2.0, 3.0, f64::NAN, 4.0], 4);
        assert_eq!(h.counts, vec![1, 1, 1, 2]);
        assert_eq!(h.bins.first(), Some(&0.0));
        assert_eq!(h.bins.last(), Some(&4.0));
        assert_eq!(histogram(&[], 3).counts, vec![0]);
    }
}
