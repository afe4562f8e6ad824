"""Remove gradient-nonlinearity distortion: the request, the pipeline, resampling and the exported field.

The layers below it give the physics (``gnl``), the volumes (``geometry``) and the files (``io``); this
package applies a residual field to a Volume (:func:`correct_volume`) and, for a whole request
(:class:`CorrectionRequest`), writes the corrected volume, its field and sidecar (:func:`correct_stack`,
:func:`correct_volume_file`). ``trueshape.correct`` is the public entry point.
"""

from trueshape.correction._field import (
    DEFAULT_FIELD_SPACING_MM,
    FIELD_PADDING_NODES,
    correction_interpolant,
    exported_field_shape,
    residual_displacement_field,
    sampled_normal_range,
)
from trueshape.correction._kernel import compiled_kernel_disabled, has_compiled_kernel
from trueshape.correction._pipeline import (
    OUTSIDE_WARNING_FRACTION,
    correct_stack,
    correct_volume_file,
    write_correction,
)
from trueshape.correction._request import MAX_ISOCENTRE_OFFSET_MM, CorrectionRequest
from trueshape.correction._resample import (
    MAX_JACOBIAN_DETERMINANT,
    MAX_PLAUSIBLE_DISPLACEMENT_MM,
    NORMAL_PARALLEL_TOLERANCE,
    SLAB_VOXELS,
    correct_volume,
)
from trueshape.correction._result import (
    REQUESTED_MODES,
    CorrectionDiagnostics,
    CorrectionMode,
    CorrectionResult,
    CorrectOutput,
)

__all__ = [
    "DEFAULT_FIELD_SPACING_MM",
    "FIELD_PADDING_NODES",
    "MAX_ISOCENTRE_OFFSET_MM",
    "MAX_JACOBIAN_DETERMINANT",
    "MAX_PLAUSIBLE_DISPLACEMENT_MM",
    "NORMAL_PARALLEL_TOLERANCE",
    "OUTSIDE_WARNING_FRACTION",
    "REQUESTED_MODES",
    "SLAB_VOXELS",
    "CorrectOutput",
    "CorrectionDiagnostics",
    "CorrectionMode",
    "CorrectionRequest",
    "CorrectionResult",
    "compiled_kernel_disabled",
    "correct_stack",
    "correct_volume",
    "correct_volume_file",
    "correction_interpolant",
    "exported_field_shape",
    "has_compiled_kernel",
    "residual_displacement_field",
    "sampled_normal_range",
    "write_correction",
]
