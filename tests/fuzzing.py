"""Malformed DICOM by the thousand: seeded mutations of small series, run through the commands, every outcome judged.

Each case copies one template (classic, Philips-style diffusion, enhanced multi-frame, RLE-compressed, and the
real corpus' transfer-syntax mosaics when present) into its own folder and damages it one way (a
:data:`MUTATION_KINDS` entry): truncation in the file meta, the header or the pixels; byte flips; structured
tag corruption with pydicom (NaN, infinite, huge, zero, wrong-count or text geometry; Rows, Columns and bits
at odds with the pixel data; wrong NumberOfFrames; broken functional groups; a transfer syntax the data is not
in; garbage private and CSA headers; huge strings; unusable rescales; corrupted VRs; an outlier slice; UIDs and
series that collide). The commands (``inspect --json``, ``convert``; ``inspect`` and ``correct`` for every
fourth case) run in a worker process that keeps the libraries loaded, under a time limit per case (the worker
is killed and restarted on a hang) and a memory guard (RLIMIT_DATA). Every run must end in success or in
trueshape's own error naming a file of the case (exit code 2, an ``error:`` line), print nothing else on
standard error, and leave the case's files as they were.

``tests/test_fuzz.py`` runs a few hundred cases in ``make test``; ``benchmarks/fuzz.py --cases 10000`` the long run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import multiprocessing
import os
import resource
import shutil
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.config import disable_value_validation
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence

#: Where the real corpus' transfer-syntax mosaics are (templates when present).
CORPUS_SYNTAXES = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real" / "transfer-syntaxes" / "dicom"
#: Seconds one case (all its commands) may take before it counts as a hang.
CASE_TIME_LIMIT_S = 30.0
#: Memory a worker may allocate beyond what it held after start-up (RLIMIT_DATA), bytes.
MEMORY_GUARD_BYTES = 2 * 2**30

MUTATION_KINDS = (
    "truncate_meta",
    "truncate_header",
    "truncate_pixels",
    "flip_header",
    "flip_pixels",
    "geometry_value",
    "outlier_position",
    "pixel_module",
    "frame_count",
    "functional_groups",
    "transfer_syntax",
    "private_garbage",
    "huge_string",
    "rescale",
    "vr_corrupt",
    "uid_collision",
    "mixed_series",
)

VERDICTS = ("ok", "named_error", "crash", "hang", "unnamed_error", "stray_output", "input_modified")
DEFECTS = ("crash", "hang", "unnamed_error", "stray_output", "input_modified")


# ----------------------------------------------------------------------------------------------- templates


def write_templates(folder: Path, *, corpus: bool = True) -> dict[str, Path]:
    """Write the template series under ``folder`` (each in its own sub-folder); return {name: folder}."""
    from trueshape.io import SeriesMetadata, SlicePlane, write_dicom_slices, write_enhanced_dicom
    from trueshape.synth import regular_planes

    rng = np.random.default_rng(0)
    templates: dict[str, Path] = {}

    def textured(planes: list[SlicePlane]) -> list[SlicePlane]:
        for plane in planes:
            plane.pixels[:] = rng.integers(0, 4000, plane.pixels.shape, dtype=np.uint16)
        return planes

    classic = folder / "classic"
    write_dicom_slices(
        classic,
        textured(regular_planes(rows=12, columns=10, slices=6, pixel_spacing=(2.0, 2.0), slice_spacing=3.0)),
        SeriesMetadata(series_description="fuzz classic", table_position_mm=(0.0, 0.0, 20.0), rescale_slope=2.0),
    )
    templates["classic"] = classic
    philips = folder / "philips_dwi"
    planes = []
    for plane in regular_planes(rows=8, columns=8, slices=3):
        planes.extend([plane] * 4)
    paths = write_dicom_slices(
        philips,
        textured([SlicePlane(p.pixels.copy(), p.image_position, p.image_orientation, p.pixel_spacing) for p in planes]),
        SeriesMetadata(manufacturer="Philips Medical Systems", series_description="dwi", rescale_slope=1.5),
    )
    weights = [(0.0, (0.0, 0.0, 0.0), "I"), (1000.0, (1.0, 0.0, 0.0), "M"), (1000.0, (0.0, 1.0, 0.0), "P")]
    weights.append((1000.0, (0.0, 0.0, 0.0), "I"))  # the derived isotropic image
    for index, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        b_value, direction, label = weights[index % 4]
        ds.DiffusionBValue = b_value
        ds.DiffusionGradientOrientation = list(direction)
        imaging = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
        imaging.add_new(0x03, "FL", b_value)
        imaging.add_new(0x04, "CS", label)
        ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True).add_new(0x0E, "FL", 0.0033)
        stack = Dataset()
        stack.private_block(0x2005, "Philips MR Imaging DD 005", create=True).add_new(0x3C, "FL", -20.0)
        imaging.add_new(0x5F, "SQ", [stack])
        ds.save_as(path)
    templates["philips_dwi"] = philips
    enhanced = folder / "enhanced"
    write_enhanced_dicom(
        enhanced / "multiframe.dcm",
        textured(regular_planes(rows=10, columns=10, slices=6)),
        SeriesMetadata(series_description="fuzz enhanced", table_position_mm=(0.0, 0.0, -10.0)),
        temporal_indices=[1, 1, 1, 2, 2, 2],
    )
    templates["enhanced"] = enhanced
    rle = folder / "rle"
    for path in write_dicom_slices(rle, textured(regular_planes(rows=8, columns=8, slices=4)), SeriesMetadata()):
        ds = pydicom.dcmread(path)
        ds.compress(pydicom.uid.RLELossless)
        ds.save_as(path)
    templates["rle"] = rle
    if corpus and CORPUS_SYNTAXES.is_dir():
        for name, number in (("big_endian", 3), ("corpus_rle", 4), ("jpeg_lossless", 5), ("jpeg_ls", 7), ("j2k", 9)):
            target = folder / name
            target.mkdir(parents=True)
            shutil.copyfile(CORPUS_SYNTAXES / f"{number}.dcm", target / "mosaic.dcm")
            templates[name] = target
    return templates


# ----------------------------------------------------------------------------------------------- mutations


@dataclass(frozen=True)
class Case:
    """One malformed input: its folder, the template and mutation it came from, and what was done."""

    index: int
    kind: str
    template: str
    folder: Path
    detail: str
    commands: tuple[tuple[str, ...], ...] = ()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _pixel_offset(data: bytes) -> int:
    """Byte offset of the PixelData element (little or big endian), or the end when none is found."""
    found = max(data.rfind(b"\xe0\x7f\x10\x00"), data.rfind(b"\x7f\xe0\x00\x10"))
    return found if found > 0 else len(data)


def _meta_end(data: bytes) -> int:
    if len(data) >= 144 and data[128:132] == b"DICM":
        return min(len(data), 144 + int.from_bytes(data[140:144], "little"))
    return 0


def _edit(path: Path, change: Callable[[Dataset], None]) -> None:
    """Read ``path`` with pydicom, let ``change`` damage it, write it back as it was encoded (no validation)."""
    with disable_value_validation(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
        change(ds)
        ds.save_as(path, enforce_file_format=False)


def _raw(ds: Dataset, keyword: str, vr: str, value: Any) -> None:
    """Set ``keyword`` to ``value`` whatever it is: as text (LO) when pydicom cannot hold it in its own VR."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    assert tag is not None, keyword
    try:
        ds[tag] = DataElement(tag, vr, value)
    except (ValueError, TypeError, OverflowError):
        ds[tag] = DataElement(tag, "LO", str(value))


_BAD_NUMBERS = ("nan", "inf", "-inf", "1e308", "1e400", "0", "", "abc", "-1", "1e-320", "9" * 40)


def _bad_multi(rng: np.random.Generator, count: int) -> str:
    """A DS multi-value that is wrong: a bad number somewhere, or the wrong count."""
    choice = int(rng.integers(0, 4))
    values = ["1.5"] * count
    if choice == 0:
        values[int(rng.integers(0, count))] = str(rng.choice(_BAD_NUMBERS))
    elif choice == 1:
        values = values[: max(1, count - 1)]
    elif choice == 2:
        values = values + ["2"] * int(rng.integers(1, 50))
    else:
        values = [str(rng.choice(("nan", "1e308", "0", "inf")))] * count
    return "\\".join(values)


def _mutate_truncate(rng: np.random.Generator, path: Path, region: str) -> str:
    data = path.read_bytes()
    meta, pixels = _meta_end(data), _pixel_offset(data)
    low, high = {"meta": (0, max(meta, 132)), "header": (meta, pixels), "pixels": (pixels, len(data))}[region]
    cut = int(rng.integers(low, max(low + 1, high)))
    path.write_bytes(data[:cut])
    return f"{path.name} cut at byte {cut} of {len(data)} ({region})"


def _mutate_flip(rng: np.random.Generator, path: Path, region: str) -> str:
    data = bytearray(path.read_bytes())
    pixels = _pixel_offset(bytes(data))
    low, high = (0, pixels) if region == "header" else (min(pixels + 8, len(data) - 1), len(data))
    count = int(rng.integers(1, 17 if region == "pixels" else 5))
    places = sorted(int(rng.integers(low, max(low + 1, high))) for _ in range(count))
    for place in places:
        data[place] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))
    return f"{path.name}: {count} byte(s) flipped at {places[:4]}"


def _enhanced_items(ds: Dataset) -> list[Dataset]:
    return list(ds.get("PerFrameFunctionalGroupsSequence") or [])


def _mutate_geometry(rng: np.random.Generator, files: list[Path]) -> str:
    keyword = str(
        rng.choice(
            (
                "ImagePositionPatient",
                "ImageOrientationPatient",
                "PixelSpacing",
                "SliceThickness",
                "SpacingBetweenSlices",
                "SliceLocation",
            )
        )
    )
    count = {"ImagePositionPatient": 3, "ImageOrientationPatient": 6, "PixelSpacing": 2}.get(keyword, 1)
    value = _bad_multi(rng, count)
    targets = files if rng.random() < 0.3 else [files[int(rng.integers(0, len(files)))]]

    def change(ds: Dataset) -> None:
        holders = [ds]
        for item in _enhanced_items(ds):
            for name in ("PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence"):
                holders.extend(item.get(name) or [])
        for shared in ds.get("SharedFunctionalGroupsSequence") or []:
            for name in ("PlaneOrientationSequence", "PixelMeasuresSequence"):
                holders.extend(shared.get(name) or [])
        for holder in holders:
            if keyword in holder or holder is ds:
                _raw(holder, keyword, "DS", value)

    for target in targets:
        _edit(target, change)
    return f"{keyword} = {value[:60]!r} in {len(targets)} file(s)"


def _mutate_outlier(rng: np.random.Generator, files: list[Path]) -> str:
    target = files[int(rng.integers(0, len(files)))]
    factor = float(rng.choice((1e6, -1e6, 1e12, 1e3)))

    def change(ds: Dataset) -> None:
        holders = [item.PlanePositionSequence[0] for item in _enhanced_items(ds) if "PlanePositionSequence" in item]
        for holder in (holders[int(rng.integers(0, len(holders)))],) if holders else (ds,):
            position = [float(v) for v in holder.ImagePositionPatient]
            _raw(holder, "ImagePositionPatient", "DS", "\\".join(f"{v * factor + factor:.6g}" for v in position))

    _edit(target, change)
    return f"{target.name}: one slice's position scaled by {factor:g}"


def _mutate_pixel_module(rng: np.random.Generator, files: list[Path]) -> str:
    keyword = str(
        rng.choice(
            (
                "Rows",
                "Columns",
                "BitsAllocated",
                "BitsStored",
                "HighBit",
                "SamplesPerPixel",
                "PixelRepresentation",
                "PhotometricInterpretation",
                "PlanarConfiguration",
            )
        )
    )
    value: Any = int(rng.choice((0, 1, 2, 3, 7, 12, 17, 24, 33, 64, 255, 65535)))
    vr = "US"
    if keyword == "PhotometricInterpretation":
        value, vr = str(rng.choice(("RGB", "YBR_FULL", "PALETTE COLOR", "MONOCHROME1", "", "???"))), "CS"
    target = files[int(rng.integers(0, len(files)))]
    _edit(target, lambda ds: _raw(ds, keyword, vr, value))
    return f"{target.name}: {keyword} = {value!r}"


def _mutate_frame_count(rng: np.random.Generator, files: list[Path]) -> str:
    value = str(rng.choice(("0", "-1", "2", "7", "1000000", "abc", "", "3.5")))
    target = files[int(rng.integers(0, len(files)))]
    _edit(target, lambda ds: _raw(ds, "NumberOfFrames", "IS", value))
    return f"{target.name}: NumberOfFrames = {value!r}"


def _mutate_functional_groups(rng: np.random.Generator, files: list[Path]) -> str:
    target = files[int(rng.integers(0, len(files)))]
    how = str(
        rng.choice(
            (
                "drop_item",
                "duplicate_item",
                "empty_item",
                "no_shared",
                "drop_position",
                "empty_seq",
                "orientation_per_frame_nan",
                "temporal_garbage",
            )
        )
    )

    def change(ds: Dataset) -> None:
        items = _enhanced_items(ds)
        if not items:  # a classic file: make it claim per-frame groups it does not have
            ds.PerFrameFunctionalGroupsSequence = DicomSequence([Dataset()])
            return
        chosen = int(rng.integers(0, len(items)))
        if how == "drop_item":
            del items[chosen]
        elif how == "duplicate_item":
            items.insert(chosen, items[chosen])
        elif how == "empty_item":
            items[chosen] = Dataset()
        elif how == "no_shared" and "SharedFunctionalGroupsSequence" in ds:
            del ds.SharedFunctionalGroupsSequence
        elif how == "drop_position" and "PlanePositionSequence" in items[chosen]:
            del items[chosen].PlanePositionSequence
        elif how == "empty_seq":
            items[chosen].PlanePositionSequence = DicomSequence([])
        elif how == "orientation_per_frame_nan":
            orientation = Dataset()
            _raw(orientation, "ImageOrientationPatient", "DS", "nan\\0\\0\\0\\nan\\0")
            items[chosen].PlaneOrientationSequence = DicomSequence([orientation])
        elif how == "temporal_garbage" and "FrameContentSequence" in items[chosen]:
            _raw(items[chosen].FrameContentSequence[0], "TemporalPositionIndex", "UL", 2**32 - 1)
        ds.PerFrameFunctionalGroupsSequence = DicomSequence(items)

    _edit(target, change)
    return f"{target.name}: functional groups {how}"


def _mutate_transfer_syntax(rng: np.random.Generator, files: list[Path]) -> str:
    target = files[int(rng.integers(0, len(files)))]
    uid = str(
        rng.choice(
            (
                pydicom.uid.ImplicitVRLittleEndian,
                pydicom.uid.ExplicitVRLittleEndian,
                pydicom.uid.ExplicitVRBigEndian,
                pydicom.uid.DeflatedExplicitVRLittleEndian,
                pydicom.uid.JPEGBaseline8Bit,
                pydicom.uid.RLELossless,
                pydicom.uid.JPEG2000Lossless,
                pydicom.uid.JPEGLSLossless,
                "1.2.3.4",
                "1.2.840.10008.1.2.1.99",
            )
        )
    )
    data = target.read_bytes()
    end = _meta_end(data)
    if not end:
        return f"{target.name}: no file meta to change"
    with disable_value_validation(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = pydicom.dcmread(target, force=True, stop_before_pixels=True).file_meta
        fresh = FileMetaDataset(meta)
        fresh.TransferSyntaxUID = uid
        buffer = pydicom.filebase.DicomBytesIO()
        pydicom.filewriter.write_file_meta_info(buffer, fresh, enforce_standard=True)
    target.write_bytes(data[:128] + b"DICM" + buffer.getvalue() + data[end:])
    return f"{target.name}: TransferSyntaxUID = {uid!r} (data left as it is)"


def _mutate_private(rng: np.random.Generator, files: list[Path]) -> str:
    target = files[int(rng.integers(0, len(files)))]
    garbage = rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes()
    how = str(
        rng.choice(
            (
                "csa",
                "csa_header",
                "siemens_table",
                "philips_scale",
                "philips_table",
                "ge_table",
                "diffusion",
                "new_private",
            )
        )
    )

    def change(ds: Dataset) -> None:
        if how == "csa":
            block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
            block.add_new(int(rng.choice((0x10, 0x20))), "OB", garbage)
        elif how == "csa_header":  # a CSA2 signature, then counts that promise more than is there
            block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
            block.add_new(0x10, "OB", b"SV10\x04\x03\x02\x01" + (2**31 - 1).to_bytes(4, "little") + garbage[:40])
        elif how == "siemens_table":
            ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x14, "LO", "a\\nan\\1e999")
        elif how == "philips_scale":
            value = float(rng.choice((0.0, np.inf, np.nan, 1e-45, 3e38, -1.0)))
            ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True).add_new(0x0E, "FL", value)
        elif how == "philips_table":
            ds.private_block(0x2005, "Philips MR Imaging DD 005", create=True).add_new(0x3C, "FL", float("nan"))
        elif how == "ge_table":
            ds.Manufacturer = "GE MEDICAL SYSTEMS"
            ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0xB2, "LO", "x\\y")
            ds.private_block(0x0019, "GEMS_ACQU_01", create=True).add_new(0xBB, "DS", "nan")
        elif how == "diffusion":
            _raw(ds, "DiffusionBValue", "FD", float(rng.choice((np.nan, -1.0, 1e308, np.inf))))
            _raw(ds, "DiffusionGradientOrientation", "FD", [float("nan"), 1e308, 0.0])
        else:
            group = int(rng.choice((0x0019, 0x0029, 0x2001, 0x2005, 0x0043)))
            ds.private_block(group, "FUZZ " + garbage[:8].hex(), create=True).add_new(0x01, "UN", garbage)

    _edit(target, change)
    return f"{target.name}: private {how} ({len(garbage)} garbage bytes)"


def _mutate_huge_string(rng: np.random.Generator, files: list[Path]) -> str:
    keyword = str(
        rng.choice(
            (
                "SeriesDescription",
                "ProtocolName",
                "PatientName",
                "SeriesNumber",
                "Manufacturer",
                "PatientPosition",
                "ImageType",
            )
        )
    )
    value = str(
        rng.choice(
            (
                "A" * int(rng.integers(300, 100_000)),
                "../../../../tmp/escape",
                "a/b\\c:d*e?f",
                "\x00\x01\x02",
                "é" * 300,
                "99999999999999999999",
                "-5",
                " ",
                "CON",
                ".",
                "..",
            )
        )
    )
    targets = files if rng.random() < 0.7 else files[:1]
    for target in targets:
        _edit(target, lambda ds: _raw(ds, keyword, "LO" if keyword != "SeriesNumber" else "IS", value))
    return f"{keyword} = {value[:40]!r}... ({len(value)} characters) in {len(targets)} file(s)"


def _mutate_rescale(rng: np.random.Generator, files: list[Path]) -> str:
    keyword = str(rng.choice(("RescaleSlope", "RescaleIntercept")))
    value = str(rng.choice(("nan", "inf", "-inf", "1e308", "1e38", "0", "abc", "1\\2", "-0")))
    targets = files if rng.random() < 0.5 else [files[int(rng.integers(0, len(files)))]]
    for target in targets:
        _edit(target, lambda ds: _raw(ds, keyword, "DS", value))
    return f"{keyword} = {value!r} in {len(targets)} file(s)"


def _mutate_vr(rng: np.random.Generator, files: list[Path]) -> str:
    target = files[int(rng.integers(0, len(files)))]
    data = bytearray(target.read_bytes())
    start, end = _meta_end(bytes(data)), _pixel_offset(bytes(data))
    known = [b"DS", b"IS", b"LO", b"CS", b"SH", b"UI", b"US", b"FD", b"SQ", b"DA", b"TM", b"PN"]
    places = [i for i in range(start + 4, end - 2) if bytes(data[i : i + 2]) in known]
    if not places:
        return f"{target.name}: no explicit VR found"
    place = places[int(rng.integers(0, len(places)))]
    data[place : place + 2] = bytes(rng.choice([b"ZZ", b"??", b"\x00\x00", b"XY", b"Q1"]))
    target.write_bytes(bytes(data))
    return f"{target.name}: the VR at byte {place} replaced"


def _mutate_uids(rng: np.random.Generator, files: list[Path]) -> str:
    how = str(rng.choice(("same_sop", "empty_series", "huge_uid", "series_split", "empty_sop", "same_number_desc")))
    first, other = files[0], files[-1]
    if how == "same_sop" and len(files) > 1:
        uid = pydicom.dcmread(first, stop_before_pixels=True).SOPInstanceUID
        _edit(other, lambda ds: setattr(ds, "SOPInstanceUID", uid))
    elif how == "empty_series":
        _edit(other, lambda ds: _raw(ds, "SeriesInstanceUID", "UI", ""))
    elif how == "huge_uid":
        _edit(other, lambda ds: _raw(ds, "SeriesInstanceUID", "UI", "1." + "2" * 500))
    elif how == "series_split" and len(files) > 1:
        _edit(other, lambda ds: setattr(ds, "SeriesInstanceUID", pydicom.uid.generate_uid()))
    elif how == "empty_sop":
        _edit(other, lambda ds: _raw(ds, "SOPInstanceUID", "UI", ""))
    else:  # a copy of the series under a new UID, the same number and a description a file name cannot tell apart
        copy = first.parent / "copy"
        copy.mkdir()
        uid = pydicom.uid.generate_uid(prefix="1.2.826.0.1.3680043.8.498.")
        for number, path in enumerate(files):
            target = copy / f"c{number}.dcm"
            shutil.copyfile(path, target)
            _edit(
                target,
                lambda ds: (
                    setattr(ds, "SeriesInstanceUID", uid),
                    _raw(ds, "SeriesDescription", "LO", str(ds.get("SeriesDescription", "")).upper() + "?"),
                ),
            )
    return f"uids: {how}"


def _mutate_mixed(rng: np.random.Generator, files: list[Path], templates: dict[str, Path]) -> str:
    """One bad file of another template mixed into a good series: the rest must still convert."""
    donor_name = str(rng.choice(sorted(templates)))
    donor = _files(templates[donor_name])
    source = donor[int(rng.integers(0, len(donor)))]
    target = files[0].parent / f"zz_mixed_{source.name}"
    shutil.copyfile(source, target)
    inner = _MUTATORS[str(rng.choice(("truncate_pixels", "flip_header", "geometry_value", "vr_corrupt")))]
    return f"{donor_name}/{source.name} mixed in, then " + inner(rng, [target], templates)


_MUTATORS: dict[str, Callable[[np.random.Generator, list[Path], dict[str, Path]], str]] = {
    "truncate_meta": lambda rng, files, _: _mutate_truncate(rng, files[int(rng.integers(0, len(files)))], "meta"),
    "truncate_header": lambda rng, files, _: _mutate_truncate(rng, files[int(rng.integers(0, len(files)))], "header"),
    "truncate_pixels": lambda rng, files, _: _mutate_truncate(rng, files[int(rng.integers(0, len(files)))], "pixels"),
    "flip_header": lambda rng, files, _: _mutate_flip(rng, files[int(rng.integers(0, len(files)))], "header"),
    "flip_pixels": lambda rng, files, _: _mutate_flip(rng, files[int(rng.integers(0, len(files)))], "pixels"),
    "geometry_value": lambda rng, files, _: _mutate_geometry(rng, files),
    "outlier_position": lambda rng, files, _: _mutate_outlier(rng, files),
    "pixel_module": lambda rng, files, _: _mutate_pixel_module(rng, files),
    "frame_count": lambda rng, files, _: _mutate_frame_count(rng, files),
    "functional_groups": lambda rng, files, _: _mutate_functional_groups(rng, files),
    "transfer_syntax": lambda rng, files, _: _mutate_transfer_syntax(rng, files),
    "private_garbage": lambda rng, files, _: _mutate_private(rng, files),
    "huge_string": lambda rng, files, _: _mutate_huge_string(rng, files),
    "rescale": lambda rng, files, _: _mutate_rescale(rng, files),
    "vr_corrupt": lambda rng, files, _: _mutate_vr(rng, files),
    "uid_collision": lambda rng, files, _: _mutate_uids(rng, files),
    "mixed_series": _mutate_mixed,
}


def make_case(index: int, seed: int, templates: dict[str, Path], root: Path, coil: Path) -> Case:
    """Write case ``index`` of the run seeded ``seed`` under ``root``: a template copied and damaged one way."""
    rng = np.random.default_rng([seed, index])
    kind = MUTATION_KINDS[index % len(MUTATION_KINDS)]
    template = str(rng.choice(sorted(templates)))
    folder = root / f"case{index:05d}"
    shutil.copytree(templates[template], folder / "input")
    detail = _MUTATORS[kind](rng, _files(folder / "input"), templates)
    case_input = str(folder / "input")
    commands: list[tuple[str, ...]] = [
        ("inspect", "--json", case_input),
        ("convert", case_input, "--out", str(folder / "out")),
    ]
    if index % 4 == 0:
        commands.append(("inspect", case_input))
        commands.append(("correct", case_input, "--coef", str(coil), "--state", "ND", "--out", str(folder / "fixed")))
    return Case(index, kind, template, folder, detail, tuple(commands))


# ----------------------------------------------------------------------------------------------- the worker


def _digest(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(folder)}


@contextlib.contextmanager
def _native_stderr() -> Iterator[io.StringIO]:
    """Capture what native code (a Rust panic hook, a C library) writes to file descriptor 2."""
    import tempfile

    captured = io.StringIO()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.write(sink.read().decode("utf-8", errors="replace"))


def _run_command(arguments: tuple[str, ...]) -> tuple[int | None, str, str, str]:
    """Run one command in this process as the console script would: (exit code, stdout, stderr, escaped error)."""
    from trueshape.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    code: int | None = 0
    escaped = ""
    saved = sys.argv
    sys.argv = ["trueshape", *arguments]
    with _native_stderr() as native:
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
                warnings.simplefilter("always")  # every warning a user would see, not only the first of the run
                try:
                    main()
                except SystemExit as exit_:
                    code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except BaseException as error:  # what escapes main (a decoder panic is a BaseException): a crash
            code = None
            escaped = f"{type(error).__module__}.{type(error).__name__}: {str(error)[:300]}"
        finally:
            sys.argv = saved
    return code, stdout.getvalue(), stderr.getvalue() + native.getvalue(), escaped


def _worker(connection: Connection, memory_guard: int) -> None:
    """Run cases sent over ``connection`` until it closes, under a memory guard of ``memory_guard`` bytes."""
    import trueshape.cli  # noqa: F401 - loaded once: start-up is not what the cases test

    try:
        with open("/proc/self/statm") as statm:
            held = int(statm.read().split()[5]) * os.sysconf("SC_PAGE_SIZE")  # data + stack now
        resource.setrlimit(resource.RLIMIT_DATA, (held + memory_guard, held + memory_guard))
    except (OSError, ValueError):
        pass
    while True:
        try:
            commands = connection.recv()
        except EOFError:
            return
        results = [_run_command(tuple(command)) for command in commands]
        connection.send(results)


@dataclass
class Outcome:
    """How one case ended: the verdict, and for a defect the command and what it printed."""

    case: Case
    verdict: str
    command: tuple[str, ...] = ()
    message: str = ""
    seconds: float = 0.0


def _judge(case: Case, command: tuple[str, ...], result: tuple[int | None, str, str, str]) -> tuple[str, str]:
    code, _, stderr, escaped = result
    lines = [line for line in stderr.splitlines() if line.strip()]
    stray = [line for line in lines if not line.startswith(("error:", "warning:"))]
    if code is None:
        return "crash", escaped
    if code not in (0, 2):
        return "crash", (lines or ["(no message)"])[-1][:400]
    if stray:
        return "stray_output", " | ".join(stray)[:400]
    errors = [line for line in lines if line.startswith("error:")]
    if code == 2:
        places = [str(case.folder)]
        unnamed = [line for line in errors if not any(place in line for place in places)]
        if not errors or unnamed:
            return "unnamed_error", (unnamed or ["(exit 2 without an error: line)"])[0][:400]
        return "named_error", errors[0][:200]
    return "ok", ""


class Runner:
    """A worker process running cases with a time limit each; restarted after a hang or a death."""

    def __init__(self, *, time_limit_s: float = CASE_TIME_LIMIT_S, memory_guard: int = MEMORY_GUARD_BYTES) -> None:
        self.time_limit_s = time_limit_s
        self.memory_guard = memory_guard
        self._context = multiprocessing.get_context("fork")
        self._process: Any = None
        self._connection: Connection | None = None

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_worker, args=(child, self.memory_guard), daemon=True)
        self._process.start()
        child.close()
        self._connection = parent

    def _stop(self) -> None:
        if self._process is not None:
            if self._connection is not None:
                self._connection.close()
            self._process.kill()
            self._process.join()
        self._process, self._connection = None, None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *_: object) -> None:
        self._stop()

    def run(self, case: Case) -> Outcome:
        """Run every command of ``case``; the first defect decides the verdict (else a named error, else ok)."""
        if self._process is None or not self._process.is_alive():
            self._start()
        assert self._connection is not None
        before = _digest(case.folder / "input")
        start = time.perf_counter()
        self._connection.send(case.commands)
        if not self._connection.poll(self.time_limit_s):
            self._stop()
            return Outcome(case, "hang", case.commands[-1], f"no answer in {self.time_limit_s:g} s", self.time_limit_s)
        try:
            results = self._connection.recv()
        except (EOFError, OSError):
            code = self._process.exitcode if self._process is not None else None
            self._stop()
            return Outcome(case, "crash", case.commands[-1], f"the worker died (exit code {code})")
        seconds = time.perf_counter() - start
        verdicts = [
            (command, *_judge(case, command, result)) for command, result in zip(case.commands, results, strict=True)
        ]
        if _digest(case.folder / "input") != before:
            return Outcome(case, "input_modified", case.commands[-1], "the input files changed", seconds)
        for wanted in (*DEFECTS, "named_error"):
            for command, verdict, message in verdicts:
                if verdict == wanted:
                    return Outcome(case, verdict, command, message, seconds)
        return Outcome(case, "ok", (), "", seconds)


@dataclass
class Report:
    """Counts per mutation kind and verdict, and the defects found."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def defects(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.verdict in DEFECTS]

    def counts(self) -> dict[str, Counter[str]]:
        table: dict[str, Counter[str]] = {kind: Counter() for kind in MUTATION_KINDS}
        for outcome in self.outcomes:
            table[outcome.case.kind][outcome.verdict] += 1
        return table

    def summary(self) -> str:
        totals = Counter(o.verdict for o in self.outcomes)
        return (
            f"{len(self.outcomes)} cases: {totals['crash']} crashes, {totals['hang']} hangs, "
            f"{totals['unnamed_error']} unnamed errors, {totals['input_modified']} inputs modified, "
            f"{totals['stray_output']} with stray output; {totals['ok']} converted, "
            f"{totals['named_error']} refused with a named error"
        )

    def table(self) -> str:
        rows = [f"{'mutation':20s} " + " ".join(f"{v:>14s}" for v in VERDICTS)]
        for kind, counter in self.counts().items():
            rows.append(f"{kind:20s} " + " ".join(f"{counter[v]:14d}" for v in VERDICTS))
        return "\n".join(rows)


def run_cases(
    count: int,
    seed: int,
    root: Path,
    *,
    start: int = 0,
    corpus: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Write and run ``count`` cases of the run seeded ``seed`` under ``root`` (cleaned as it goes)."""
    from trueshape.gnl import SYN_AS, format_siemens_grad

    templates = write_templates(root / "templates", corpus=corpus)
    coil = root / "SYN-AS.grad"
    coil.write_text(format_siemens_grad(SYN_AS))
    report = Report()
    with Runner() as runner:
        for index in range(start, start + count):
            case = make_case(index, seed, templates, root / "cases", coil)
            outcome = runner.run(case)
            report.outcomes.append(outcome)
            if outcome.verdict not in DEFECTS:
                shutil.rmtree(case.folder, ignore_errors=True)
            if progress is not None:
                progress(index)
    return report


def iterate_defects(report: Report, limit: int = 20) -> Iterator[str]:
    """One line per defect (the first ``limit``): case, mutation, command and what it printed."""
    for outcome in report.defects[:limit]:
        case = outcome.case
        yield (
            f"case {case.index} [{case.kind} on {case.template}: {case.detail}] {outcome.verdict}: "
            f"trueshape {' '.join(outcome.command)} -> {outcome.message}"
        )
