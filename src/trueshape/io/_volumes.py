"""Write and read volumes: NIfTI-1 (RAS affine, qform = sform, mm/s units) and NRRD (LPS space)."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.fileholders import FileHolder
from numpy.typing import NDArray

from trueshape.errors import TrueshapeError, VolumeInputError
from trueshape.geometry import Provenance, Volume, VolumeGeometry
from trueshape.io._frames import lps_to_ras_affine, ras_to_lps_affine
from trueshape.io._gzip import ParallelGzipWriter
from trueshape.io._transaction import OutputTransaction, atomic_path

__all__ = [
    "NIFTI_XFORM_ALIGNED_ANAT",
    "NIFTI_XFORM_SCANNER_ANAT",
    "read_volume",
    "read_volume_geometry",
    "write_nifti",
    "write_nrrd",
    "write_volume",
]

_T = TypeVar("_T")

#: NIfTI qform/sform code 1: scanner-based anatomical coordinates (DICOM patient frame, in RAS).
NIFTI_XFORM_SCANNER_ANAT = 1
#: NIfTI qform/sform code 2: aligned to another scan (still scanner coordinates for a correction).
NIFTI_XFORM_ALIGNED_ANAT = 2


def write_nifti(
    volume: Volume, path: str | os.PathLike[str], *, force: bool = False, transaction: OutputTransaction | None = None
) -> Path:
    """Write ``volume`` as NIfTI-1 (``.nii`` or ``.nii.gz``) with stored values and their scaling.

    The affine is the volume's voxel-to-LPS matrix converted to RAS; qform and sform hold the same
    matrix with the code it was read with (1, scanner anatomical, for everything trueshape makes from
    DICOM). Units are mm; a 4-D volume read from NIfTI keeps its 4th voxel size and time unit, any other
    4-D volume gets step 1 and no time unit (its 4th axis may be echoes as well as time).
    """
    target = Path(path)
    affine = lps_to_ras_affine(volume.geometry.lps_from_ijk)
    image = nib.Nifti1Image(volume.array, affine)
    header = image.header
    recorded = volume.provenance.nifti_xform_code
    code = NIFTI_XFORM_SCANNER_ANAT if recorded is None else int(recorded)
    header.set_qform(affine, code=code)
    header.set_sform(affine, code=code)
    header.set_data_dtype(volume.array.dtype)
    if volume.is_scaled:
        header.set_slope_inter(volume.rescale_slope, volume.rescale_intercept)
    default_step = (1.0, "sec" if volume.array.ndim == 3 else "unknown")
    step, time_unit = volume.provenance.nifti_time_step or default_step
    header.set_xyzt_units("mm", time_unit)
    zooms = list(volume.geometry.spacing) + ([float(step)] if volume.array.ndim == 4 else [])
    header.set_zooms(zooms)
    description = f"trueshape {volume.provenance.distortion_state}".encode()[:79]
    header["descrip"] = description
    with atomic_path(target, force=force, transaction=transaction) as temporary:
        save_nifti_image(image, temporary, compress=target.name.endswith(".gz"))
    return target


def save_nifti_image(image: nib.Nifti1Image, path: Path, *, compress: bool) -> None:
    """Save a nibabel image to ``path``; gzip on all cores at level 1 when ``compress`` (nibabel: 1 core, 6)."""
    if compress:
        with path.open("wb") as raw, ParallelGzipWriter(raw) as compressed:
            image.to_file_map({"image": FileHolder(fileobj=compressed)})
    else:
        nib.save(image, path)


def write_nrrd(
    volume: Volume, path: str | os.PathLike[str], *, force: bool = False, transaction: OutputTransaction | None = None
) -> Path:
    """Write ``volume`` as NRRD (``.nrrd``, gzip) in LPS space; scaled data are written as float32."""
    import nrrd  # deferred: only NRRD output needs it

    target = Path(path)
    data = volume.values() if volume.is_scaled else volume.array
    directions = volume.geometry.lps_from_ijk[:3, :3].T  # one row per axis
    header: dict[str, Any] = {
        "space": "left-posterior-superior",
        "space origin": volume.geometry.origin,
        "encoding": "gzip",
        "kinds": ["domain", "domain", "domain"],
        "space units": ["mm", "mm", "mm"],
    }
    if data.ndim == 4:
        header["kinds"].append("list")
        header["space directions"] = np.vstack([directions, np.full(3, np.nan)])
    else:
        header["space directions"] = directions
    with atomic_path(target, force=force, transaction=transaction) as temporary:
        nrrd.write(str(temporary), np.asarray(data), header, index_order="F")
    return target


def write_volume(
    volume: Volume, path: str | os.PathLike[str], *, force: bool = False, transaction: OutputTransaction | None = None
) -> Path:
    """Write by suffix: ``.nii``/``.nii.gz`` -> NIfTI, ``.nrrd`` -> NRRD (as one output of ``transaction``)."""
    name = str(path)
    if name.endswith((".nii", ".nii.gz")):
        return write_nifti(volume, path, force=force, transaction=transaction)
    if name.endswith(".nrrd"):
        return write_nrrd(volume, path, force=force, transaction=transaction)
    raise TrueshapeError(f"{path}: unknown volume format (use .nii, .nii.gz or .nrrd)")


def read_volume(path: str | os.PathLike[str]) -> Volume:
    """Read a NIfTI or NRRD volume (stored values and their scaling; no sidecar, see ``read_volume_file``).

    Raises
    ------
    VolumeInputError
        The file is missing, truncated, not a 3-D/4-D volume, or not NIfTI/NRRD (the message names it).
    """
    volume = _guarded(str(path), _read_volume)
    if volume.array.dtype.kind not in "iuf":
        raise VolumeInputError(f"{path}: voxel type {volume.array.dtype} is not a real scalar (integer or float)")
    return volume


def read_volume_geometry(path: str | os.PathLike[str]) -> VolumeGeometry:
    """Return the grid of a NIfTI or NRRD volume from its header alone (the voxels are not read).

    Raises
    ------
    VolumeInputError
        As :func:`read_volume`, for what the header shows.
    """
    return _guarded(str(path), _read_geometry)


def _guarded(path: str, reader: Callable[[str], _T]) -> _T:
    """Run ``reader(path)``; what nibabel, pynrrd or the geometry checks raise becomes one error naming the file."""
    try:
        return reader(path)
    except TrueshapeError as error:
        if str(error).startswith(path):
            raise
        raise VolumeInputError(f"{path}: {error}") from None
    except FileNotFoundError:
        raise VolumeInputError(f"{path}: no such file") from None
    except PermissionError as error:
        raise VolumeInputError(f"{path}: cannot be read ({error.strerror})") from None
    except MemoryError:
        raise VolumeInputError(f"{path}: the volume does not fit in this machine's memory") from None
    except (ImageFileError, OSError, EOFError, ValueError, TypeError, KeyError, IndexError, zlib.error) as error:
        # How nibabel and pynrrd report damage (pynrrd's NRRDError is an Exception: see _nrrd_header).
        raise VolumeInputError(f"{path}: cannot read the volume ({type(error).__name__}: {error})") from None


def _nifti_image(path: str) -> tuple[Any, NDArray[np.float64], int]:
    """Load a NIfTI header; return the image, its LPS affine (scanner coordinates if either xform has them), code.

    The sform wins when it is the scanner's (code 1); else a scanner qform does, as ITK and 3D Slicer read
    such a file (nibabel alone would take an "aligned" sform, code 2, and put the field elsewhere).
    """
    image = nib.load(path)
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise VolumeInputError(f"{path}: not a NIfTI-1 or NIfTI-2 image")
    if len(image.shape) not in (3, 4):
        raise VolumeInputError(f"{path}: a {len(image.shape)}-D image; trueshape reads 3-D and 4-D volumes")
    header: Any = image.header
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        raise VolumeInputError(f"{path}: no scanner coordinates (sform_code and qform_code are 0)")
    spatial_unit = header.get_xyzt_units()[0]
    if spatial_unit not in ("mm", "unknown"):
        raise VolumeInputError(f"{path}: spatial unit {spatial_unit!r}; trueshape reads millimetres")
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    if sform_code != NIFTI_XFORM_SCANNER_ANAT and qform_code == NIFTI_XFORM_SCANNER_ANAT:
        return image, ras_to_lps_affine(header.get_qform()), qform_code
    # nibabel takes the sform when its code is set, else the qform: keep the code of the one used.
    return image, ras_to_lps_affine(image.affine), sform_code or qform_code


def _nrrd_matrix(path: str, header: dict[str, Any], ndim: int) -> NDArray[np.float64]:
    """Check a NRRD header (3 or 4 axes, spatial first, LPS) and return its voxel-to-LPS matrix."""
    if ndim not in (3, 4) or "space directions" not in header or "space origin" not in header:
        raise VolumeInputError(f"{path}: a NRRD volume needs 3 or 4 axes, space directions and space origin")
    kinds = [str(kind).lower() for kind in header.get("kinds", ["domain"] * ndim)]
    if any(kind not in ("domain", "space") for kind in kinds[:3]):
        raise VolumeInputError(f"{path}: NRRD axes {kinds}: the first three must be spatial (domain or space)")
    if header.get("space") not in ("left-posterior-superior", "LPS"):
        raise VolumeInputError(f"{path}: NRRD space {header.get('space')!r} is not LPS")
    units = [str(unit).strip().lower() for unit in header.get("space units", [])]
    if any(unit not in _MILLIMETRE_SPELLINGS for unit in units):
        raise VolumeInputError(f"{path}: NRRD space units {units}; trueshape reads millimetres")
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(header["space directions"], dtype=np.float64)[:3].T
    matrix[:3, 3] = np.asarray(header["space origin"], dtype=np.float64)
    return matrix


_MILLIMETRE_SPELLINGS = frozenset({"", "mm", "millimeter", "millimeters", "millimetre", "millimetres"})


def _check_size(path: str, shape: Any, itemsize: int, data_offset: int | None) -> None:
    """Refuse a header whose voxels cannot be there (an uncompressed file too short) or cannot fit in memory."""
    voxels = float(np.prod([float(n) for n in shape]))
    if voxels == 0:
        raise VolumeInputError(f"{path}: the header gives an empty grid {tuple(int(n) for n in shape)}")
    needed = voxels * itemsize
    if data_offset is not None:
        present = os.path.getsize(path) - data_offset
        if needed > present:
            raise VolumeInputError(
                f"{path}: truncated: its header ({' x '.join(str(int(n)) for n in shape)} voxels) "
                f"needs {needed:.0f} bytes of data, the file holds {max(present, 0)}"
            )
    memory = physical_memory()
    if memory and needed > memory:
        raise VolumeInputError(
            f"{path}: its {' x '.join(str(int(n)) for n in shape)} voxels need "
            f"{needed / 2**30:.1f} GiB, more than this machine's {memory / 2**30:.1f} GiB of memory"
        )


def physical_memory() -> int:
    """Bytes of RAM (0 when the platform cannot say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX platforms
        return 0


def _read_volume(path: str) -> Volume:
    if path.lower().endswith((".nii", ".nii.gz")):
        image, affine, code = _nifti_image(path)
        _check_size(
            path,
            image.shape,
            image.get_data_dtype().itemsize,
            None if path.lower().endswith(".gz") else int(image.dataobj.offset),
        )
        proxy: Any = image.dataobj  # nibabel's ArrayProxy (scaling kept apart from stored values)
        slope, intercept = proxy.slope, proxy.inter
        array = np.asanyarray(proxy.get_unscaled())
        scaled = bool(np.isfinite(slope) and np.isfinite(intercept) and (slope != 1 or intercept != 0))
        time_step = (float(image.header.get_zooms()[3]), image.header.get_xyzt_units()[1]) if array.ndim == 4 else None
        return Volume(
            array,
            VolumeGeometry(array.shape[:3], affine),
            Provenance(nifti_xform_code=code, nifti_time_step=time_step),
            float(slope) if scaled else 1.0,
            float(intercept) if scaled else 0.0,
        )
    if path.lower().endswith(".nrrd"):
        import nrrd

        try:
            data, header = nrrd.read(path, index_order="F")
        except nrrd.NRRDError as error:
            raise VolumeInputError(f"{path}: cannot read the NRRD volume ({error})") from None
        return Volume(data, VolumeGeometry(data.shape[:3], _nrrd_matrix(path, header, data.ndim)), Provenance())
    raise VolumeInputError(f"{path}: unknown volume format (use .nii, .nii.gz or .nrrd)")


def _read_geometry(path: str) -> VolumeGeometry:
    if path.lower().endswith((".nii", ".nii.gz")):
        image, affine, _ = _nifti_image(path)
        shape = image.shape
        return VolumeGeometry((int(shape[0]), int(shape[1]), int(shape[2])), affine)
    if path.lower().endswith(".nrrd"):
        import nrrd

        try:
            header = nrrd.read_header(path)
        except nrrd.NRRDError as error:
            raise VolumeInputError(f"{path}: cannot read the NRRD header ({error})") from None
        sizes = [int(n) for n in header["sizes"]]
        return VolumeGeometry((sizes[0], sizes[1], sizes[2]), _nrrd_matrix(path, header, len(sizes)))
    raise VolumeInputError(f"{path}: unknown volume format (use .nii, .nii.gz or .nrrd)")
