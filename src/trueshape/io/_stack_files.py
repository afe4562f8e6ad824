"""One converted stack on disk: its volume, its JSON sidecar and, when slices are off-grid, their transform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trueshape._version import __version__
from trueshape.dicom import PhilipsScaling
from trueshape.errors import DicomInputError
from trueshape.geometry import Inspection, Stack, apply_validation, load_stack, unreadable_slices
from trueshape.io._formats import OutputFormat
from trueshape.io._gradients import gradient_table_paths, write_gradient_table
from trueshape.io._outputs import check_free_space, obsolete_outputs
from trueshape.io._sidecar import write_json
from trueshape.io._transaction import OutputTransaction, check_writable
from trueshape.io._transforms import write_itk_transform
from trueshape.io._volumes import write_volume
from trueshape.settings import ValidationMode

__all__ = ["convert_stack", "write_stack"]


def convert_stack(
    inspection: Inspection,
    stack: Stack,
    out_dir: Path,
    output_format: OutputFormat,
    *,
    force: bool = False,
    validation: ValidationMode = ValidationMode.WARN,
    philips_scaling: PhilipsScaling | str = PhilipsScaling.DISPLAY,
) -> list[Path]:
    """Write one stack of a converted folder with :func:`write_stack`, or raise saying why it is not written.

    With ``validation`` WARN the geometry findings go into the sidecar; RAISE refuses a stack that has any.

    Raises
    ------
    DicomInputError
        A file that may hold one of its slices, which no other file supplies, could not be read (the message
        names the slice; the caller names the file once).
    GeometryError
        ``validation`` RAISE and the stack has geometry warnings.
    """
    unreadable = unreadable_slices(inspection, stack)
    if unreadable:
        more = f" (and {len(unreadable) - 1} more file(s))" if len(unreadable) > 1 else ""
        raise DicomInputError(
            f"{stack.label}: not written: {unreadable[0].slice_text} is in {unreadable[0].path}{more}, which could "
            "not be read (named above) and no other file supplies"
        )
    apply_validation(stack, ValidationMode.IGNORE if validation is ValidationMode.WARN else validation)
    return write_stack(stack, out_dir, output_format, force=force, philips_scaling=philips_scaling)


def write_stack(
    stack: Stack,
    out_dir: Path,
    output_format: OutputFormat,
    *,
    force: bool = False,
    philips_scaling: PhilipsScaling | str = PhilipsScaling.DISPLAY,
) -> list[Path]:
    """Write ``stack`` as ``<label>`` + the format's suffix, ``<label>.json`` and ``<label>_acquisition.h5``.

    ``philips_scaling`` chooses DICOM display or Philips precise values (:func:`trueshape.geometry.load_stack`);
    the sidecar's ``values`` records the scaling applied. A diffusion series gets ``<label>.bval`` and
    ``<label>.bvec`` too (FSL's convention, as dcm2niix). The acquisition transform is written when the slices
    are kept off their true positions (policy ``warn``). The files appear together or not at all; what an earlier
    run with other options wrote for this stack goes too (a stale acquisition transform beside a resampled volume
    would move the anatomy twice): the files its sidecar names, never an input.

    Raises
    ------
    OutputExistsError
        An output exists and ``force`` is false (nothing is written).
    OutputError
        The folder cannot be written or the disk is too full.

    Examples
    --------
    >>> stack = trueshape.inspect("dicom").stacks[0]                       # doctest: +SKIP
    >>> [p.name for p in write_stack(stack, Path("out"), OutputFormat.NRRD)]  # doctest: +SKIP
    ['3_t1.nrrd', '3_t1.json']
    """
    base = out_dir / stack.label
    volume_path = base.with_name(base.name + output_format.suffix)
    sidecar_path = base.with_name(base.name + ".json")
    transform_path = base.with_name(base.name + "_acquisition.h5")
    off_grid = stack.layout.acquisition is not None and not stack.layout.resampled
    gradients = gradient_table_paths(stack, base)
    targets = [volume_path, sidecar_path, *gradients] + ([transform_path] if off_grid else [])
    suffixes = (*(f.suffix for f in OutputFormat if f.suffix), "_acquisition.h5", ".bval", ".bvec")
    names = {stack.label + suffix for suffix in suffixes}
    obsolete = obsolete_outputs(sidecar_path, names, targets=targets, inputs={Path(f.path) for f in stack.frames})
    for target in targets:  # refuse before writing anything, so a run never leaves a mix of new and old files
        check_writable(target, force=force)
    check_free_space(out_dir, float(np.prod(stack.shape, dtype=np.float64)) * (4 if stack.layout.resampled else 2))
    with OutputTransaction(targets, force=force, obsolete=obsolete) as transaction:
        volume = load_stack(stack, philips_scaling=philips_scaling)
        write_volume(volume, volume_path, transaction=transaction)
        sidecar = stack.to_json()
        sidecar["values"] = volume.provenance.values_json()
        sidecar["volume_file"] = volume_path.name
        if gradients:
            sidecar["diffusion"].update(write_gradient_table(stack, volume.geometry, gradients, transaction))
        if off_grid:
            sidecar.update(_write_acquisition_transform(stack, transform_path, transaction))
        sidecar["outputs"] = [target.name for target in targets]
        sidecar["software"] = {"name": "trueshape", "version": __version__}
        write_json(sidecar, sidecar_path, transaction=transaction)
    return targets


def _write_acquisition_transform(stack: Stack, path: Path, transaction: OutputTransaction) -> dict[str, Any]:
    """Write the stack's true slice positions as an ITK transform; return what the sidecar says of it."""
    assert stack.layout.acquisition is not None
    write_itk_transform(stack.layout.acquisition.resampling_field(), path, transaction=transaction)
    return {
        "acquisition_transform_file": path.name,
        "acquisition_transform": {
            "convention": "ITK resampling (true slice position -> regular grid position), LPS mm",
            "max_slice_offset_mm": stack.layout.acquisition.max_offset_mm,
            "how_to_use": "In 3D Slicer load both files, apply the transform to the volume and harden it; "
            "or run trueshape convert --irregular resample.",
        },
    }
