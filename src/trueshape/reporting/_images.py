"""Slices as pictures: grey-level windows, small PNGs written without matplotlib, and the slices a scroller shows.

A report embeds many slices, so they are encoded here directly (8-bit grey PNG, zlib level 6): a 256 x 256
slice takes about a millisecond, where a matplotlib figure takes tens.

Examples
--------
>>> png = png_bytes(np.zeros((4, 3), dtype=np.uint8))
>>> png[:8] == PNG_SIGNATURE, png_size(png)
(True, (3, 4))
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MAX_SCROLLER_PIXELS",
    "MAX_SCROLLER_SLICES",
    "PNG_SIGNATURE",
    "grey_window",
    "png_bytes",
    "png_size",
    "scroller_slices",
    "to_grey",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: A scroller shows at most this many slices (evenly spread): a 400-slice series stays a few megabytes.
MAX_SCROLLER_SLICES = 64
#: A scroller's slices are shrunk to at most this many pixels along each side.
MAX_SCROLLER_PIXELS = 256


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(grey: NDArray[np.uint8]) -> bytes:
    """Encode a 2-D uint8 array (rows, columns) as an 8-bit grey PNG."""
    rows, columns = grey.shape
    raw = np.zeros((rows, columns + 1), dtype=np.uint8)  # filter byte 0 (none) before each row
    raw[:, 1:] = grey
    header = struct.pack(">IIBBBBB", columns, rows, 8, 0, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + _chunk(b"IEND", b"")
    )


def png_size(png: bytes) -> tuple[int, int]:
    """Return (width, height) in pixels from a PNG's header."""
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def grey_window(values: NDArray[np.floating] | NDArray[np.integer]) -> tuple[float, float]:
    """Return a display window (low, high): the 1st and 99.5th percentiles of the non-zero values."""
    array = np.asarray(values)
    step = max(1, int(np.ceil((array.size / 200_000) ** (1 / max(array.ndim, 1)))))
    sample = array[(slice(None, None, step),) * array.ndim].ravel()  # strided: no copy of the whole volume
    sample = sample[np.isfinite(sample) & (sample != 0)]
    if sample.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(sample, [1.0, 99.5]))
    return low, high if high > low else low + 1.0


def to_grey(plane: NDArray[np.floating] | NDArray[np.integer], window: tuple[float, float]) -> NDArray[np.uint8]:
    """Map ``plane`` through ``window`` onto 0-255."""
    low, high = window
    scaled = (np.nan_to_num(np.asarray(plane, dtype=np.float32)) - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def scroller_slices(
    values: NDArray[np.floating] | NDArray[np.integer],
    spacing: tuple[float, float],
    window: tuple[float, float],
    *,
    max_slices: int = MAX_SCROLLER_SLICES,
    max_pixels: int = MAX_SCROLLER_PIXELS,
) -> tuple[list[int], list[bytes]]:
    """Return the slice numbers shown and a PNG of each slice ``values[:, :, k]`` (array order i, j, k).

    Each picture has rows along j and columns along i, pixels made square (``spacing``: i and j, mm) and
    shrunk to at most ``max_pixels`` along each side; at most ``max_slices`` slices, evenly spread.
    """
    count = values.shape[2]
    shown = sorted({round(float(k)) for k in np.linspace(0, count - 1, min(count, max_slices))})
    columns, rows = values.shape[0] * spacing[0], values.shape[1] * spacing[1]
    scale = max_pixels / max(columns, rows)
    size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
    pick_i = np.minimum((np.arange(size[0]) + 0.5) * values.shape[0] / size[0], values.shape[0] - 1).astype(int)
    pick_j = np.minimum((np.arange(size[1]) + 0.5) * values.shape[1] / size[1], values.shape[1] - 1).astype(int)
    pictures = [png_bytes(to_grey(np.asarray(values[:, :, k])[np.ix_(pick_i, pick_j)].T, window)) for k in shown]
    return shown, pictures
