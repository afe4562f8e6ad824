"""Remove gradient-nonlinearity distortion: the request, the pipeline, resampling and the exported field.

The layers below it give the physics (``gnl``), the volumes (``geometry``) and the files (``io``); this
package applies a residual field to a Volume (:func:`correct_volume`) and, for a whole request
(:class:`CorrectionRequest`), writes the corrected volume, its field and sidecar (:func:`correct_stack`,
:func:`correct_volume_file`). ``trueshape.correct`` is the public entry point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trueshape._lazy import lazy_names

if TYPE_CHECKING:
    from trueshape.correction._field import (
        DEFAULT_FIELD_SPACING_MM,
        FIELD_PADDING_NODES,
        correction_interpolant,
        exported_field_shape,
        residual_displacement_field,
        sampled_normal_range,
    )
    from trueshape.correction._kernel import compiled_kernel_disabled, has_compiled_kernel
    from trueshape.correction._object import (
        LATTICE_POINTS_PER_AXIS,
        OBJECT_LEVEL,
        ObjectDisplacement,
        object_displacement,
        object_points,
    )
    from trueshape.correction._pipeline import (
        OUTSIDE_WARNING_FRACTION,
        correct_argument,
        correct_stack,
        correct_volume_file,
        write_correction,
    )
    from trueshape.correction._predict import (
        PointDisplacement,
        StackPrediction,
        StatePrediction,
        predict_stacks,
        predict_volume,
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

#: Public name -> its module (loaded on first use: importing the package costs nothing until then).
_ORIGINS = {
    "CorrectOutput": "trueshape.correction._result",
    "CorrectionDiagnostics": "trueshape.correction._result",
    "CorrectionMode": "trueshape.correction._result",
    "CorrectionRequest": "trueshape.correction._request",
    "CorrectionResult": "trueshape.correction._result",
    "DEFAULT_FIELD_SPACING_MM": "trueshape.correction._field",
    "FIELD_PADDING_NODES": "trueshape.correction._field",
    "LATTICE_POINTS_PER_AXIS": "trueshape.correction._object",
    "MAX_ISOCENTRE_OFFSET_MM": "trueshape.correction._request",
    "MAX_JACOBIAN_DETERMINANT": "trueshape.correction._resample",
    "MAX_PLAUSIBLE_DISPLACEMENT_MM": "trueshape.correction._resample",
    "NORMAL_PARALLEL_TOLERANCE": "trueshape.correction._resample",
    "OBJECT_LEVEL": "trueshape.correction._object",
    "OUTSIDE_WARNING_FRACTION": "trueshape.correction._pipeline",
    "ObjectDisplacement": "trueshape.correction._object",
    "PointDisplacement": "trueshape.correction._predict",
    "REQUESTED_MODES": "trueshape.correction._result",
    "SLAB_VOXELS": "trueshape.correction._resample",
    "StackPrediction": "trueshape.correction._predict",
    "StatePrediction": "trueshape.correction._predict",
    "compiled_kernel_disabled": "trueshape.correction._kernel",
    "correct_argument": "trueshape.correction._pipeline",
    "correct_stack": "trueshape.correction._pipeline",
    "correct_volume": "trueshape.correction._resample",
    "correct_volume_file": "trueshape.correction._pipeline",
    "correction_interpolant": "trueshape.correction._field",
    "exported_field_shape": "trueshape.correction._field",
    "has_compiled_kernel": "trueshape.correction._kernel",
    "object_displacement": "trueshape.correction._object",
    "object_points": "trueshape.correction._object",
    "predict_stacks": "trueshape.correction._predict",
    "predict_volume": "trueshape.correction._predict",
    "residual_displacement_field": "trueshape.correction._field",
    "sampled_normal_range": "trueshape.correction._field",
    "write_correction": "trueshape.correction._pipeline",
}

__all__ = [
    "DEFAULT_FIELD_SPACING_MM",
    "FIELD_PADDING_NODES",
    "LATTICE_POINTS_PER_AXIS",
    "MAX_ISOCENTRE_OFFSET_MM",
    "MAX_JACOBIAN_DETERMINANT",
    "MAX_PLAUSIBLE_DISPLACEMENT_MM",
    "NORMAL_PARALLEL_TOLERANCE",
    "OBJECT_LEVEL",
    "OUTSIDE_WARNING_FRACTION",
    "REQUESTED_MODES",
    "SLAB_VOXELS",
    "CorrectOutput",
    "CorrectionDiagnostics",
    "CorrectionMode",
    "CorrectionRequest",
    "CorrectionResult",
    "ObjectDisplacement",
    "PointDisplacement",
    "StackPrediction",
    "StatePrediction",
    "compiled_kernel_disabled",
    "correct_argument",
    "correct_stack",
    "correct_volume",
    "correct_volume_file",
    "correction_interpolant",
    "exported_field_shape",
    "has_compiled_kernel",
    "object_displacement",
    "object_points",
    "predict_stacks",
    "predict_volume",
    "residual_displacement_field",
    "sampled_normal_range",
    "write_correction",
]

__getattr__, __dir__ = lazy_names(__name__, _ORIGINS, namespace=globals())
