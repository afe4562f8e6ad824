"""The residual displacement a series still carries, in patient LPS, given what the scanner corrected.

With ``d`` the coil's displacement and ``n`` the slice normal (LPS unit vector), the residual is
(DESIGN.md section 3): NONE -> ``d``; IN_PLANE_2D -> ``(d . n) n`` (through-plane only); FULL_3D -> 0.
:class:`ResidualField` ties coefficients, the magnet frame (patient position, isocentre) and the state
together and evaluates the residual at patient points, exactly or on a grid (fast path).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from trueshape.dicom.vendor import LPS_FROM_MAGNET, DistortionState, PatientPosition
from trueshape.errors import GeometryError
from trueshape.geometry import Provenance, Volume, VolumeGeometry
from trueshape.gnl._coefficients import FieldSource
from trueshape.gnl._frames import MagnetFrame
from trueshape.gnl._interpolate import DEFAULT_COARSE_SPACING_MM, GridInterpolant

__all__ = ["SLICE_NORMAL_TOLERANCE", "ResidualField", "residual_projector"]

#: Largest accepted deviation of a slice normal's length from 1.
SLICE_NORMAL_TOLERANCE = 1e-3


def residual_projector(state: DistortionState, slice_normal_lps: ArrayLike | None = None) -> NDArray[np.float64]:
    """Return the 3x3 matrix ``P`` with residual = ``P d`` (LPS) for a distortion-correction state.

    Parameters
    ----------
    state : DistortionState
        What the scanner corrected. UNKNOWN is refused: state it explicitly.
    slice_normal_lps : array_like, shape (3,), optional
        Unit slice normal, LPS (needed for IN_PLANE_2D).

    Returns
    -------
    ndarray, shape (3, 3)
        Identity (NONE), ``n n^T`` (IN_PLANE_2D) or zero (FULL_3D).

    Examples
    --------
    >>> residual_projector(DistortionState.IN_PLANE_2D, [0.0, 1.0, 0.0])
    array([[0., 0., 0.],
           [0., 1., 0.],
           [0., 0., 0.]])
    """
    state = DistortionState(state)
    if state is DistortionState.NONE:
        return np.eye(3)
    if state is DistortionState.FULL_3D:
        return np.zeros((3, 3))
    if state is DistortionState.IN_PLANE_2D:
        if slice_normal_lps is None:
            raise GeometryError("an in-plane (DIS2D) corrected series needs its slice normal to know its residual")
        normal = _unit_normal(slice_normal_lps)
        return np.asarray(np.outer(normal, normal), dtype=np.float64)
    raise GeometryError(
        "distortion-correction state UNKNOWN (no ND/DIS2D/DIS3D marker in ImageType (0008,0008) or the "
        "vendor private tags): state it explicitly"
    )


def _isocentre(
    provenance: Provenance, position: PatientPosition, *, position_given: bool, given: ArrayLike | None
) -> tuple[NDArray[np.float64], tuple[str, str]]:
    """Return the isocentre (mm, LPS) and how it is known: ("given" | "read" | "assumed", the sentence).

    A patient position given with a recorded table offset moves the isocentre with it (the offset is in magnet
    axes; the position rotates it into the patient frame).
    """
    if given is not None:
        return np.asarray(given, dtype=np.float64), ("given", "isocentre given by the caller")
    if position_given and provenance.table_offset_mm is not None:
        offset = np.asarray(provenance.table_offset_mm, dtype=np.float64)
        said = (
            f"isocentre: table offset {[round(float(v), 3) for v in offset]} mm from "
            f"{provenance.table_source or 'the headers'}, rotated for {position.value}"
        )
        return LPS_FROM_MAGNET[position] @ offset, ("read", said)
    iso = np.asarray(provenance.isocentre_lps, dtype=np.float64)
    if provenance.isocentre_source:
        return iso, ("read", f"isocentre: {provenance.isocentre_source}")
    rounded = [round(float(v), 3) for v in iso]
    return iso, ("assumed", f"isocentre not recorded: assumed at LPS {rounded} mm (no table offset)")


def _unit_normal(slice_normal_lps: ArrayLike) -> NDArray[np.float64]:
    normal = np.asarray(slice_normal_lps, dtype=np.float64).reshape(-1)
    length = float(np.linalg.norm(normal)) if normal.shape == (3,) else float("nan")
    if not abs(length - 1.0) <= SLICE_NORMAL_TOLERANCE:
        raise GeometryError(
            f"slice normal {normal.tolist()} is not a unit vector (length {length:.6g}, tolerance "
            f"{SLICE_NORMAL_TOLERANCE})"
        )
    return np.asarray(normal / length, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class ResidualField:
    """The residual displacement field of one series, in patient LPS.

    Parameters
    ----------
    coefficients : FieldSource
        The gradient coil.
    magnet_frame : MagnetFrame
        Patient position and isocentre (LPS, mm) of the series.
    distortion_state : DistortionState
        What the scanner already corrected (not UNKNOWN).
    slice_normal_lps : ndarray, shape (3,), or None
        Unit slice normal, LPS (required for IN_PLANE_2D).
    assumptions : tuple of str
        What was assumed to build the field because nothing recorded it (said in reports).
    read_from_headers : tuple of str
        The facts behind the field read from the headers (or a volume's sidecar), each with its source.
    given : tuple of str
        The facts the caller gave, overriding the headers.

    Examples
    --------
    >>> from trueshape.gnl import SYN_AS
    >>> residual = ResidualField(SYN_AS, MagnetFrame(), DistortionState.NONE)
    >>> residual.displacement_lps(np.array([0.0, 0.0, 100.0])).round(3)
    array([ 0.   ,  0.   , -1.353])
    """

    coefficients: FieldSource
    magnet_frame: MagnetFrame = field(default_factory=MagnetFrame)
    distortion_state: DistortionState = DistortionState.NONE
    slice_normal_lps: NDArray[np.float64] | None = None
    assumptions: tuple[str, ...] = ()
    read_from_headers: tuple[str, ...] = ()
    given: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "distortion_state", DistortionState(self.distortion_state))
        if self.slice_normal_lps is not None:
            object.__setattr__(self, "slice_normal_lps", _unit_normal(self.slice_normal_lps))
        residual_projector(self.distortion_state, self.slice_normal_lps)  # validates state and normal

    @classmethod
    def from_provenance(
        cls,
        coefficients: FieldSource,
        provenance: Provenance,
        *,
        slice_normal_lps: ArrayLike | None,
        distortion_state: DistortionState | str | None = None,
        patient_position: PatientPosition | str | None = None,
        isocentre_lps: ArrayLike | None = None,
    ) -> Self:
        """Build from a volume's provenance; explicit keywords override what the provenance says.

        A missing patient position is taken as HFS, and an isocentre without a recorded source as the
        provenance's value (the origin by default); both are said so in :attr:`assumptions` (what the headers
        said is in :attr:`read_from_headers`, what the keywords said in :attr:`given`). A patient
        position given here, with a recorded table offset, moves the isocentre with it: the table offset is
        in magnet axes, and the position rotates it into the patient frame.
        """
        assumptions: list[str] = []
        read: list[str] = []
        given: list[str] = []
        state = DistortionState(distortion_state if distortion_state is not None else provenance.distortion_state)
        if distortion_state is not None:
            given.append(f"distortion state {state.value} given by the caller")
        elif provenance.distortion_source:
            read.append(f"distortion state {state.value} from {provenance.distortion_source}")
        position_text = patient_position if patient_position is not None else provenance.patient_position
        if position_text is None:
            position = PatientPosition.HFS
            assumptions.append("patient position unknown: HFS assumed")
        else:
            position = PatientPosition(str(position_text).strip().upper())
        if patient_position is not None:
            given.append(f"patient position {position.value} given by the caller")
        iso, said = _isocentre(provenance, position, position_given=patient_position is not None, given=isocentre_lps)
        {"given": given, "read": read, "assumed": assumptions}[said[0]].append(said[1])
        return cls(
            coefficients,
            MagnetFrame(position, iso),
            state,
            None if slice_normal_lps is None else np.asarray(slice_normal_lps, dtype=np.float64),
            tuple(assumptions),
            tuple(read),
            tuple(given),
        )

    @classmethod
    def from_volume(
        cls,
        coefficients: FieldSource,
        volume: Volume,
        *,
        distortion_state: DistortionState | str | None = None,
        patient_position: PatientPosition | str | None = None,
        isocentre_lps: ArrayLike | None = None,
    ) -> Self:
        """Build for a volume: the slice normal as its provenance records it (else its k axis), the rest too.

        A volume file reoriented after export (dcm2niix -x, fslreorient2std) may store its slices along
        another array axis; a DIS2D residual lies along the acquired slices' normal, wherever that is.
        """
        recorded = volume.provenance.slice_normal_lps
        normal = np.asarray(recorded if recorded is not None else volume.geometry.direction[:, 2], dtype=np.float64)
        residual = cls.from_provenance(
            coefficients,
            volume.provenance,
            slice_normal_lps=normal,
            distortion_state=distortion_state,
            patient_position=patient_position,
            isocentre_lps=isocentre_lps,
        )
        if recorded is None and residual.distortion_state is DistortionState.IN_PLANE_2D:
            axis = " ".join(f"{v:+.3f}" for v in normal)
            residual = replace(
                residual,
                assumptions=(
                    *residual.assumptions,
                    f"slice normal: nothing records how the "
                    f"slices were acquired; the volume's third axis ({axis} LPS) is taken",
                ),
            )
        return residual

    @property
    def projector(self) -> NDArray[np.float64]:
        """``P`` with residual = ``P d`` (LPS), shape (3, 3)."""
        return residual_projector(self.distortion_state, self.slice_normal_lps)

    @property
    def is_zero(self) -> bool:
        """Whether nothing remains to correct (FULL_3D)."""
        return self.distortion_state is DistortionState.FULL_3D

    @property
    def is_through_plane(self) -> bool:
        """Whether the residual lies along the slice normal only (IN_PLANE_2D)."""
        return self.distortion_state is DistortionState.IN_PLANE_2D

    def full_displacement_lps(self, points_lps: ArrayLike) -> NDArray[np.float64]:
        """Return the coil's whole displacement ``R d(R^T (r - iso))`` (mm, LPS) at LPS points, shape (..., 3)."""
        magnet_points = self.magnet_frame.magnet_from_lps(points_lps)
        return self.magnet_frame.lps_vectors_from_magnet(self.coefficients.displacement_magnet(magnet_points))

    def displacement_lps(self, points_lps: ArrayLike) -> NDArray[np.float64]:
        """Residual displacement (mm, LPS) at LPS points (mm), shape (..., 3) -> (..., 3)."""
        points = np.asarray(points_lps, dtype=np.float64)
        if self.is_zero:
            return np.zeros_like(points)
        return np.asarray(self.full_displacement_lps(points) @ self.projector.T, dtype=np.float64)

    def displacement_and_jacobian_lps(self, points_lps: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Residual displacement (mm, shape (..., 3)) and its LPS derivatives (shape (..., 3, 3)).

        ``jacobian[..., a, b] = d residual_a / d r_b``; ``det(I + jacobian)`` is the intensity factor.
        """
        points = np.asarray(points_lps, dtype=np.float64)
        if self.is_zero:
            return np.zeros_like(points), np.zeros((*points.shape[:-1], 3, 3))
        rotation = self.magnet_frame.lps_from_magnet
        values, jacobian = self.coefficients.displacement_and_jacobian_magnet(self.magnet_frame.magnet_from_lps(points))
        projected = self.projector @ rotation
        return (
            np.asarray(values @ projected.T, dtype=np.float64),
            np.asarray(projected @ jacobian @ rotation.T, dtype=np.float64),
        )

    def jacobian_determinant(self, points_lps: ArrayLike) -> NDArray[np.float64]:
        """``det(I + grad residual)`` at LPS points, shape (..., 3) -> (...) (dimensionless)."""
        _, jacobian = self.displacement_and_jacobian_lps(points_lps)
        return np.asarray(np.linalg.det(np.eye(3) + jacobian), dtype=np.float64)

    def interpolant(
        self,
        geometry: VolumeGeometry,
        *,
        coarse_spacing_mm: float = DEFAULT_COARSE_SPACING_MM,
        padding_mm: float = 0.0,
        with_jacobian_determinant: bool = False,
    ) -> GridInterpolant:
        """Evaluate the exact residual on a coarse grid aligned with ``geometry`` (the fast path).

        Returns
        -------
        GridInterpolant
            Components 0-2 = residual displacement (mm, LPS); component 3 = ``det(I + grad residual)``
            when ``with_jacobian_determinant``.
        """

        def evaluate(points: NDArray[np.float64]) -> NDArray[np.float64]:
            if not with_jacobian_determinant:
                return self.displacement_lps(points)
            values, jacobian = self.displacement_and_jacobian_lps(points)
            determinant = np.linalg.det(np.eye(3) + jacobian)
            return np.concatenate([values, determinant[:, None]], axis=1)

        return GridInterpolant.from_function(
            geometry, evaluate, coarse_spacing_mm=coarse_spacing_mm, padding_mm=padding_mm
        )
