"""Frames -> series -> stacks; sorting, spacing, every geometry check; Volume and the acquisition transform."""

from trueshape.geometry._acquisition import AcquisitionTransform
from trueshape.geometry._affine import apply_affine, lps_from_ijk_matrix, orthonormal_directions
from trueshape.geometry._diagnosis import (
    TYPICAL_DISPLACEMENT_MM,
    Diagnosis,
    NextStep,
    diagnose,
    inspection_json,
    shell_word,
)
from trueshape.geometry._distortion import FAR_FROM_ISOCENTRE_RADIUS_MM, anatomical_axis_name
from trueshape.geometry._field import DisplacementField
from trueshape.geometry._load import load_stack
from trueshape.geometry._selection import (
    GEOMETRY_WARNING_CODES,
    apply_validation,
    describe_empty,
    geometry_problems,
    input_errors,
    input_warnings,
    one_stack,
    parse_series_argument,
    refuse_incomplete,
    restrict,
    select_stacks,
    series_argument,
    unreadable_slices,
)
from trueshape.geometry._series import ORIENTATION_GROUP_TOLERANCE, Inspection, Series, Stack, group_series
from trueshape.geometry._stack import (
    CORNER_TOLERANCE_MM,
    POSITION_TOLERANCE,
    SHEAR_TOLERANCE,
    SPACING_TOLERANCE,
    THICKNESS_TOLERANCE,
    IrregularPolicy,
    StackLayout,
    layout_stack,
)
from trueshape.geometry._statistics import percentile
from trueshape.geometry._volume import Provenance, Volume, VolumeGeometry

__all__ = [
    "CORNER_TOLERANCE_MM",
    "FAR_FROM_ISOCENTRE_RADIUS_MM",
    "GEOMETRY_WARNING_CODES",
    "ORIENTATION_GROUP_TOLERANCE",
    "POSITION_TOLERANCE",
    "SHEAR_TOLERANCE",
    "SPACING_TOLERANCE",
    "THICKNESS_TOLERANCE",
    "TYPICAL_DISPLACEMENT_MM",
    "AcquisitionTransform",
    "Diagnosis",
    "DisplacementField",
    "Inspection",
    "IrregularPolicy",
    "NextStep",
    "Provenance",
    "Series",
    "Stack",
    "StackLayout",
    "Volume",
    "VolumeGeometry",
    "anatomical_axis_name",
    "apply_affine",
    "apply_validation",
    "describe_empty",
    "diagnose",
    "geometry_problems",
    "group_series",
    "input_errors",
    "input_warnings",
    "inspection_json",
    "layout_stack",
    "load_stack",
    "lps_from_ijk_matrix",
    "one_stack",
    "orthonormal_directions",
    "parse_series_argument",
    "percentile",
    "refuse_incomplete",
    "restrict",
    "select_stacks",
    "series_argument",
    "shell_word",
    "unreadable_slices",
]
