"""Learn the scanner's distortion field from images: one session's pair, several sessions pooled, a phantom."""

from trueshape.estimation._field_model import AXIS_WEIGHT_TOLERANCE, FieldModel, SeriesView
from trueshape.estimation._freeform import FREE_FORM_PRIOR_SD_MM, FreeFormBasis, FreeFormField
from trueshape.estimation._identify import DETERMINED_RESOLUTION, Identifiability, TermEstimate
from trueshape.estimation._inputs import PreparedSeries, check_pair, prepare_argument, prepare_stack, prepare_volume
from trueshape.estimation._intensity import IntensityMap, Similarity
from trueshape.estimation._learn import (
    LearnOutput,
    ModelFit,
    PairChoice,
    choose_pair,
    fit_scanner_model,
    learn_sessions,
    read_session_estimate,
)
from trueshape.estimation._levels import DEFAULT_LEVELS, Level, SeriesImage
from trueshape.estimation._markers import MarkerFit, detect_markers, fit_markers, match_markers, read_marker_csv
from trueshape.estimation._motion import RigidMotion
from trueshape.estimation._pairwise import FitOptions, PairFit, fit_pair
from trueshape.estimation._pipeline import (
    ESTIMATE_FILE,
    MODEL_FILE,
    EstimateOptions,
    EstimateOutput,
    estimate_arguments,
    estimate_pair,
    estimate_phantom,
)
from trueshape.estimation._pool import (
    COVERAGE_MARGIN_MM,
    DISAGREEMENT_MM,
    CrossValidation,
    PooledModel,
    SessionEstimate,
    coverage_box,
    model_from_names,
    pool_sessions,
)

__all__ = [
    "AXIS_WEIGHT_TOLERANCE",
    "COVERAGE_MARGIN_MM",
    "DEFAULT_LEVELS",
    "DETERMINED_RESOLUTION",
    "DISAGREEMENT_MM",
    "ESTIMATE_FILE",
    "FREE_FORM_PRIOR_SD_MM",
    "MODEL_FILE",
    "CrossValidation",
    "EstimateOptions",
    "EstimateOutput",
    "FieldModel",
    "FitOptions",
    "FreeFormBasis",
    "FreeFormField",
    "Identifiability",
    "IntensityMap",
    "LearnOutput",
    "Level",
    "MarkerFit",
    "ModelFit",
    "PairChoice",
    "PairFit",
    "PooledModel",
    "PreparedSeries",
    "RigidMotion",
    "SeriesImage",
    "SeriesView",
    "SessionEstimate",
    "Similarity",
    "TermEstimate",
    "check_pair",
    "choose_pair",
    "coverage_box",
    "detect_markers",
    "estimate_arguments",
    "estimate_pair",
    "estimate_phantom",
    "fit_markers",
    "fit_pair",
    "fit_scanner_model",
    "learn_sessions",
    "match_markers",
    "model_from_names",
    "pool_sessions",
    "prepare_argument",
    "prepare_stack",
    "prepare_volume",
    "read_marker_csv",
    "read_session_estimate",
]
