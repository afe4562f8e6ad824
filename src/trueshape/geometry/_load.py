"""Build a :class:`Volume` from a :class:`Stack`: read its pixels and place them on its grid."""

from __future__ import annotations

import numpy as np

from trueshape.dicom import read_pixels
from trueshape.geometry._series import Stack
from trueshape.geometry._volume import Volume

__all__ = ["load_stack"]


def load_stack(stack: Stack) -> Volume:
    """Read a stack's pixels into a Volume indexed ``[i, j, k(, t)]``.

    Stored values are kept (with a uniform RescaleSlope/Intercept on the Volume) when every frame shares
    one rescale; otherwise physical values are returned as float32. Resampled stacks (policy
    ``resample``) are interpolated onto their regular grid here.

    Raises
    ------
    DicomInputError
        When a file's pixel data is missing, truncated or corrupt.
    """
    layout = stack.layout
    volumes = layout.volume_count
    # Volume-major order makes the transposed [i, j, k, t] view Fortran-contiguous (NIfTI's order): no copy.
    frames = [layout.slices[k][t] for t in range(volumes) for k in range(len(layout.slices))]
    stored = read_pixels(frames)
    rows, columns = stored.shape[1:]
    slopes = {f.rescale_slope for f in frames}
    intercepts = {f.rescale_intercept for f in frames}
    if len(slopes) == 1 and len(intercepts) == 1:
        slope, intercept = slopes.pop(), intercepts.pop()
    else:
        scale = np.array([f.rescale_slope for f in frames], dtype=np.float32)[:, None, None]
        offset = np.array([f.rescale_intercept for f in frames], dtype=np.float32)[:, None, None]
        stored = stored.astype(np.float32) * scale + offset
        slope, intercept = 1.0, 0.0
    array = stored.reshape(volumes, len(layout.slices), rows, columns).transpose(3, 2, 1, 0)
    if volumes == 1:
        array = array[..., 0]
    provenance = stack.provenance()
    volume = Volume(array, layout.source_geometry, provenance, slope, intercept)
    if layout.resampled:
        assert layout.acquisition is not None
        volume = Volume(layout.acquisition.resample_to(volume.values(), layout.geometry), layout.geometry, provenance)
    return volume
