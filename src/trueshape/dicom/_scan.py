"""Scan files and folders into :class:`Frame` records: header-only, in parallel, nothing modified.

Which files are DICOM images (by SOP class, and what a file that cannot be used is, in one line), read in
parallel; each image's frames come from ``_headers`` (classic, mosaic, enhanced), so grouping and geometry
never care where a plane came from.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import stat
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from trueshape.dicom._frame import Frame
from trueshape.dicom._headers import classic_frames, enhanced_frames, integer, pixel_value_offset
from trueshape.errors import DicomInputError

__all__ = ["FileProblem", "ScanResult", "scan"]

#: Elements larger than this are left on disk during the header pass (pixel data), bytes.
_DEFER_SIZE = 64 * 1024
#: Folders with at least this many files are scanned by one process per core.
_PROCESS_THRESHOLD = 64


@dataclass(frozen=True)
class FileProblem:
    """A DICOM file that could not be used, and why (one sentence naming the file)."""

    path: str
    message: str
    series_instance_uid: str = ""
    #: False when the file cannot be a slice of its series' volumes (a colour image): it does not keep the
    #: series from loading.
    may_be_slice: bool = True
    #: The slice the file's header names, when it can be read: SOPInstanceUID and ImagePositionPatient (mm, LPS).
    sop_instance_uid: str = ""
    image_position: tuple[float, float, float] | None = None
    #: Another file that holds the same slice whole (a truncated partial copy beside it): this one is left out.
    copy_of: str = ""

    @property
    def slice_text(self) -> str:
        """E.g. ``the slice at (-12.5, 30, 41) mm`` (or ``a slice`` when the header does not say)."""
        if self.image_position is None:
            return "a slice"
        return "the slice at (" + ", ".join(f"{v:g}" for v in self.image_position) + ") mm"


@dataclass(frozen=True)
class ScanResult:
    """What a scan found.

    Parameters
    ----------
    root : str
        The scanned path.
    frames : tuple of Frame
        Every usable image plane.
    problems : tuple of FileProblem
        DICOM files that could not be used (truncated, no pixel data, unsupported layout).
    skipped_non_dicom : tuple of str
        Files that are not DICOM (ignored quietly, counted).
    skipped_non_image : tuple of str
        DICOM objects that hold no image (DICOMDIR, reports, presentation states).
    """

    root: str
    frames: tuple[Frame, ...]
    problems: tuple[FileProblem, ...]
    skipped_non_dicom: tuple[str, ...]
    skipped_non_image: tuple[str, ...]


def _list_files(path: Path, unreadable: list[FileProblem] | None = None) -> list[Path]:
    """Files under ``path`` (sorted, hidden ones left out); folders that cannot be listed go to ``unreadable``."""
    if path.is_file():
        return [path]
    files: list[Path] = []

    def cannot_list(error: OSError) -> None:
        # A folder the user cannot read may hold slices of the series: say so rather than load the rest.
        if unreadable is not None:
            unreadable.append(
                FileProblem(str(error.filename), f"{error.filename}: folder cannot be read ({error.strerror or error})")
            )

    for directory, subdirs, names in os.walk(path, onerror=cannot_list):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        files.extend(Path(directory) / name for name in sorted(names) if not name.startswith("."))
    # Only regular files (and links to them): reading a FIFO or a device would wait forever.
    return [file for file in files if _is_regular(file)]


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return True  # a dangling link or an unreadable entry: reading it reports the problem


def _looks_like_dicom(path: Path) -> bool:
    """DICM magic at byte 128, or a bare data set starting with a group 0002/0008 tag.

    Raises OSError when the file cannot be read: an unreadable slice is a problem, not a non-DICOM file.
    """
    with path.open("rb") as handle:
        head = handle.read(132)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    return (
        len(head) >= 8
        and head[:2] in (b"\x02\x00", b"\x08\x00")
        and head[2:4] in (b"\x00\x00", b"\x05\x00", b"\x08\x00", b"\x16\x00")
    )


#: SOP classes of images (MR, CT, PET, secondary capture; classic, enhanced and legacy-converted): a file of
#: these classes without Rows/Columns is damaged, not a non-image object to skip.
IMAGE_STORAGE_CLASSES = frozenset(
    "1.2.840.10008.5.1.4.1.1." + suffix
    for suffix in (
        "4",
        "4.1",
        "4.3",
        "4.4",
        "2",
        "2.1",
        "2.2",
        "7",
        "7.1",
        "7.2",
        "7.3",
        "7.4",
        "128",
        "128.1",
        "130",
        "30",
    )
)
#: Objects that hold no image even when they carry Rows/Columns (spectroscopy, raw data, vendor non-image
#: objects such as Siemens CSA and Philips private data); registered classes named below are skipped too.
NON_IMAGE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.4.2",
        "1.2.840.10008.5.1.4.1.1.66",
        "1.3.12.2.1107.5.9.1",
        "1.3.46.670589.11.0.0.12.1",
        "1.3.46.670589.11.0.0.12.2",
        "1.3.46.670589.11.0.0.12.4",
    }
)
_NON_IMAGE_NAMES = (
    "SR Storage",
    "Presentation State",
    "Spectroscopy",
    "Raw Data",
    "Key Object Selection",
    "Waveform",
    "Encapsulated",
    "Media Storage Directory",
)


def _is_non_image_class(uid: str) -> bool:
    """Whether a SOP Class UID is known to hold no image (any other class with pixels is read as one)."""
    if uid in NON_IMAGE_CLASSES:
        return True
    name = pydicom.uid.UID(uid).name
    return any(part in name for part in _NON_IMAGE_NAMES)


#: File suffixes that say "DICOM": such a file that is not DICOM is reported, not skipped.
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima"})


def _read_file(path: Path) -> tuple[str, list[Frame] | FileProblem | None]:
    """Return ("frames", [...]), ("problem", FileProblem), ("non_dicom", None) or ("non_image", None).

    Whatever goes wrong while one file is read is that file's problem, named, never the run's end: pydicom
    converts elements lazily, so a damaged value (an unknown VR, a number that is not one) may surface anywhere.
    """
    try:
        # A file named like DICOM goes to the reader anyway (a data set without preamble may start with any
        # tag); what the reader makes of it decides.
        if not _looks_like_dicom(path) and path.suffix.lower() not in DICOM_SUFFIXES:
            return "non_dicom", None
    except OSError as error:
        return "problem", FileProblem(str(path), f"{path}: cannot be read ({error.strerror or error})")
    try:
        ds = pydicom.dcmread(path, defer_size=_DEFER_SIZE, force=True)
    except Exception as error:
        return "problem", FileProblem(str(path), f"{path}: cannot be read as DICOM ({_short(error)})")
    try:
        kind = _what_it_holds(ds, path)
        if kind is not None:
            return kind
        return _image_frames(ds, path)
    except DicomInputError as error:
        return "problem", _problem(ds, path, str(error))
    except Exception as error:  # a damaged header element, converted lazily: this file's problem
        return "problem", _problem(
            ds, path, f"{path}: malformed DICOM header ({type(error).__name__}: {_short(error)})"
        )


def _what_it_holds(ds: Dataset, path: Path) -> tuple[str, FileProblem | None] | None:
    """Say what a file that holds no usable image is (a problem, or a non-image object); None for an image."""
    meta = getattr(ds, "file_meta", None)
    classes = {str(ds.get("SOPClassUID") or ""), str(meta.get("MediaStorageSOPClassUID", "") if meta else "")}
    classes.discard("")
    # A file meta group cut short ends before its transfer syntax; only then is the file size worth a look.
    meta_cut = (
        meta is not None
        and len(meta) > 0
        and "TransferSyntaxUID" not in meta
        and path.stat().st_size < (132 + 12 + (integer(meta.get("FileMetaInformationGroupLength")) or 0))
    )
    # An old file without SOP Class UID that holds a whole image is still read as one.
    whole_image = "Rows" in ds and "Columns" in ds and "PixelData" in ds
    if (not classes and not whole_image) or meta_cut:  # cut before it says what it holds
        if path.suffix.lower() in DICOM_SUFFIXES and not len(ds):
            return "problem", FileProblem(
                str(path),
                f"{path}: named like a DICOM file but holds no DICOM data "
                f"({path.stat().st_size} bytes): truncated or damaged",
            )
        return "problem", FileProblem(
            str(path),
            f"{path}: DICOM file cut short before it says what it holds "
            "(no complete SOP Class UID): truncated or damaged",
        )
    if any(_is_non_image_class(uid) for uid in classes):
        return "non_image", None  # DICOMDIR, reports, spectroscopy, presentation states, CSA non-image
    if "Rows" not in ds or "Columns" not in ds:
        if classes & IMAGE_STORAGE_CLASSES:  # an image whose header ends early: truncated, not a report
            return "problem", _problem(
                ds, path, f"{path}: image header without Rows/Columns (truncated or damaged file)"
            )
        return "non_image", None  # another object without an image
    return None


def _image_frames(ds: Dataset, path: Path) -> tuple[str, list[Frame] | FileProblem]:
    """Return the frames of an image file, or why they cannot be read."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return "problem", _problem(ds, path, f"{path}: DICOM image header without pixel data (7FE0,0010)")
    samples = integer(ds.get("SamplesPerPixel")) or 1
    if samples != 1:  # a colour map (FA, fusion) with geometry: not a greyscale volume
        return "problem", FileProblem(
            str(path),
            f"{path}: colour image ({samples} samples per pixel, "
            f"{ds.get('PhotometricInterpretation', '')}); trueshape reads greyscale images",
            str(ds.get("SeriesInstanceUID", "")),
            may_be_slice=False,
        )
    problem = _pixel_layout_problem(ds, path) or _truncation(ds, path)
    if problem:
        return "problem", _problem(ds, path, problem)
    if "PerFrameFunctionalGroupsSequence" in ds:
        return "frames", enhanced_frames(ds, path)
    if (integer(ds.get("NumberOfFrames")) or 1) > 1:
        return "problem", _problem(
            ds,
            path,
            f"{path}: multi-frame image without per-frame functional groups (5200,9230) has no "
            f"per-frame geometry; not supported",
        )
    return "frames", classic_frames(ds, path)


#: Most values one image file may promise (rows x columns x frames): beyond it the header is damaged.
MAX_IMAGE_VALUES = 2**31
#: BitsAllocated of the integer Pixel Data trueshape reads (MR images hold 16; 64-bit integers would decode
#: into arrays no volume format trueshape writes holds: a damaged header, as the fuzz run found).
SUPPORTED_BITS_ALLOCATED = (1, 8, 16, 32)


def _pixel_layout_problem(ds: Dataset, path: Path) -> str:
    """Say what in the image pixel module cannot describe pixels (empty when it can)."""
    rows, columns = integer(ds.get("Rows")), integer(ds.get("Columns"))
    frames = integer(ds.get("NumberOfFrames")) if ds.get("NumberOfFrames") not in (None, "") else 1
    bits = integer(ds.get("BitsAllocated"))
    stored = integer(ds.get("BitsStored"))
    high = integer(ds.get("HighBit"))
    if rows is None or columns is None or rows < 1 or columns < 1:
        return f"{path}: Rows (0028,0010) {rows} x Columns (0028,0011) {columns}: an image needs rows and columns"
    if frames is None or frames < 1:
        return f"{path}: NumberOfFrames (0028,0008) is {str(ds.get('NumberOfFrames'))[:20]!r}, not a positive number"
    if rows * columns * frames > MAX_IMAGE_VALUES:
        return f"{path}: {rows} x {columns} x {frames} frames is more pixels than an image file holds (damaged header)"
    if bits is not None and bits not in SUPPORTED_BITS_ALLOCATED:
        return f"{path}: BitsAllocated (0028,0100) is {bits}, not 1, 8, 16 or 32 (integer pixel data up to 32 bits)"
    if bits is not None and stored is not None and not 1 <= stored <= bits:
        return f"{path}: BitsStored (0028,0101) is {stored}, outside 1..BitsAllocated ({bits})"
    if bits is not None and high is not None and not ((stored or 1) - 1 <= high < bits):
        return f"{path}: HighBit (0028,0102) is {high}, outside BitsStored - 1 ({(stored or 1) - 1})..{bits - 1}"
    if integer(ds.get("PixelRepresentation")) not in (None, 0, 1):
        return f"{path}: PixelRepresentation (0028,0103) is {ds.get('PixelRepresentation')}, not 0 or 1"
    return ""


def _problem(ds: Dataset, path: Path, message: str) -> FileProblem:
    """Return a problem of an image file, with the slice its header names (SOP instance, position) if readable."""

    def read(keyword: str) -> object:
        try:
            return ds.get(keyword)
        except Exception:  # a damaged element says nothing
            return None

    position = read("ImagePositionPatient")
    try:
        numbers = tuple(float(v) for v in position) if position is not None else ()  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        numbers = ()
    finite = len(numbers) == 3 and all(math.isfinite(v) for v in numbers)
    return FileProblem(
        str(path),
        message,
        str(read("SeriesInstanceUID") or ""),
        sop_instance_uid=str(read("SOPInstanceUID") or ""),
        image_position=(numbers[0], numbers[1], numbers[2]) if finite else None,
    )


def _truncation(ds: Dataset, path: Path) -> str:
    """Say why the pixel data is short of what the header promises (empty when it is complete)."""
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is None or syntax.is_compressed:
        return ""
    element = ds.get_item(0x7FE00010, keep_deferred=True)
    offset = pixel_value_offset(ds)
    bits = integer(ds.get("BitsAllocated")) or 16
    expected = (
        int(ds.Rows)
        * int(ds.Columns)
        * (integer(ds.get("SamplesPerPixel")) or 1)
        * (integer(ds.get("NumberOfFrames")) or 1)
        * bits
        // 8
    )
    inline = getattr(element, "value", None)
    if isinstance(inline, bytes):
        available = len(inline)
    elif isinstance(offset, int):
        available = path.stat().st_size - offset
    else:
        return ""
    if available < expected:
        return (
            f"{path}: truncated: pixel data (7FE0,0010) should hold {expected} bytes but the file ends after "
            f"{max(available, 0)}"
        )
    return ""


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]


def _parallel_workers(file_count: int, workers: int | None) -> int:
    """Return how many processes parse headers (CPU-bound Python: threads would only contend for the GIL)."""
    if workers is not None:
        return max(1, workers)
    if file_count < _PROCESS_THRESHOLD or multiprocessing.current_process().daemon:
        return 1  # small folders: starting processes costs more than it saves; daemons cannot have children
    return max(1, min(os.cpu_count() or 1, 8))


def scan(path: str | os.PathLike[str], *, workers: int | None = None) -> ScanResult:
    """Scan a file or folder (recursively) into header-only Frame records.

    Parameters
    ----------
    path : str or PathLike
        A DICOM file or a folder; hidden files and folders are ignored.
    workers : int, optional
        Processes for the header pass (default: one per core for folders of at least
        :data:`_PROCESS_THRESHOLD` files, else 1).

    Returns
    -------
    ScanResult
        Frames plus the files that were skipped or could not be used.

    Raises
    ------
    DicomInputError
        When ``path`` does not exist.
    """
    if not str(path).strip():
        raise DicomInputError("an empty path was given (an unset shell variable?): name a DICOM file or folder")
    root = Path(path)
    try:
        exists = root.exists()
    except OSError as error:  # e.g. a name longer than the file system allows
        raise DicomInputError(f"{root}: cannot be read ({error.strerror or error})") from None
    if not exists:
        raise DicomInputError(f"{root}: no such file or folder")
    unreadable: list[FileProblem] = []
    files = _list_files(root, unreadable)
    processes = _parallel_workers(len(files), workers)
    if processes > 1:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
            results = list(pool.map(_read_file, files, chunksize=max(1, len(files) // (4 * processes))))
    else:
        results = [_read_file(file) for file in files]
    frames: list[Frame] = []
    problems: list[FileProblem] = list(unreadable)
    non_dicom: list[str] = []
    non_image: list[str] = []
    for file, (kind, payload) in zip(files, results, strict=True):
        if kind == "frames":
            assert isinstance(payload, list)
            frames.extend(payload)
        elif kind == "problem":
            assert isinstance(payload, FileProblem)
            problems.append(payload)
        elif kind == "non_dicom":
            non_dicom.append(str(file))
        else:
            non_image.append(str(file))
    return ScanResult(str(root), tuple(frames), _mark_copies(problems, frames), tuple(non_dicom), tuple(non_image))


#: A damaged file and a whole one name the same slice when their positions agree this closely (mm).
COPY_POSITION_TOLERANCE_MM = 0.01


def _mark_copies(problems: list[FileProblem], frames: list[Frame]) -> tuple[FileProblem, ...]:
    """Mark each damaged file whose header names a slice another file holds whole (a truncated partial copy).

    The slice is the SOPInstanceUID of the same series at the header's ImagePositionPatient (any position when
    the header has none, as an enhanced file's top level): a reused UID elsewhere does not count.
    """
    by_uid: dict[str, list[Frame]] = {}
    for frame in frames:
        if frame.sop_instance_uid:
            by_uid.setdefault(frame.sop_instance_uid, []).append(frame)
    marked = []
    for problem in problems:
        twins = [
            frame
            for frame in by_uid.get(problem.sop_instance_uid, [])
            if problem.may_be_slice
            and frame.path != problem.path
            and frame.series_instance_uid == problem.series_instance_uid
            and _same_position(frame, problem)
        ]
        marked.append(replace(problem, copy_of=twins[0].path) if twins else problem)
    return tuple(marked)


def _same_position(frame: Frame, problem: FileProblem) -> bool:
    if problem.image_position is None:
        return True
    if frame.image_position is None:
        return False
    distance = max(abs(a - b) for a, b in zip(frame.image_position, problem.image_position, strict=True))
    return distance <= COPY_POSITION_TOLERANCE_MM
