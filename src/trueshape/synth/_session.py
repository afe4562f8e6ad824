"""A synthetic session written to disk: DICOM series, their true residual fields, and a manifest.

All series of a session share one study and frame of reference (the patient did not move), each with its
own table position, patient position and distortion-correction state, exactly as a scanner writes them.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import generate_uid

from trueshape.dicom import LPS_FROM_MAGNET, DistortionState
from trueshape.errors import OutputError, OutputExistsError, TrueshapeError
from trueshape.geometry import DisplacementField, VolumeGeometry
from trueshape.gnl import GradientCoefficients, MagnetFrame, ResidualField
from trueshape.io import (
    OutputTransaction,
    SeriesMetadata,
    atomic_folder,
    planes_from_volume,
    to_jsonable,
    write_dicom_slices,
    write_enhanced_dicom,
    write_field_nifti,
    write_itk_transform,
    write_json,
)
from trueshape.synth._acquire import Acquisition, Phantom, Plane, SyntheticScan, acquire
from trueshape.synth._phantom import Contrast, FemurPhantom

__all__ = ["Session", "SessionSeries", "demo_acquisitions", "residual_for", "write_session"]


@dataclass(frozen=True)
class SessionSeries:
    """One written series: its acquisition, its DICOM folder and its ground-truth files."""

    acquisition: Acquisition
    dicom_folder: Path
    truth_nifti: Path
    truth_transform: Path
    max_residual_mm: float  #: largest true residual at the truth nodes inside the image's field of view


@dataclass(frozen=True)
class Session:
    """A synthetic session on disk."""

    folder: Path
    phantom: Phantom
    coil_id: str
    series: tuple[SessionSeries, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the manifest written as ``session.json``."""
        anatomy: dict[str, Any]
        if isinstance(self.phantom, FemurPhantom):
            anatomy = {
                "phantom": asdict(self.phantom),
                "femoral_heads": [
                    {"centre_lps": c.tolist(), "radius_mm": r, "marrow_radius_mm": self.phantom.head_marrow_radius_mm()}
                    for c, r in self.phantom.femoral_heads()
                ],
            }
        else:
            describe = getattr(self.phantom, "describe", None)
            anatomy = {"phantom": describe() if callable(describe) else type(self.phantom).__name__}
        return {
            **anatomy,
            "coil": self.coil_id,
            "series": [
                {
                    "acquisition": to_jsonable(asdict(s.acquisition)),
                    "dicom_folder": str(s.dicom_folder.relative_to(self.folder)),
                    "truth_nifti": str(s.truth_nifti.relative_to(self.folder)),
                    "truth_transform": str(s.truth_transform.relative_to(self.folder)),
                    "max_residual_mm": s.max_residual_mm,
                }
                for s in self.series
            ],
        }


def residual_for(coil: GradientCoefficients, acquisition: Acquisition) -> ResidualField:
    """Return the residual field the emulated scanner leaves in ``acquisition``."""
    return ResidualField(
        coil,
        MagnetFrame(acquisition.patient_position, np.asarray(acquisition.isocentre_lps)),
        acquisition.distortion_state,
        acquisition.directions[:, 2],
    )


def demo_acquisitions(phantom: FemurPhantom, *, quick: bool = False) -> tuple[Acquisition, Acquisition]:
    """Return the story's two series: a reference axial centred on the hips (DIS3D), a wide coronal (DIS2D).

    The coronal field of view is centred 150 mm below the hips with the table moved to put its centre at
    the isocentre, so the femoral heads sit 150 mm from it, near the top of the image. ``quick`` uses
    coarser voxels (tests, ``demo --quick``), except the coronal series' 2 mm slices: its slice normal is the
    front-to-back axis the story measures, and 4 mm slices would bias the corrected ratio by 4%.
    """
    hips = np.asarray(phantom.hip_centre_lps)
    pixel = 3.0 if quick else 1.5
    slice_mm = 4.0 if quick else 2.0
    coronal_slice_mm = 2.0
    reference = Acquisition(
        plane=Plane.AXIAL,
        fov_mm=(400.0, 280.0),
        matrix=(round(400 / pixel), round(280 / pixel)),
        slices=round(80 / slice_mm),
        slice_thickness_mm=slice_mm,
        centre_lps=tuple(hips),
        isocentre_lps=tuple(hips),
        distortion_state=DistortionState.FULL_3D,
        contrast=Contrast.PD,
        noise_sd=4.0,
        in_plane_samples=1,
        slice_samples=3,
        series_number=2,
        description="ax_pd_reference_dis3d",
        seed=2,
    )
    coronal_centre = hips + np.array([0.0, 0.0, -150.0 * phantom.scale])
    coronal = Acquisition(
        plane=Plane.CORONAL,
        fov_mm=(440.0, 440.0),
        matrix=(round(440 / pixel), round(440 / pixel)),
        slices=round(120 / coronal_slice_mm),
        slice_thickness_mm=coronal_slice_mm,
        centre_lps=tuple(coronal_centre),
        isocentre_lps=tuple(coronal_centre),
        distortion_state=DistortionState.IN_PLANE_2D,
        contrast=Contrast.T1,
        noise_sd=4.0,
        in_plane_samples=1,
        slice_samples=3,
        series_number=3,
        description="cor_t1_widefov_dis2d",
        seed=3,
    )
    return reference, coronal


#: Sequence timing written per contrast (ms): plausible spin-echo values, so readers find TR/TE/ETL.
_TIMING = {Contrast.T1: (550.0, 11.0), Contrast.PD: (3000.0, 30.0)}


def _metadata(
    acquisition: Acquisition,
    study_uid: str,
    frame_uid: str,
    patient_id: str,
    study_at: datetime.datetime,
    acquired_at: datetime.datetime,
) -> SeriesMetadata:
    state = acquisition.distortion_state
    table = acquisition.table_position_mm
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "NORM")
    if state is not DistortionState.UNKNOWN:
        image_type += (state.value,)  # ND, DIS2D or DIS3D, as Siemens writes them
    three_d = acquisition.three_d
    if three_d is None:
        three_d = acquisition.slice_gap_mm == 0 and acquisition.plane is not Plane.CORONAL
    repetition, echo = _TIMING[acquisition.contrast]
    return SeriesMetadata(
        patient_id=patient_id,
        study_instance_uid=study_uid,
        frame_of_reference_uid=frame_uid,
        series_number=acquisition.series_number,
        series_description=acquisition.description,
        image_type=image_type,
        patient_position=acquisition.patient_position.value,
        slice_thickness_mm=acquisition.slice_thickness_mm,
        spacing_between_slices_mm=acquisition.slice_spacing_mm,
        table_position_mm=(float(table[0]), float(table[1]), float(table[2])),
        study_at=study_at,
        acquired_at=acquired_at,
        extra={
            "MagneticFieldStrength": 3.0,
            "MRAcquisitionType": "3D" if three_d else "2D",
            "BodyPartExamined": "HIP",
            # The classic MR Image module's timing (an enhanced file keeps it per frame).
            **(
                {}
                if acquisition.enhanced
                else {
                    "ScanningSequence": "SE",
                    "SequenceVariant": "NONE",
                    "RepetitionTime": repetition,
                    "EchoTime": echo,
                    "EchoTrainLength": 1,
                }
            ),
            **acquisition.extra,
        },
    )


def _on_whole_table_millimetres(acquisition: Acquisition) -> Acquisition:
    """Move the isocentre to the nearest table offset ImaRelTablePosition (IS: whole mm) can record.

    Headers and ground truth must agree: a scan simulated at an isocentre the header cannot carry would be
    read back 0.5 mm away.
    """
    table = np.round(acquisition.table_position_mm)
    isocentre = LPS_FROM_MAGNET[acquisition.patient_position] @ table
    return replace(acquisition, isocentre_lps=(float(isocentre[0]), float(isocentre[1]), float(isocentre[2])))


def write_session(
    folder: str | os.PathLike[str],
    phantom: Phantom | Sequence[Phantom],
    coil: GradientCoefficients,
    acquisitions: tuple[Acquisition, ...],
    *,
    patient_id: str = "SYNFEMUR01",
    force: bool = False,
) -> Session:
    """Acquire every series of ``phantom`` with ``coil`` and write DICOM, truth fields and session.json.

    ``phantom`` may be one per acquisition: the same patient who moved between series (same frame of
    reference), so that an estimator must find the motion.

    The session is written beside ``folder`` and moved into place whole, so a folder never mixes the files
    of two sessions (a series with fewer slices would otherwise keep the old run's extra slices). An existing
    non-empty ``folder`` is replaced only with ``force``, and only if it holds nothing but a session.
    """
    root = Path(folder)
    phantoms = tuple(phantom) if isinstance(phantom, Sequence) else (phantom,) * len(acquisitions)
    if len(phantoms) != len(acquisitions):
        raise ValueError(f"{len(phantoms)} phantoms for {len(acquisitions)} acquisitions")
    _check_replaceable(root, force=force)
    # The checks above passed: an existing folder is empty, or (with force) holds a session and nothing else.
    try:
        with (
            OutputTransaction([root], force=True, foreign=_not_session_files) as transaction,
            atomic_folder(root, transaction=transaction),
        ):
            written = _write_series(root, phantoms, coil, acquisitions, patient_id, transaction)
            write_json(
                Session(root, phantoms[0], coil.coil_id, tuple(written)).to_json(),
                root / "session.json",
                transaction=transaction,
            )
    except TrueshapeError:  # names the file (its final path) and what went wrong
        raise
    except OSError as error:
        raise OutputError(f"{root}: writing the session failed ({error.strerror or error})") from None
    return Session(root, phantoms[0], coil.coil_id, tuple(written))


#: What a session folder holds (paths relative to it): ``--force`` replaces a folder holding nothing else.
SESSION_FILE = re.compile(r"session\.json|dicom/[^/]+/(IM|EN)\d{5}\.dcm|truth/[^/]+_residual(_field\.nii\.gz|\.h5)")


def _largest_inside(truth: DisplacementField, geometry: VolumeGeometry) -> float:
    """Largest residual length at the truth nodes within the image's voxel centres (the grid reaches beyond)."""
    index = geometry.lps_to_index(truth.geometry.voxel_centres().reshape(-1, 3))
    size = np.asarray(geometry.shape, dtype=np.float64) - 1.0
    inside = np.all((index >= -1e-6) & (index <= size + 1e-6), axis=1)
    lengths = np.linalg.norm(truth.vectors.reshape(-1, 3)[inside], axis=1)
    return float(lengths.max()) if lengths.size else 0.0


def _check_replaceable(root: Path, *, force: bool) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise OutputError(f"{root}: is a file, not a folder")
    try:
        names = {entry.name for entry in root.iterdir()}
    except OSError as error:
        raise OutputError(f"{root}: cannot read the folder ({error.strerror or error})") from None
    if not names:
        return
    if not force:
        raise OutputExistsError(f"{root}: already exists and is not empty (use --force to replace a session)")
    foreign = _not_session_files(root)
    if foreign:
        more = ", ..." if len(foreign) > 3 else ""
        raise OutputError(
            f"{root}: holds {', '.join(foreign[:3])}{more} besides a synthetic session; not replaced "
            "(choose another folder)"
        )


def _not_session_files(root: Path) -> list[str]:
    """Every file under ``root`` that is not a session's, however deep: a note in a series folder must stay."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if not path.is_dir() and not SESSION_FILE.fullmatch(path.relative_to(root).as_posix())
    )


def _write_series(
    root: Path,
    phantoms: tuple[Phantom, ...],
    coil: GradientCoefficients,
    acquisitions: tuple[Acquisition, ...],
    patient_id: str,
    transaction: OutputTransaction,
) -> list[SessionSeries]:
    study_uid = generate_uid()
    # The patient lies still within one position; turned round (HFS then FFS) they are a new frame of reference.
    frames: dict[object, str] = {}
    # One study: every series carries its start; series follow each other a few minutes apart.
    started = datetime.datetime.now().replace(microsecond=0)
    written: list[SessionSeries] = []
    for index, requested in enumerate(acquisitions):
        acquisition = _on_whole_table_millimetres(requested)
        residual = residual_for(coil, acquisition)
        scan: SyntheticScan = acquire(
            phantoms[index], acquisition, None if residual.is_zero else residual.displacement_lps
        )
        stored = np.clip(np.round(scan.volume.array), 0, 65535).astype(np.uint16)
        volume = scan.volume.with_array(stored)
        name = f"{acquisition.series_number:02d}_{acquisition.description}"
        dicom_folder = root / "dicom" / name
        frame_uid = frames.setdefault(acquisition.patient_position, generate_uid())
        metadata = _metadata(
            acquisition, study_uid, frame_uid, patient_id, started, started + datetime.timedelta(minutes=5 * index)
        )
        if acquisition.enhanced:
            write_enhanced_dicom(
                dicom_folder / "EN00001.dcm", planes_from_volume(volume), metadata, transaction=transaction
            )
        else:
            write_dicom_slices(
                dicom_folder, planes_from_volume(volume), metadata, file_prefix="IM", transaction=transaction
            )
        truth_nifti = write_field_nifti(
            scan.truth, root / "truth" / f"{name}_residual_field.nii.gz", transaction=transaction
        )
        truth_transform = write_itk_transform(
            scan.truth, root / "truth" / f"{name}_residual.h5", transaction=transaction
        )
        written.append(
            SessionSeries(
                acquisition, dicom_folder, truth_nifti, truth_transform, _largest_inside(scan.truth, volume.geometry)
            )
        )
    return written
