"""Media values for ``tidelog.log``: images, sounds, histograms, tables and charts.

Each class normalises its Python input (numpy arrays, PIL images, pandas DataFrames, paths)
and hands it to the Rust core's encoders, so the stored PNG/WAV/JSON is the same as from
Rust or JavaScript.
"""

import os

from ._tidelog import Media as _Media

__all__ = ["Image", "Audio", "Histogram", "Table", "Plot"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _numpy_rgba(array):
    """H×W (gray), H×W×1, H×W×3 or H×W×4 pixels as 8-bit RGBA bytes, width and height."""
    import numpy as np

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"tidelog.Image: expected an H×W, H×W×3 or H×W×4 array, got shape {a.shape}")
    if a.dtype != np.uint8:
        if a.dtype.kind == "f":
            a = np.clip(np.nan_to_num(a) * 255.0, 0, 255).round().astype(np.uint8)
        elif a.dtype.kind in "iub":
            a = np.clip(a, 0, 255).astype(np.uint8)
        else:
            raise ValueError(f"tidelog.Image: unsupported pixel dtype {a.dtype}")
    h, w = a.shape[:2]
    if a.ndim == 2:
        a = np.stack([a, a, a, np.full_like(a, 255)], axis=-1)
    elif a.shape[2] == 3:
        a = np.concatenate([a, np.full((h, w, 1), 255, dtype=np.uint8)], axis=-1)
    return np.ascontiguousarray(a).tobytes(), w, h


class Image:
    """An image: a numpy array (H×W, H×W×3, H×W×4; uint8, or floats in [0, 1]), a PIL image,
    PNG bytes or the path of an image file. PNG bytes and PNG files are stored as given."""

    __slots__ = ("_media",)

    def __init__(self, data, caption=None):
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._media = _Media.image_png(bytes(data), caption)
        elif isinstance(data, (str, os.PathLike)):
            with open(data, "rb") as f:
                raw = f.read()
            if raw.startswith(_PNG_SIGNATURE):
                self._media = _Media.image_png(raw, caption)
            else:
                from PIL import Image as PILImage

                with PILImage.open(data) as im:
                    self._media = _pil(im, caption)
        elif hasattr(data, "convert") and hasattr(data, "size") and hasattr(data, "tobytes"):
            self._media = _pil(data, caption)
        elif hasattr(data, "__array__") or isinstance(data, list):
            rgba, w, h = _numpy_rgba(data)
            self._media = _Media.image_rgba(rgba, w, h, caption)
        else:
            raise TypeError(
                "tidelog.Image: expected a numpy array, a PIL image, PNG bytes or a path, "
                f"got {type(data).__name__}"
            )

    def png(self):
        """The PNG bytes stored for this image."""
        return self._media.file_bytes()


def _pil(im, caption):
    rgba = im.convert("RGBA")
    w, h = rgba.size
    return _Media.image_rgba(rgba.tobytes(), w, h, caption)


class Audio:
    """A mono sound: samples in [-1, 1] (a list or numpy array) at ``sample_rate`` Hz,
    stored as 16-bit WAV."""

    __slots__ = ("_media",)

    def __init__(self, data, sample_rate=None, caption=None):
        if sample_rate is None:
            raise ValueError("tidelog.Audio: sample_rate is required")
        if hasattr(data, "tolist"):
            data = data.reshape(-1).tolist() if hasattr(data, "reshape") else data.tolist()
        self._media = _Media.audio([float(x) for x in data], int(sample_rate), caption)

    def wav(self):
        """The WAV bytes stored for this sound."""
        return self._media.file_bytes()


def _floats(xs):
    return [float(x) for x in (xs.tolist() if hasattr(xs, "tolist") else xs)]


class Histogram:
    """Values binned into ``num_bins`` equal-width bins, or ready bins given as
    ``(counts, edges)`` (``numpy.histogram``'s result) or ``np_histogram=``."""

    __slots__ = ("_media",)

    def __init__(self, sequence=None, np_histogram=None, num_bins=64):
        if np_histogram is None and isinstance(sequence, tuple) and len(sequence) == 2 \
                and all(hasattr(s, "__len__") for s in sequence):
            np_histogram, sequence = sequence, None
        if np_histogram is not None:
            counts, edges = np_histogram
            self._media = _Media.histogram_bins(_floats(counts), _floats(edges))
        elif sequence is not None:
            self._media = _Media.histogram_of(_floats(sequence), int(num_bins))
        else:
            raise ValueError("tidelog.Histogram: give values or (counts, edges)")


class Table:
    """Rows of values under named columns: ``Table(columns=[...], data=[[...], ...])`` or
    ``Table(dataframe=df)`` / ``Table(data=df)`` for a pandas DataFrame."""

    __slots__ = ("_media", "columns", "data")

    def __init__(self, columns=None, data=None, dataframe=None):
        if dataframe is None and data is not None and hasattr(data, "columns") and hasattr(data, "itertuples"):
            dataframe, data = data, None
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            data = [list(row) for row in dataframe.itertuples(index=False, name=None)]
        if columns is None:
            raise ValueError("tidelog.Table: columns= is required (or pass a pandas DataFrame)")
        self.columns = [str(c) for c in columns]
        self.data = [list(row) for row in (data or [])]
        self._media = _Media.table(self.columns, self.data)

    def rows(self):
        """The rows as dicts, column name to value (what charts read)."""
        return [dict(zip(self.columns, row)) for row in self.data]


def _chart_rows(table):
    if isinstance(table, Table):
        return table.rows()
    return [dict(r) for r in table]


class _Chart:
    __slots__ = ("_media",)

    def __init__(self, media):
        self._media = media


class Plot:
    """Charts like ``wandb.plot``: ``Plot.line(table_or_rows, x, y, title=None)``, ``scatter``,
    ``bar``. ``table_or_rows`` is a :class:`Table` or a list of dicts."""

    @staticmethod
    def line(table, x, y, title=None):
        """A line of field ``y`` against field ``x``."""
        return _Chart(_Media.plot("line", _chart_rows(table), x, y, title))

    @staticmethod
    def scatter(table, x, y, title=None):
        """Points of field ``y`` against field ``x``."""
        return _Chart(_Media.plot("scatter", _chart_rows(table), x, y, title))

    @staticmethod
    def bar(table, x, y, title=None):
        """A bar of field ``y`` per category in field ``x``."""
        return _Chart(_Media.plot("bar", _chart_rows(table), x, y, title))
