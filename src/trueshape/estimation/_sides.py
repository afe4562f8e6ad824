"""One series during a fit: sampled where the current field and motion put it, with its derivatives.

Examples
--------
>>> from trueshape.dicom import DistortionState
>>> from trueshape.estimation import SeriesView
>>> view = SeriesView.build(DistortionState.IN_PLANE_2D, slice_normal_lps=(0.0, 1.0, 0.0))
>>> view.projector_basis().shape
(3, 1)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from trueshape.estimation._field_model import FieldModel
from trueshape.estimation._levels import LevelImage

__all__ = ["Side"]


class Side:
    """One series during a level: how it is sampled, and what stays fixed while the coefficients change."""

    def __init__(self, image: LevelImage, model: FieldModel, points: NDArray[np.float64], *, anchor: bool,
                 moves: bool) -> None:
        self.image = image
        self.model = model
        self.points = points
        self.view = image.series.view
        self.vectors = self.view.projector_basis()
        self.sees = self.vectors.shape[1] > 0
        self.moves = moves
        self.fast = anchor and image.along_k
        geometry = image.geometry
        self.to_index = geometry.ijk_from_lps
        # Samples this close to a face of the field of view read smoothing mixed with padding: left out.
        self.margin = -(1.0 + image.edge_voxels)
        if self.fast:
            self.column_sampler = image.column_spline
            index = np.rint(geometry.lps_to_index(points)).astype(np.intp)
            upper = np.asarray(geometry.shape[:2]) - 1 + self.margin[:2]
            self.in_plane = np.all((index[:, :2] >= -self.margin[:2]) & (index[:, :2] <= upper), axis=1)
            self.columns = index[:, 0] * geometry.shape[1] + index[:, 1]
            self.k0 = index[:, 2].astype(np.float64)
            normal = geometry.direction[:, 2]
            self.k_per_mm = normal / float(geometry.spacing[2])  # dk per LPS mm along the normal
        else:
            self.sampler = image.spline
        self.static_basis = None if moves else self._basis(points)
        self.static_values: NDArray[np.float64] | None = None
        if not self.sees and not moves:
            values, _, _, self.static_inside = self.corrected(np.zeros(model.size), points, need_jacobian=False)
            self.static_values = values

    def _basis(self, points: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if not self.sees:
            return np.zeros((points.shape[0], len(self.model.basis.terms))), np.zeros((points.shape[0], 0, 0))
        values, gradients = self.model.basis.evaluate(self.view.coefficient_points(points), with_gradient=True)
        assert gradients is not None
        return values, np.einsum("ptb,br->ptr", gradients, self.vectors)

    def corrected(self, theta: NDArray[np.float64], points: NDArray[np.float64], *, need_jacobian: bool,
                  need_position: bool = False) -> tuple[NDArray[np.float64], NDArray[np.float64] | None,
                                                        NDArray[np.float64] | None, NDArray[np.bool_]]:
        """Corrected values at ``points`` (their own, this series' anatomy), d/dtheta, d/d(position) and inside."""
        model = self.model
        count = points.shape[0]
        if self.static_values is not None:  # sees no field and does not move: fixed values
            return (self.static_values, np.zeros((count, model.size)) if need_jacobian else None, None,
                    self.static_inside)
        values_h, slopes_h = self.static_basis if self.static_basis is not None else self._basis(points)
        axes = list(model.axes)
        table = model.table(theta)[axes]  # (A, T)
        weights = self.view.weights[:, axes]  # (3, A)
        along_axes = values_h @ table.T  # (P, A) coefficient-frame displacement
        displacement = along_axes @ weights.T  # (P, 3) LPS
        if self.fast:
            k = self.k0 + displacement @ self.k_per_mm
            inside = self.column_sampler.inside(np.stack([k, k, k], axis=1), margin=float(self.margin[2]))
            inside &= self.in_plane
            sampled, slope_k = self.column_sampler.sample_columns(self.columns, k, with_gradient=need_jacobian)
            gradient = None if slope_k is None else slope_k[:, None] * self.k_per_mm[None, :]
        else:
            index = (points + displacement) @ self.to_index[:3, :3].T + self.to_index[:3, 3]
            inside = self.sampler.inside(index, margin=self.margin)
            want = need_jacobian or need_position
            sampled, gradient_index = self.sampler.sample(index, with_gradient=want)
            gradient = None if gradient_index is None else gradient_index @ self.to_index[:3, :3]
        if not self.sees:
            jacobian = np.zeros((count, model.size)) if need_jacobian else None
            return sampled, jacobian, gradient, inside
        rank = self.vectors.shape[1]
        spread = np.einsum("at,ptr->par", table, slopes_h)  # (P, A, r): D V on the fitted axes
        if rank == 1:
            determinant = 1.0 + spread[:, :, 0] @ self.vectors[axes, 0]
            corrected = determinant * sampled
            position = None if gradient is None else determinant[:, None] * gradient
            if not need_jacobian:
                return corrected, None, position, inside
            assert gradient is not None
            along = gradient @ weights  # (P, A)
            first = (sampled[:, None, None] * slopes_h[:, None, :, 0]) * self.vectors[axes, 0][None, :, None]
            second = (determinant[:, None] * along)[:, :, None] * values_h[:, None, :]
            return corrected, (first + second).reshape(count, -1), position, inside
        full = np.zeros((count, 3, rank))
        full[:, axes, :] = spread
        matrix = np.eye(rank)[None] + np.einsum("ai,par->pir", self.vectors, full)
        determinant = np.linalg.det(matrix)
        corrected = determinant * sampled
        position = None if gradient is None else determinant[:, None] * gradient
        if not need_jacobian:
            return corrected, None, position, inside
        assert gradient is not None
        quotient = np.einsum("pji,ai->pja", np.linalg.inv(matrix), self.vectors[axes])  # (P, r, A)
        along = gradient @ weights
        first = (determinant * sampled)[:, None, None] * np.einsum("ptj,pja->pat", slopes_h, quotient)
        second = (determinant[:, None] * along)[:, :, None] * values_h[:, None, :]
        return corrected, (first + second).reshape(count, -1), position, inside
