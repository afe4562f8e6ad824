"""Read the pixels of chosen frames, each file opened once, files in parallel.

Uncompressed little-endian pixels are read straight from their byte offset (recorded during the header
pass): pydicom would parse the whole header again for every file, which dominates load time on large
classic series. Everything else (JPEG, JPEG-LS, JPEG 2000, RLE, big endian, short signed values) goes
through pydicom's pixel handlers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray

from trueshape.dicom._frame import Frame, PixelReadMode
from trueshape.errors import DicomInputError

__all__ = ["read_pixels"]


def _tile(image: NDArray[Any], frame: Frame) -> NDArray[Any]:
    assert frame.pixels is not None
    if frame.pixels.tile is None:
        return image
    row, column = frame.pixels.tile
    return image[row * frame.rows : (row + 1) * frame.rows, column * frame.columns : (column + 1) * frame.columns]


def _one_line(error: BaseException) -> str:
    """Fold a multi-line decoder message (one line per plugin) into one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]  # pydicom's "raised by all available plugins:" preamble says nothing itself
    return ("; ".join(lines) or type(error).__name__)[:300]


def _read_file_frames(path: str, frames: Sequence[Frame]) -> list[NDArray[Any]]:
    """Return one (rows, columns) plane per frame, all taken from ``path``."""
    locations = [f.pixels for f in frames]
    if any(loc is None for loc in locations):
        raise DicomInputError(f"{path}: no pixel data (7FE0,0010)")
    if all(loc.mode is PixelReadMode.NATIVE for loc in locations if loc is not None):
        planes = []
        cache: dict[int, NDArray[Any]] = {}
        for frame in frames:
            loc = frame.pixels
            assert loc is not None
            if loc.offset not in cache:
                count = loc.stored_rows * loc.stored_columns
                data = np.fromfile(path, dtype=loc.dtype, count=count, offset=loc.offset)
                if data.size != count:
                    raise DicomInputError(f"{path}: truncated pixel data: expected {count} values, found {data.size}")
                _mask_unused_bits(data, loc.stored_bits)
                cache[loc.offset] = data.reshape(loc.stored_rows, loc.stored_columns)
            planes.append(_tile(cache[loc.offset], frame))
        return planes
    try:
        dataset = pydicom.dcmread(path)
        if dataset.file_meta.get("TransferSyntaxUID") == pydicom.uid.RLELossless:
            # pydicom's own RLE decoder: pylibjpeg-rle panics (and prints a Rust backtrace) on a corrupt frame.
            dataset.pixel_array_options(decoding_plugin="pydicom")
        array = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for corrupt streams; the message names the file
        raise DicomInputError(f"{path}: pixel data cannot be decoded ({_one_line(error)})") from None
    except BaseException as error:
        if type(error).__module__ != "pyo3_runtime":  # a Rust decoder's panic is the stream's fault, not ours
            raise
        raise DicomInputError(
            f"{path}: pixel data cannot be decoded (the decoder failed: {_one_line(error)})"
        ) from None
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    planes = []
    for frame in frames:
        assert frame.pixels is not None
        plane = array[frame.pixels.frame_index] if array.ndim == 3 else array
        planes.append(_tile(plane, frame))
    return planes


def _native_into(out: NDArray[Any], frames: Sequence[Frame], indices: Sequence[int]) -> None:
    """Read whole native frames straight into their rows of ``out`` (no temporary arrays)."""
    for index in indices:
        frame = frames[index]
        assert frame.pixels is not None
        target = memoryview(out[index]).cast("B")
        with open(frame.path, "rb") as handle:
            handle.seek(frame.pixels.offset)
            count = handle.readinto(target)
        if count != len(target):
            raise DicomInputError(f"{frame.path}: truncated pixel data: expected {len(target)} bytes, found {count}")
        _mask_unused_bits(out[index], frame.pixels.stored_bits)


def _mask_unused_bits(values: NDArray[Any], stored_bits: int) -> None:
    """Clear the bits above BitsStored in place (unsigned data; 0 means none to clear)."""
    if stored_bits:
        np.bitwise_and(values, values.dtype.type((1 << stored_bits) - 1), out=values)


def read_pixels(frames: Sequence[Frame], *, workers: int | None = None) -> NDArray[Any]:
    """Read the stored pixel values of ``frames`` in order.

    Parameters
    ----------
    frames : sequence of Frame
        Frames of one pixel grid (same rows and columns).
    workers : int, optional
        Threads reading files in parallel (default ``min(8, cpu_count + 2)``).

    Returns
    -------
    ndarray, shape (len(frames), rows, columns)
        Stored values (no rescale applied), in the dtype the files hold (promoted when they differ).

    Raises
    ------
    DicomInputError
        A file's pixel data is missing, truncated or cannot be decoded (the message names the file).
    """
    if not frames:
        raise ValueError("no frames to read")
    workers = workers or min(8, (os.cpu_count() or 1) + 2)
    locations = [f.pixels for f in frames]
    if all(
        loc is not None
        and loc.mode is PixelReadMode.NATIVE
        and loc.tile is None
        and loc.stored_rows == frames[0].rows
        and loc.stored_columns == frames[0].columns
        for loc in locations
    ):
        dtypes = {loc.dtype for loc in locations if loc is not None}
        if len(dtypes) == 1:
            out = np.empty((len(frames), frames[0].rows, frames[0].columns), dtype=dtypes.pop())
            chunks = [range(start, len(frames), workers) for start in range(workers)]
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(lambda chunk: _native_into(out, frames, chunk), chunks))
            return out
    by_path: dict[str, list[int]] = {}
    for index, frame in enumerate(frames):
        by_path.setdefault(frame.path, []).append(index)
    paths = list(by_path)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda p: _read_file_frames(p, [frames[i] for i in by_path[p]]), paths))
    dtype = np.result_type(*[planes[0].dtype for planes in results])
    out = np.empty((len(frames), frames[0].rows, frames[0].columns), dtype=dtype)
    for path, planes in zip(paths, results, strict=True):
        for index, plane in zip(by_path[path], planes, strict=True):
            if plane.shape != out.shape[1:]:
                raise DicomInputError(
                    f"{path}: image is {plane.shape[1]}x{plane.shape[0]} pixels but the stack is "
                    f"{out.shape[2]}x{out.shape[1]}"
                )
            out[index] = plane
    return out
