"""Build a :class:`Volume` from a :class:`Stack`: read its pixels and place them on its grid."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from trueshape.dicom import PhilipsScaling, ValueScaling, read_pixels
from trueshape.errors import DicomInputError
from trueshape.geometry._series import Stack
from trueshape.geometry._volume import Volume

__all__ = ["load_stack"]


def load_stack(stack: Stack, *, philips_scaling: PhilipsScaling | str = PhilipsScaling.DISPLAY) -> Volume:
    """Read a stack's pixels into a Volume indexed ``[i, j, k(, t)]``.

    Stored values are kept (with a uniform slope and intercept on the Volume) when every frame shares
    one scaling; otherwise the values are returned as float32. ``philips_scaling`` chooses DICOM display values
    (``stored * RescaleSlope + RescaleIntercept``, the default) or, for images with Philips' scale slope
    (2005,100E), Philips' precise values (as dcm2niix writes by default); the provenance records which.
    Resampled stacks (policy ``resample``) are interpolated onto their regular grid here.

    Raises
    ------
    DicomInputError
        When a file's pixel data is missing, truncated or corrupt, or its scaling would not give finite values.
    """
    layout = stack.layout
    mode = PhilipsScaling(philips_scaling)
    volumes = layout.volume_count
    # Volume-major order makes the transposed [i, j, k, t] view Fortran-contiguous (NIfTI's order): no copy.
    frames = [layout.slices[k][t] for t in range(volumes) for k in range(len(layout.slices))]
    scalings = [
        ValueScaling.for_frame(f.rescale_slope, f.rescale_intercept, f.philips_scale_slope, mode) for f in frames
    ]
    for frame, scaling in zip(frames, scalings, strict=True):
        if not scaling.usable:
            raise DicomInputError(
                f"{frame.where}: {scaling.applied.value} values would not be finite (slope {scaling.slope:g}, "
                f"intercept {scaling.intercept:g} from RescaleSlope {frame.rescale_slope:g} and the Philips scale "
                f"slope (2005,100E) {frame.philips_scale_slope})"
            )
    stored = read_pixels(frames)
    rows, columns = stored.shape[1:]
    varies = len({(s.slope, s.intercept) for s in scalings}) > 1
    slope, intercept = scalings[0].slope, scalings[0].intercept
    if varies:
        scale = np.array([s.slope for s in scalings], dtype=np.float32)[:, None, None]
        offset = np.array([s.intercept for s in scalings], dtype=np.float32)[:, None, None]
        stored = stored.astype(np.float32) * scale + offset
        slope, intercept = 1.0, 0.0
    array = stored.reshape(volumes, len(layout.slices), rows, columns).transpose(3, 2, 1, 0)
    if volumes == 1:
        array = array[..., 0]
    provenance = replace(stack.provenance(), value_scaling=scalings[0], value_scaling_varies=varies)
    volume = Volume(array, layout.source_geometry, provenance, slope, intercept)
    if layout.resampled:
        assert layout.acquisition is not None
        volume = Volume(layout.acquisition.resample_to(volume.values(), layout.geometry), layout.geometry, provenance)
    return volume
