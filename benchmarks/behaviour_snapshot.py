"""Every command's outputs, normalised, so that a change meant to keep behaviour can prove it did.

Run:  .venv/bin/python benchmarks/behaviour_snapshot.py --write snap.json   (before the change)
      .venv/bin/python benchmarks/behaviour_snapshot.py --check snap.json   (after it)

The script runs ``trueshape`` as a user does (a fresh process per command) on the real corpus
(``../shared/corpus/real``, skipped when absent) and on synthetic inputs it writes once under
``benchmarks/_work/behaviour/inputs`` (a DIS2D coronal, an ND axial, a DIS3D axial, series with missing,
irregular and sheared slices, a NIfTI volume with a dcm2niix-style sidecar, a scanner model). It covers
``inspect`` (text and ``--json``), ``convert`` (NIfTI, NRRD, every ``--irregular`` policy, ``--validation
raise``, a forced re-run over other options), ``correct`` (``--coef`` and ``--model`` on ND, DIS2D and DIS3D
series, ``--format dicom|nii|nrrd``, ``--like``, NIfTI input with trueshape's and dcm2niix's sidecars,
overrides, refusals) and ``demo --quick``.

Each record keeps the exit code, stdout and stderr, and every file written: JSON as parsed, volumes (NIfTI,
NRRD) as header fields plus a sha256 of their voxels, ITK transforms as their field's grid plus a sha256 of
its vectors, DICOM files element by element (pixel data hashed). Normalised away: the work folder's path,
timestamps (DICOM DA/TM/DT values), UIDs (each replaced by its order of first appearance, so references
between files are still checked) and the software version. ``--check`` prints the records that differ and
exits 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "behaviour"
INPUTS = WORK / "inputs"
RUN = WORK / "run"
CORPUS = HERE.parents[1] / "shared" / "corpus" / "real"
TRUESHAPE = Path(sys.executable).with_name("trueshape")
UID_PATTERN = re.compile(r"(?<![\w.])[0-2](?:\.(?:0|[1-9][0-9]*)){4,}(?![\w.])")


# --------------------------------------------------------------------------------------------- inputs


def write_inputs() -> None:
    """Synthetic series, a coil file, a scanner model and a NIfTI with a dcm2niix-style sidecar (once)."""
    from trueshape.dicom import DistortionState, PatientPosition
    from trueshape.gnl import SYN_AS, format_siemens_grad
    from trueshape.io import SeriesMetadata, write_dicom_slices, write_nifti, write_scanner_model
    from trueshape.synth import AXIAL, CORONAL, Acquisition, FemurPhantom, Plane, regular_planes, write_session

    if (INPUTS / "complete").exists():
        return
    shutil.rmtree(INPUTS, ignore_errors=True)
    INPUTS.mkdir(parents=True)
    small = {"in_plane_samples": 1, "slice_samples": 1}
    acquisitions = (
        Acquisition(
            plane=Plane.CORONAL,
            fov_mm=(120.0, 120.0),
            matrix=(32, 32),
            slices=10,
            slice_thickness_mm=5.0,
            centre_lps=(95.0, 0.0, -100.0),
            isocentre_lps=(0.0, 0.0, -120.0),
            distortion_state=DistortionState.IN_PLANE_2D,
            series_number=4,
            description="cor",
            **small,
        ),
        Acquisition(
            plane=Plane.AXIAL,
            fov_mm=(200.0, 160.0),
            matrix=(40, 32),
            slices=8,
            slice_thickness_mm=6.0,
            centre_lps=(20.0, -10.0, 60.0),
            isocentre_lps=(0.0, 0.0, 30.0),
            distortion_state=DistortionState.NONE,
            series_number=5,
            description="ax_nd",
            **small,
        ),
        Acquisition(
            plane=Plane.AXIAL,
            fov_mm=(240.0, 200.0),
            matrix=(24, 20),
            slices=12,
            slice_thickness_mm=5.0,
            centre_lps=(60.0, 0.0, -110.0),
            isocentre_lps=(0.0, 0.0, -120.0),
            distortion_state=DistortionState.FULL_3D,
            series_number=6,
            description="ax_ref_dis3d",
            **small,
        ),
        Acquisition(
            plane=Plane.SAGITTAL,
            fov_mm=(160.0, 160.0),
            matrix=(24, 24),
            slices=6,
            slice_thickness_mm=5.0,
            slice_gap_mm=1.0,
            centre_lps=(40.0, 0.0, 0.0),
            isocentre_lps=(0.0, 0.0, 0.0),
            distortion_state=DistortionState.NONE,
            series_number=7,
            description="sag_unknown",
            extra={"ImageType": ["ORIGINAL", "PRIMARY", "M", "NORM"]},
            **small,
        ),  # headers say nothing
        Acquisition(
            plane=Plane.CORONAL,
            fov_mm=(160.0, 160.0),
            matrix=(24, 24),
            slices=6,
            slice_thickness_mm=5.0,
            centre_lps=(0.0, 10.0, -40.0),
            isocentre_lps=(0.0, 0.0, -40.0),
            patient_position=PatientPosition.FFS,
            distortion_state=DistortionState.NONE,
            series_number=8,
            description="cor_ffs_nd",
            **small,
        ),
    )
    write_session(INPUTS / "session", FemurPhantom(), SYN_AS, acquisitions)
    (INPUTS / "SYN-AS.grad").write_text(format_siemens_grad(SYN_AS))
    write_scanner_model(SYN_AS, INPUTS / "syn-as-model.json")

    def series(name: str, planes: list[Any], **metadata: Any) -> None:
        write_dicom_slices(
            INPUTS / "irregular" / name, planes, SeriesMetadata(series_description=name, **metadata), file_prefix="IM"
        )

    planes = regular_planes(slices=12, origin=(-5.0, -4.0, 20.0), slice_spacing=3.0)
    series("missing", planes[:5] + planes[6:], series_number=11, image_type=("ORIGINAL", "PRIMARY", "M", "DIS2D"))
    zones = [p for p in regular_planes(slices=12, slice_spacing=2.0)]
    for k, plane in enumerate(zones):  # the second half 2.5 mm apart
        if k > 5:
            position = (plane.image_position[0], plane.image_position[1], 10.0 + (k - 5) * 2.5)
            zones[k] = type(plane)(plane.pixels, position, plane.image_orientation, plane.pixel_spacing)
    series("zones", zones, series_number=12, slice_thickness_mm=2.0)
    tilted = [
        type(p)(
            p.pixels,
            (p.image_position[0], p.image_position[1] + 0.3 * k, p.image_position[2]),
            p.image_orientation,
            p.pixel_spacing,
        )
        for k, p in enumerate(regular_planes(slices=9, slice_spacing=2.5))
    ]
    series("tilt", tilted, series_number=13, image_type=("ORIGINAL", "PRIMARY", "M", "ND"))
    mixed = regular_planes(slices=6, orientation=AXIAL) + regular_planes(
        slices=5, orientation=CORONAL, origin=(0.0, 40.0, 0.0)
    )
    series("mixed", mixed, series_number=14)

    # A NIfTI volume with a dcm2niix-style BIDS sidecar (DIS2D coronal, head first supine, table moved).
    from trueshape import load

    volume = load(INPUTS / "session" / "dicom" / "04_cor")
    write_nifti(volume, INPUTS / "volumes" / "bids_cor.nii.gz")
    bids = {
        "Modality": "MR",
        "Manufacturer": "Siemens",
        "SeriesDescription": "cor",
        "SeriesNumber": 4,
        "ImageType": ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"],
        "PatientPosition": "HFS",
        "TablePosition": [0, 0, 120],
        "ImageOrientationPatientDICOM": [1, 0, 0, 0, 0, -1],
    }
    (INPUTS / "volumes" / "bids_cor.json").write_text(json.dumps(bids, indent=2))
    write_nifti(volume, INPUTS / "volumes" / "bare_cor.nii")
    bids_ffs = dict(bids, PatientPosition="FFS")
    write_nifti(volume, INPUTS / "volumes" / "bids_ffs.nii.gz")
    (INPUTS / "volumes" / "bids_ffs.json").write_text(json.dumps(bids_ffs, indent=2))
    (INPUTS / "complete").write_text("")


# ------------------------------------------------------------------------------------------- commands


Add = Callable[..., None]
SESSION = f"{INPUTS}/session/dicom"
COIL = f"{INPUTS}/SYN-AS.grad"
IRREGULAR = f"{INPUTS}/irregular"


def commands() -> list[tuple[str, list[str], str | None]]:
    """(name, arguments, output folder relative to RUN or None) in a fixed order."""
    result: list[tuple[str, list[str], str | None]] = []

    def add(name: str, arguments: list[str], folder: str | None = None) -> None:
        result.append((name, arguments, folder))

    corpus = sorted(p.name for p in CORPUS.iterdir() if (p / "dicom").is_dir()) if CORPUS.is_dir() else []
    _inspect_commands(add, corpus)
    _convert_commands(add, corpus)
    _correct_commands(add, corpus)
    add("demo-quick", ["demo", f"{RUN}/demo", "--quick"], "demo")
    add("help", ["--help"])
    for command in ("inspect", "convert", "correct", "demo"):
        add(f"help-{command}", [command, "--help"])
    return result


def _inspect_commands(add: Add, corpus: list[str]) -> None:
    session, irregular = SESSION, IRREGULAR
    for name in corpus:
        add(f"inspect-json-{name}", ["inspect", "--json", f"{CORPUS}/{name}/dicom"])
    for name in ("siemens-t1-2d-sag-dis2d", "siemens-xa10-epi-enhanced-4d", "transfer-syntaxes"):
        if name in corpus:
            add(f"inspect-text-{name}", ["inspect", f"{CORPUS}/{name}/dicom"])
    add("inspect-json-session", ["inspect", "--json", session])
    add("inspect-text-session", ["inspect", session])
    for name in ("missing", "zones", "tilt", "mixed"):
        add(f"inspect-json-{name}", ["inspect", "--json", f"{irregular}/{name}"])
        for policy in ("resample", "split", "fail"):
            add(f"inspect-json-{name}-{policy}", ["inspect", "--json", "--irregular", policy, f"{irregular}/{name}"])
    add("inspect-text-missing", ["inspect", f"{irregular}/missing"])
    add("inspect-missing-path", ["inspect", f"{INPUTS}/no-such-folder"])


def _convert_commands(add: Add, corpus: list[str]) -> None:
    session, irregular, out = SESSION, IRREGULAR, str(RUN)
    for name in corpus:
        add(
            f"convert-{name}",
            ["convert", f"{CORPUS}/{name}/dicom", "--out", f"{out}/convert-{name}"],
            f"convert-{name}",
        )
    for name in ("siemens-t1-2d-sag-dis2d", "siemens-xa10-epi-enhanced-4d"):
        if name in corpus:
            add(
                f"convert-nrrd-{name}",
                ["convert", f"{CORPUS}/{name}/dicom", "--out", f"{out}/convert-nrrd-{name}", "--format", "nrrd"],
                f"convert-nrrd-{name}",
            )
    if "siemens-epi-mosaic-ax" in corpus:
        add(
            "convert-nii-mosaic",
            [
                "convert",
                f"{CORPUS}/siemens-epi-mosaic-ax/dicom",
                "--out",
                f"{out}/convert-nii-mosaic",
                "--format",
                "nii",
            ],
            "convert-nii-mosaic",
        )
    add("convert-session", ["convert", session, "--out", f"{out}/convert-session"], "convert-session")
    add(
        "convert-session-nrrd",
        ["convert", f"{session}#4", "--out", f"{out}/convert-session-nrrd", "--format", "NRRD"],
        "convert-session-nrrd",
    )
    for name in ("missing", "zones", "tilt", "mixed"):
        for policy in ("warn", "resample", "split", "fail"):
            folder = f"convert-{name}-{policy}"
            add(folder, ["convert", f"{irregular}/{name}", "--out", f"{out}/{folder}", "--irregular", policy], folder)
    add(
        "convert-missing-raise",
        ["convert", f"{irregular}/missing", "--out", f"{out}/convert-missing-raise", "--validation", "raise"],
        "convert-missing-raise",
    )
    add(
        "convert-again-refused",
        ["convert", f"{irregular}/missing", "--out", f"{out}/convert-missing-warn"],
        "convert-missing-warn",
    )
    add(
        "convert-again-forced",
        [
            "convert",
            f"{irregular}/missing",
            "--out",
            f"{out}/convert-missing-warn",
            "--irregular",
            "resample",
            "--force",
        ],
        "convert-missing-warn",
    )
    add("convert-dicom-refused", ["convert", session, "--out", f"{out}/convert-dicom", "--format", "dicom"])
    add("convert-into-input", ["convert", session, "--out", f"{session}/out"])


def _correct_commands(add: Add, corpus: list[str]) -> None:
    session, irregular, out, coil, model = SESSION, IRREGULAR, str(RUN), COIL, f"{INPUTS}/syn-as-model.json"

    def correct(name: str, series: str, *options: str) -> None:
        add(f"correct-{name}", ["correct", series, "--out", f"{out}/correct-{name}", *options], f"correct-{name}")

    correct("dis2d", f"{session}#4", "--coef", coil)
    correct("dis2d-dicom", f"{session}#4", "--coef", coil, "--format", "dicom")
    correct("dis2d-full-nointensity", f"{session}#4", "--coef", coil, "--mode", "full", "--no-intensity")
    correct("dis2d-like", f"{session}#4", "--coef", coil, "--like", f"{session}#6")
    correct("dis2d-like-dicom", f"{session}#4", "--coef", coil, "--like", f"{session}#6", "--format", "dicom")
    correct("dis2d-nii", f"{session}#4", "--coef", coil, "--format", "nii")
    correct("nd", f"{session}#5", "--coef", coil)
    correct("nd-nrrd", f"{session}#5", "--coef", coil, "--format", "nrrd")
    correct("nd-model", f"{session}#5", "--model", model)
    correct("nd-through-plane", f"{session}#5", "--coef", coil, "--mode", "through-plane")
    correct("dis3d", f"{session}#6", "--coef", coil)
    correct("dis3d-dicom", f"{session}#6", "--coef", coil, "--format", "dicom")
    correct("unknown", f"{session}#7", "--coef", coil)
    correct("unknown-stated", f"{session}#7", "--coef", coil, "--state", "dis2d")
    correct("ffs", f"{session}#8", "--coef", coil)
    correct(
        "ffs-overrides",
        f"{session}#8",
        "--coef",
        coil,
        "--patient-position",
        "hfs",
        "--isocentre",
        "0,0,-40",
        "--state",
        "ND",
    )
    correct("bad-isocentre", f"{session}#8", "--coef", coil, "--isocentre", "0,0")
    correct("far-isocentre", f"{session}#8", "--coef", coil, "--isocentre", "0,0,90000")
    correct("no-coil", f"{session}#4")
    correct("two-coils", f"{session}#4", "--coef", coil, "--model", model)
    correct("mode-none", f"{session}#4", "--coef", coil, "--mode", "none")
    correct("several-stacks", session, "--coef", coil)
    correct("missing-fail", f"{irregular}/missing", "--coef", coil, "--irregular", "fail")
    correct("missing-resampled", f"{irregular}/missing", "--coef", coil)
    correct("missing-resampled-dicom", f"{irregular}/missing", "--coef", coil, "--format", "dicom")
    add(
        "correct-dis2d-again",
        ["correct", f"{session}#4", "--out", f"{out}/correct-dis2d", "--coef", coil],
        "correct-dis2d",
    )
    add(
        "correct-dis2d-forced-nrrd",
        ["correct", f"{session}#4", "--out", f"{out}/correct-dis2d", "--coef", coil, "--format", "nrrd", "--force"],
        "correct-dis2d",
    )
    # Volume files: trueshape's convert sidecar, its correction sidecar, dcm2niix's, none.
    converted = f"{out}/convert-session-nrrd/4_cor.nrrd"
    correct("volume-trueshape", converted, "--coef", coil)
    correct("volume-corrected", f"{out}/correct-dis2d/4_cor_corrected.nrrd", "--coef", coil)
    correct("volume-bids", f"{INPUTS}/volumes/bids_cor.nii.gz", "--coef", coil)
    correct("volume-bids-ffs", f"{INPUTS}/volumes/bids_ffs.nii.gz", "--coef", coil)
    correct("volume-bids-ffs-isocentre", f"{INPUTS}/volumes/bids_ffs.nii.gz", "--coef", coil, "--isocentre", "0,0,-120")
    correct("volume-bare", f"{INPUTS}/volumes/bare_cor.nii", "--coef", coil)
    correct(
        "volume-bare-stated",
        f"{INPUTS}/volumes/bare_cor.nii",
        "--coef",
        coil,
        "--state",
        "DIS2D",
        "--like",
        f"{session}#6",
    )
    correct("volume-dicom-refused", converted, "--coef", coil, "--format", "dicom")
    for name, folder, options in _CORPUS_CORRECTIONS:
        if folder in corpus:
            correct(name, f"{CORPUS}/{folder}/dicom", "--coef", coil, *options)


#: Corrections of the real corpus, in order: (record name, corpus folder, options).
_CORPUS_CORRECTIONS = (
    ("corpus-t1-dicom", "siemens-t1-2d-sag-dis2d", ("--format", "dicom")),
    ("corpus-t1", "siemens-t1-2d-sag-dis2d", ("--mode", "full")),
    ("corpus-xa30-dicom", "siemens-xa30-t1-3d-enhanced", ("--format", "dicom")),
    ("corpus-table-moved", "siemens-table-moved-h20", ()),
    ("corpus-xa10-4d-dicom", "siemens-xa10-epi-enhanced-4d", ("--format", "dicom")),
    ("corpus-ge-unknown", "ge-dwi-classic-r3", ()),
    ("corpus-ge-stated", "ge-dwi-classic-r3", ("--state", "ND")),
    ("corpus-mosaic-nrrd", "siemens-epi-mosaic-ax", ("--format", "nrrd")),
)


# ------------------------------------------------------------------------------------------ normalise


class Normaliser:
    """Replaces paths, UIDs and the version in text; UIDs by their order of first appearance."""

    def __init__(self) -> None:
        self.uids: dict[str, str] = {}

    def uid(self, match: re.Match[str]) -> str:
        return self.uids.setdefault(match.group(0), f"<UID{len(self.uids)}>")

    def text(self, value: str) -> str:
        from trueshape._version import __version__

        value = value.replace(str(RUN), "<RUN>").replace(str(INPUTS), "<INPUTS>").replace(str(CORPUS), "<CORPUS>")
        value = UID_PATTERN.sub(self.uid, value)
        return value.replace(f"trueshape {__version__}", "trueshape <VERSION>")

    def json(self, value: Any) -> Any:
        if isinstance(value, dict):
            if value.get("name") == "trueshape" and "version" in value:
                value = {**value, "version": "<VERSION>"}
            return {self.text(str(k)): self.json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value


def digest(array: Any) -> str:
    data = np.ascontiguousarray(np.asarray(array))
    return f"{data.dtype.str}{list(data.shape)}:{hashlib.sha256(data.tobytes()).hexdigest()[:32]}"


def describe_file(path: Path, normaliser: Normaliser) -> Any:
    name = path.name
    if name.endswith(".json"):
        return normaliser.json(json.loads(path.read_text(encoding="utf-8")))
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        image = nib.load(path)
        header = image.header
        fields = {
            key: header[key].tolist()
            for key in (
                "dim",
                "pixdim",
                "datatype",
                "qform_code",
                "sform_code",
                "intent_code",
                "intent_name",
                "xyzt_units",
                "scl_slope",
                "scl_inter",
                "descrip",
                "quatern_b",
                "quatern_c",
                "quatern_d",
                "qoffset_x",
                "qoffset_y",
                "qoffset_z",
                "srow_x",
                "srow_y",
                "srow_z",
            )
        }
        fields = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in fields.items()}
        fields = json.loads(json.dumps(fields, default=str).replace("NaN", "null"))
        return {"header": normaliser.json(fields), "voxels": digest(image.dataobj.get_unscaled())}
    if name.endswith(".nrrd"):
        import nrrd

        data, header = nrrd.read(str(path), index_order="F")
        return {
            "header": json.loads(
                json.dumps(
                    {k: np.asarray(v).tolist() if isinstance(v, np.ndarray) else v for k, v in header.items()},
                    default=str,
                )
            ),
            "voxels": digest(data),
        }
    if name.endswith((".h5", ".tfm")):
        import SimpleITK as sitk

        transform = sitk.ReadTransform(str(path))
        if transform.GetName() == "CompositeTransform":
            transform = sitk.CompositeTransform(transform).GetNthTransform(0)
        image = sitk.DisplacementFieldTransform(transform).GetDisplacementField()
        return {
            "size": list(image.GetSize()),
            "origin": list(image.GetOrigin()),
            "spacing": list(image.GetSpacing()),
            "direction": list(image.GetDirection()),
            "vectors": digest(sitk.GetArrayFromImage(image)),
        }
    if name.endswith(".dcm"):
        return describe_dicom(path, normaliser)
    return {"bytes": hashlib.sha256(path.read_bytes()).hexdigest()}


def describe_dicom(path: Path, normaliser: Normaliser) -> Any:
    import pydicom

    dataset = pydicom.dcmread(path)

    def elements(ds: Any) -> list[Any]:
        listed = []
        for element in ds:
            tag = f"{element.tag.group:04X},{element.tag.element:04X}"
            if element.tag == 0x7FE00010:
                listed.append([tag, "PixelData", hashlib.sha256(element.value).hexdigest()[:32]])
            elif element.VR == "SQ":
                listed.append([tag, element.keyword, [elements(item) for item in element.value]])
            elif element.VR in ("DA", "TM", "DT"):
                listed.append([tag, element.keyword, "<TIMESTAMP>" if element.value else ""])
            else:
                value = element.value
                if isinstance(value, bytes):
                    value = hashlib.sha256(value).hexdigest()[:32]
                listed.append([tag, element.keyword, normaliser.text(str(value))])
        return listed

    # The group length counts the UIDs' characters: new UIDs differ in length.
    meta = [[str(e.tag), normaliser.text(str(e.value))] for e in dataset.file_meta if e.tag != 0x00020000]
    return {"meta": meta, "elements": elements(dataset)}


def run_all() -> dict[str, Any]:
    shutil.rmtree(RUN, ignore_errors=True)
    RUN.mkdir(parents=True)
    normaliser = Normaliser()
    environment = {k: v for k, v in os.environ.items() if k not in ("TRUESHAPE_TRACEBACK", "FORCE_COLOR")}
    environment.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "LC_ALL": "C.UTF-8"})
    records: dict[str, Any] = {}
    for name, arguments, folder in commands():
        completed = subprocess.run(
            [str(TRUESHAPE), *arguments], capture_output=True, text=True, env=environment, cwd=RUN, check=False
        )
        record: dict[str, Any] = {
            "argv": normaliser.text(" ".join(arguments)),
            "exit": completed.returncode,
            "stdout": normaliser.text(completed.stdout),
            "stderr": normaliser.text(completed.stderr),
        }
        if folder is not None:
            root = RUN / folder
            files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
            record["files"] = {normaliser.text(str(p.relative_to(root))): describe_file(p, normaliser) for p in files}
            record["hidden"] = sorted(str(p.relative_to(root)) for p in root.rglob(".*")) if root.is_dir() else []
        records[name] = record
        print(f"{completed.returncode} {name}", flush=True)
    return records


def differences(before: Any, after: Any, where: str = "") -> list[str]:
    if type(before) is not type(after):
        return [f"{where}: {str(before)[:200]!r} -> {str(after)[:200]!r}"]
    if isinstance(before, dict):
        found = []
        for key in sorted(set(before) | set(after)):
            if key not in after or key not in before:
                found.append(f"{where}/{key}: {'removed' if key not in after else 'added'}")
            else:
                found.extend(differences(before[key], after[key], f"{where}/{key}"))
        return found
    if isinstance(before, list):
        if len(before) != len(after):
            return [f"{where}: {len(before)} items -> {len(after)}"]
        found = []
        for index, (a, b) in enumerate(zip(before, after, strict=True)):
            found.extend(differences(a, b, f"{where}[{index}]"))
        return found
    if isinstance(before, float) and np.isnan(before) and np.isnan(after):
        return []
    return [] if before == after else [f"{where}: {str(before)[:300]!r} -> {str(after)[:300]!r}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, help="run everything and write the snapshot here")
    group.add_argument("--check", type=Path, help="run everything and compare with this snapshot")
    args = parser.parse_args()
    write_inputs()
    records = run_all()
    if args.write:
        args.write.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
        print(f"{len(records)} records written to {args.write}")
        return
    expected = json.loads(args.check.read_text())
    actual = json.loads(json.dumps(records))
    failed = 0
    for name in sorted(set(expected) | set(actual)):
        found = differences(expected.get(name), actual.get(name), name)
        if found:
            failed += 1
            print(f"DIFFERS {name}:")
            for line in found[:20]:
                print(f"    {line}")
    print(f"{len(actual)} records, {failed} differ from {args.check}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
