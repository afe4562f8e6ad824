"""What the user asked of a correction, checked once for either kind of input (a DICOM series or a volume file).

A :class:`CorrectionRequest` holds the coil and the user's choices as enums (mode, distortion state, patient
position, output format), a finite isocentre and the ``--like`` grid; it names the outputs and refuses,
before any work, what cannot be written (an existing output without ``force``, a full disk, a grid that
does not fit in memory or misses the volume).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trueshape.correction._field import exported_field_shape
from trueshape.correction._result import REQUESTED_MODES, CorrectionMode
from trueshape.dicom import DistortionState, PatientPosition, PhilipsScaling, scan
from trueshape.errors import TrueshapeError
from trueshape.geometry import Volume, VolumeGeometry, group_series, one_stack, parse_series_argument
from trueshape.gnl import FieldSource
from trueshape.io import OutputFormat, check_free_space, check_writable, is_volume_file, physical_memory
from trueshape.settings import parse_choice

__all__ = ["MAX_ISOCENTRE_OFFSET_MM", "CorrectionRequest", "grid_of"]

#: Farther than this from the patient origin an isocentre (mm) is beyond any table's travel: a unit mistake.
MAX_ISOCENTRE_OFFSET_MM = 5000.0


@dataclass(frozen=True)
class CorrectionRequest:
    """What the user asked of a correction, validated once for either kind of input (see :meth:`build`).

    Parameters
    ----------
    coil : FieldSource
        The coil's coefficients (from ``--coef`` or ``--model``).
    coefficient_file : path or None
        Where they were read (named in the outputs when the coil has no id).
    mode : CorrectionMode
        AUTO, FULL or THROUGH_PLANE.
    intensity_correction : bool
        Multiply by the Jacobian determinant.
    distortion_state, patient_position : enum or None
        Override what the headers or the sidecar say (``--state``, ``--patient-position``).
    isocentre_lps : tuple of 3 float or None
        Override the isocentre, mm LPS (``--isocentre``).
    output_format : OutputFormat
        The corrected volume's format.
    force : bool
        Replace existing outputs.
    output_geometry : VolumeGeometry or None
        The grid of ``like``, when the corrected volume goes on another series' grid.
    like : str or None
        The ``--like`` volume file or series, as given.
    philips_scaling : PhilipsScaling or None
        ``--philips-scaling``: which values of a Philips DICOM series are corrected (None: display values).
    """

    coil: FieldSource
    coefficient_file: str | os.PathLike[str] | None
    mode: CorrectionMode
    intensity_correction: bool
    distortion_state: DistortionState | None
    patient_position: PatientPosition | None
    isocentre_lps: tuple[float, float, float] | None
    output_format: OutputFormat
    force: bool
    output_geometry: VolumeGeometry | None = None
    like: str | None = None
    philips_scaling: PhilipsScaling | None = None

    @classmethod
    def build(
        cls,
        coil: FieldSource,
        *,
        coefficient_file: str | os.PathLike[str] | None = None,
        mode: CorrectionMode | str = CorrectionMode.AUTO,
        intensity_correction: bool = True,
        distortion_state: DistortionState | str | None = None,
        patient_position: PatientPosition | str | None = None,
        isocentre_lps: tuple[float, float, float] | None = None,
        fmt: OutputFormat | str = OutputFormat.NIFTI,
        force: bool = False,
        like: str | os.PathLike[str] | None = None,
        philips_scaling: PhilipsScaling | str | None = None,
    ) -> CorrectionRequest:
        """Check the user's choices (enum names in any case, a finite isocentre) and keep them with the coil.

        ``like`` names a volume file or DICOM series whose grid the corrected volume is written on.

        Raises
        ------
        TrueshapeError
            A choice names no member (the message lists them), or the isocentre is not three finite
            millimetre values within :data:`MAX_ISOCENTRE_OFFSET_MM` of the origin.

        Examples
        --------
        >>> from trueshape.gnl import SYN_AS
        >>> request = CorrectionRequest.build(SYN_AS, distortion_state="dis2d", fmt="NRRD")
        >>> request.distortion_state, request.output_format
        (<DistortionState.IN_PLANE_2D: 'DIS2D'>, <OutputFormat.NRRD: 'nrrd'>)
        """
        isocentre = None if isocentre_lps is None else _checked_isocentre(isocentre_lps)
        unrequested = frozenset(CorrectionMode) - frozenset(REQUESTED_MODES)
        requested = parse_choice(CorrectionMode, mode, "--mode", unlisted=unrequested)
        if requested is CorrectionMode.NONE:
            raise TrueshapeError(
                "--mode none is what a correction reports when nothing is left to correct; "
                "ask for auto, full or through-plane"
            )
        return cls(
            coil,
            coefficient_file,
            requested,
            intensity_correction,
            parse_choice(DistortionState, distortion_state, "--state"),
            parse_choice(PatientPosition, patient_position, "--patient-position"),
            isocentre,
            parse_choice(OutputFormat, fmt, "--format"),
            force,
            None if like is None else grid_of(like),
            None if like is None else str(like),
            parse_choice(PhilipsScaling, philips_scaling, "--philips-scaling"),
        )

    def settles(self, disagreement: str) -> bool:
        """Whether the caller said what slices disagreeing on ``disagreement`` (FRAMES_DISAGREE) leave open.

        ``patient_position`` is settled by ``--patient-position``, ``table_position`` by ``--isocentre``.
        """
        given = {"patient_position": self.patient_position, "table_position": self.isocentre_lps}
        return given.get(disagreement) is not None

    def targets(self, out: str | os.PathLike[str], label: str) -> list[Path]:
        """Output paths for ``label``, checked writable before any work is done.

        The corrected volume, the field as a NIfTI vector image, the ITK transform and the JSON sidecar, in
        that order.
        """
        base = Path(out) / label
        # Uncompressed output stays uncompressed: a float field deflates slowly and poorly.
        field_suffix = ".nii" if self.output_format is OutputFormat.NII else ".nii.gz"
        targets = [
            base.with_name(base.name + suffix)
            for suffix in (
                "_corrected" + self.output_format.suffix,
                "_residual_field" + field_suffix,
                "_residual.h5",
                "_corrected.json",
            )
        ]
        for target in targets:  # refuse before any work, so a run never leaves a mix of new and old files
            check_writable(target, force=self.force)
        return targets

    def output_names(self, label: str) -> set[str]:
        """Every name a correction of ``label`` may write, in any format (what an earlier run may have left)."""
        return {label + "_corrected" + f.suffix for f in OutputFormat} | {
            label + "_residual_field.nii",
            label + "_residual_field.nii.gz",
            label + "_residual.h5",
        }

    def check_room_for_outputs(self, volume: Volume, folder: Path) -> None:
        """Refuse before the work when the outputs cannot fit on the disk (uncompressed sizes: an upper bound)."""
        grid = self.output_geometry or volume.geometry
        volumes = volume.array.shape[3] if volume.array.ndim == 4 else 1
        voxel_bytes = 2 if self.output_format is OutputFormat.DICOM else 4
        nodes = float(np.prod(exported_field_shape(grid), dtype=np.float64))
        check_free_space(
            folder, voxel_bytes * volumes * float(np.prod(grid.shape, dtype=np.float64)) + nodes * 3 * (4 + 8)
        )  # the field as float32 NIfTI and float64 HDF5

    def check_output_grid(self, volume: Volume, label: str) -> None:
        """Refuse a ``--like`` grid that misses the volume, or any output that cannot fit in memory."""
        grid = self.output_geometry or volume.geometry
        if self.output_geometry is not None and not _boxes_overlap(grid, volume.geometry):
            raise TrueshapeError(
                f"{self.like}: its grid does not overlap {label} (the corrected volume would be "
                "empty): give a series of the same session and frame of reference"
            )
        volumes = volume.array.shape[3] if volume.array.ndim == 4 else 1
        # The corrected volume (float32) and the input copy the resampler works on.
        needed = (
            4.0
            * volumes
            * (float(np.prod(grid.shape, dtype=np.float64)) + float(np.prod(volume.geometry.shape, dtype=np.float64)))
        )
        memory = physical_memory()
        if memory and needed > memory:
            raise TrueshapeError(
                f"{self.like or label}: the corrected volume on a {' x '.join(map(str, grid.shape))} "
                f"grid needs {needed / 2**30:.1f} GiB, more than this machine's "
                f"{memory / 2**30:.1f} GiB of memory"
            )


def _checked_isocentre(isocentre_lps: tuple[float, float, float]) -> tuple[float, float, float]:
    """Return the isocentre as three floats, refused unless finite and within reach of a table (mm, LPS)."""
    values = tuple(float(v) for v in isocentre_lps)
    if len(values) != 3 or not all(np.isfinite(values)):
        raise TrueshapeError(f"--isocentre needs three finite numbers (LPS mm), got {isocentre_lps!r}")
    if max(abs(v) for v in values) > MAX_ISOCENTRE_OFFSET_MM:
        raise TrueshapeError(
            f"--isocentre {values} is more than {MAX_ISOCENTRE_OFFSET_MM:.0f} mm from the "
            "patient origin: no scanner table moves that far (the unit is mm)"
        )
    return values[0], values[1], values[2]


def grid_of(like: str | os.PathLike[str]) -> VolumeGeometry:
    """Return the 3-D grid of a volume file or of one DICOM stack (``FOLDER#<series>[:stack]``), no pixels."""
    from trueshape.io import read_volume_geometry

    if is_volume_file(like):
        return read_volume_geometry(like)
    path, series_key, stack_index = parse_series_argument(like)
    return one_stack(group_series(scan(path)), path, series_key, stack_index).geometry


def _boxes_overlap(first: VolumeGeometry, second: VolumeGeometry) -> bool:
    """Whether the LPS bounding boxes of two grids' voxel centres (half a voxel wider) intersect."""
    boxes = []
    for grid in (first, second):
        corners = np.array(list(itertools.product(*((-0.5, size - 0.5) for size in grid.shape))))
        points = grid.index_to_lps(corners)
        boxes.append((points.min(axis=0), points.max(axis=0)))
    (low_a, high_a), (low_b, high_b) = boxes
    return bool(np.all(low_a < high_b) and np.all(low_b < high_a))
