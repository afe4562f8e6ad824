"""Gradient non-linearity physics: solid harmonics, coefficient files, frames, residual fields per state."""

from trueshape.gnl._coefficients import AXIS_NAMES, FieldSource, GradientCoefficients, HarmonicTerm, TermKind
from trueshape.gnl._coils import SYN_AS, SYN_AS_R0_MM
from trueshape.gnl._files import (
    COEFFICIENT_SOURCES,
    GRADUNWARP_COEF_NAMES,
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    coil_named_in_header,
    format_siemens_grad,
    read_coefficient_option,
    read_coefficients,
    read_scanner_model,
    read_siemens_coef,
    read_siemens_grad,
    scanner_model_json,
)
from trueshape.gnl._frames import COEFFICIENT_FROM_MAGNET, CoefficientFrame, MagnetFrame
from trueshape.gnl._harmonics import MAX_HARMONIC_ORDER, harmonic_displacement, siemens_normalisation
from trueshape.gnl._interpolate import (
    COARSE_PADDING_NODES,
    DEFAULT_COARSE_SPACING_MM,
    PROBE_POSITIONS_PER_AXIS,
    GridInterpolant,
    SlabUpsampler,
    coarse_nodes,
    cubic_interpolation_matrix,
    max_probe_error,
    probe_lattices,
)
from trueshape.gnl._residual import SLICE_NORMAL_TOLERANCE, ResidualField, residual_projector

__all__ = [
    "AXIS_NAMES",
    "COARSE_PADDING_NODES",
    "COEFFICIENT_FROM_MAGNET",
    "COEFFICIENT_SOURCES",
    "DEFAULT_COARSE_SPACING_MM",
    "GRADUNWARP_COEF_NAMES",
    "MAX_HARMONIC_ORDER",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "PROBE_POSITIONS_PER_AXIS",
    "SLICE_NORMAL_TOLERANCE",
    "SYN_AS",
    "SYN_AS_R0_MM",
    "CoefficientFrame",
    "FieldSource",
    "GradientCoefficients",
    "GridInterpolant",
    "HarmonicTerm",
    "MagnetFrame",
    "ResidualField",
    "SlabUpsampler",
    "TermKind",
    "coarse_nodes",
    "coil_named_in_header",
    "cubic_interpolation_matrix",
    "format_siemens_grad",
    "harmonic_displacement",
    "max_probe_error",
    "probe_lattices",
    "read_coefficient_option",
    "read_coefficients",
    "read_scanner_model",
    "read_siemens_coef",
    "read_siemens_grad",
    "residual_projector",
    "scanner_model_json",
    "siemens_normalisation",
]
