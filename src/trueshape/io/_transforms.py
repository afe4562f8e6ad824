"""Displacement fields as ITK transforms (.h5 / .tfm) and as NIfTI vector images.

ITK's DisplacementFieldTransform maps an output point p to the input point p + v(p) (LPS, mm): the
resampling convention of :class:`~trueshape.geometry.DisplacementField`, so vectors are written unchanged.
3D Slicer loads the .h5 as a grid transform and ANTs applies it with antsApplyTransforms.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

from trueshape.errors import OutputError
from trueshape.geometry import DisplacementField, VolumeGeometry
from trueshape.io._frames import lps_to_ras_affine
from trueshape.io._transaction import OutputTransaction, atomic_path
from trueshape.io._volumes import save_nifti_image

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = ["field_to_sitk_image", "read_itk_displacement_field", "write_field_nifti", "write_itk_transform"]


def field_to_sitk_image(field: DisplacementField) -> sitk.Image:
    """Return the field as a SimpleITK vector image (float64, LPS geometry)."""
    import SimpleITK as sitk  # deferred: only transform output needs ITK

    vectors = np.ascontiguousarray(np.transpose(field.vectors, (2, 1, 0, 3)), dtype=np.float64)
    image = sitk.GetImageFromArray(vectors, isVector=True)
    image.SetOrigin(tuple(float(v) for v in field.geometry.origin))
    image.SetSpacing(tuple(float(v) for v in field.geometry.spacing))
    image.SetDirection(tuple(float(v) for v in field.geometry.direction.ravel()))
    return image


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """Hold what native code writes to file descriptor 2; the list holds the text after the block.

    HDF5 prints its error stack there (kilobytes of it on a full disk); a failure must stay one line.
    """
    captured: list[str] = []
    # One writer at a time holds fd 2 (it is the process's); without a usable fd 2 there is nothing to hold.
    with _STDERR_LOCK, tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as sink:
        try:
            saved = os.dup(2)
        except OSError:
            yield captured
            return
        failed = True
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(sink.fileno(), 2)
            yield captured
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read())
            if not failed and captured[-1]:  # on success, what anyone wrote meanwhile still reaches stderr
                os.write(2, captured[-1].encode("utf-8", errors="replace"))


#: Serialises the fd 2 swap (and HDF5 writes, which are not safe to run at once).
_STDERR_LOCK = threading.Lock()


def write_itk_transform(
    field: DisplacementField,
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    transaction: OutputTransaction | None = None,
) -> Path:
    """Write an ITK DisplacementFieldTransform (``.h5`` or ``.tfm``) for Slicer, ANTs and SimpleITK."""
    import SimpleITK as sitk

    target = Path(path)
    transform = sitk.DisplacementFieldTransform(field_to_sitk_image(field))
    with atomic_path(target, force=force, transaction=transaction) as temporary:
        try:
            with _stderr_captured() as captured:
                sitk.WriteTransform(transform, str(temporary))
        except RuntimeError as error:  # ITK reports HDF5 failures (a full disk, ...) as RuntimeError
            text = str(error).strip()
            said = text + "\n" + "".join(captured)  # the system's own reason may be in HDF5's error stack
            last = text.splitlines()[-1] if text else "unknown error"
            reason = next(
                (r for r in ("No space left on device", "Permission denied", "Disk quota exceeded") if r in said),
                last.split(": ")[-1][:200],
            )
            raise OutputError(f"{target}: writing the transform failed ({reason})") from None
    return target


def read_itk_displacement_field(path: str | os.PathLike[str]) -> DisplacementField:
    """Read an ITK displacement-field transform file back into a DisplacementField."""
    import SimpleITK as sitk

    transform = sitk.ReadTransform(str(path))
    if transform.GetName() == "CompositeTransform":
        transform = sitk.CompositeTransform(transform).GetNthTransform(0)
    image = sitk.DisplacementFieldTransform(transform).GetDisplacementField()
    vectors = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0, 3)).astype(np.float64)
    geometry = VolumeGeometry.from_components(
        shape=image.GetSize(),
        origin=np.array(image.GetOrigin()),
        spacing=np.array(image.GetSpacing()),
        direction=np.array(image.GetDirection()).reshape(3, 3),
    )
    return DisplacementField(geometry, vectors)


def write_field_nifti(
    field: DisplacementField,
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    transaction: OutputTransaction | None = None,
) -> Path:
    """Write the field as ITK and ANTs write displacement fields: 5-D, intent 1007, LPS components (mm).

    The array is (I, J, K, 1, 3). The grid is stored in RAS as NIfTI requires, but the vectors stay LPS:
    for intent 1007 ITK, ANTs and 3D Slicer read the components as LPS (only intent 1006 would be converted
    from RAS), so this file works as an ANTs warp and agrees with the ``.h5`` transform. nibabel users read
    LPS components.
    """
    target = Path(path)
    vectors = field.vectors[:, :, :, None, :].astype(np.float32)
    image = nib.Nifti1Image(vectors, lps_to_ras_affine(field.geometry.lps_from_ijk))
    image.header.set_intent("vector", name="displacement_mm")
    image.header.set_xyzt_units("mm")
    image.header.set_qform(image.affine, code=1)
    image.header.set_sform(image.affine, code=1)
    with atomic_path(target, force=force, transaction=transaction) as temporary:
        save_nifti_image(image, temporary, compress=target.name.endswith(".gz"))
    return target
