"""trueshape correct on dcm2niix output against trueshape correct on the DICOM it came from.

For each real corpus series, dcm2niix (PyPI, in benchmarks/_work/venv_peers) writes NIfTI + BIDS sidecar;
the script prints what the sidecar says (ImageType token, PatientPosition, TablePosition), the isocentre
trueshape takes from it and from the DICOM headers, and the largest voxel difference between the two
corrections (after reorienting both to the closest canonical RAS). The SYN-AS coil stands in for the
scanner's: the point is that the two inputs give the same geometry, not the size of the correction.

``--probe-table`` instead writes small synthetic series with a table moved 60.3 mm into the bore as Siemens, GE
and Philips record it (``trueshape.synth.record_table_move``), in head-first, feet-first, prone and decubitus
positions, and prints what dcm2niix writes as TablePosition, the isocentre trueshape reads from the DICOM
headers and from dcm2niix's sidecar, and where the physics puts it (d mm towards the feet of a head-first
patient, towards the head of a feet-first one). Usage::

    .venv/bin/python benchmarks/dcm2niix_sidecars.py [--probe-table]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import ensure_dcm2niix
from trueshape.gnl import SYN_AS, format_siemens_grad

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent.parent / "shared" / "corpus" / "real"
WORK = HERE / "_work" / "dcm2niix_sidecars"
SERIES = ["siemens-t1-2d-sag-dis2d", "siemens-table-baseline", "siemens-table-moved-h20"]


def trueshape_correct(source: Path, out: Path, coil: Path) -> Path:
    command = [
        str(Path(sys.executable).with_name("trueshape")),
        "correct",
        str(source),
        "--coef",
        str(coil),
        "--out",
        str(out),
        "--force",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}:\n{result.stdout}{result.stderr}")
    return next(out.glob("*_corrected.json"))


HEAD_FIRST = ("HFS", "HFP", "HFDR", "HFDL")
PROBE_MOVE_MM = 60.3


def probe_table(dcm2niix: Path) -> int:
    """Print, per vendor and patient position, dcm2niix's TablePosition and trueshape's isocentre both ways."""
    import pydicom

    import trueshape
    from trueshape.io import SeriesMetadata, read_volume_file, write_dicom_slices
    from trueshape.synth import Vendor, record_table_move, regular_planes

    work = WORK.with_name("table_probe")
    shutil.rmtree(work, ignore_errors=True)
    print("vendor | position | dcm2niix TablePosition | isocentre z via DICOM | via dcm2niix sidecar | physics")
    worst = 0.0
    for vendor in Vendor:
        for position in ("HFS", "FFS", "HFP", "FFP", "HFDR", "HFDL", "FFDR", "FFDL"):
            folder = work / f"{vendor.name}_{position}"
            paths = write_dicom_slices(
                folder / "dicom", regular_planes(slices=3), SeriesMetadata(patient_position=position)
            )
            for path in paths:
                ds = pydicom.dcmread(path)
                del ds[0x00190010:0x00191100]
                record_table_move(ds, vendor, PROBE_MOVE_MM)
                ds.save_as(path)
            (folder / "nifti").mkdir()
            subprocess.run(
                [str(dcm2niix), "-o", str(folder / "nifti"), "-f", "s", str(folder / "dicom")],
                check=True,
                capture_output=True,
            )
            table = json.loads((folder / "nifti" / "s.json").read_text()).get("TablePosition")
            via_dicom = trueshape.inspect(folder / "dicom").stacks[0].isocentre_lps
            via_sidecar = read_volume_file(folder / "nifti" / "s.nii").provenance.isocentre_lps
            physics = -PROBE_MOVE_MM if position in HEAD_FIRST else PROBE_MOVE_MM
            worst = max(worst, abs(via_dicom[2] - physics), abs(via_sidecar[2] - physics))
            print(
                f"{vendor.name} | {position} | {table} | {via_dicom[2]:+.2f} | {via_sidecar[2]:+.2f} | {physics:+.2f}"
            )
    print(f"largest distance from the physics: {worst:.2f} mm (Siemens records whole millimetres)")
    return 0


def main() -> int:
    if "--probe-table" in sys.argv[1:]:
        return probe_table(ensure_dcm2niix())
    if not CORPUS.is_dir():
        print(f"real corpus not found at {CORPUS}")
        return 1
    dcm2niix = ensure_dcm2niix()
    version = subprocess.run([str(dcm2niix), "--version"], capture_output=True, text=True).stdout.strip()
    print(f"dcm2niix: {version.splitlines()[-1] if version else '?'}")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    coil = WORK / "SYN-AS.grad"
    coil.write_text(format_siemens_grad(SYN_AS))
    header = (
        "series",
        "ImageType token",
        "position",
        "TablePosition",
        "state via dcm2niix",
        "state via DICOM",
        "isocentre via dcm2niix",
        "isocentre via DICOM",
        "max voxel difference",
    )
    print(" | ".join(header))
    for name in SERIES:
        nifti_dir = WORK / name / "dcm2niix"
        nifti_dir.mkdir(parents=True)
        subprocess.run(
            [str(dcm2niix), "-z", "y", "-b", "y", "-o", str(nifti_dir), "-f", "%s_%d", str(CORPUS / name / "dicom")],
            check=True,
            capture_output=True,
        )
        for nifti in sorted(nifti_dir.glob("*.nii.gz")):
            sidecar = json.loads(nifti.with_name(nifti.name[: -len(".nii.gz")] + ".json").read_text())
            via_nifti = json.loads(trueshape_correct(nifti, WORK / name / "from_nifti", coil).read_text())
            via_dicom = json.loads(
                trueshape_correct(CORPUS / name / "dicom", WORK / name / "from_dicom", coil).read_text()
            )
            images = [
                nib.as_closest_canonical(nib.load(next((WORK / name / which).glob("*_corrected.nii.gz"))))
                for which in ("from_nifti", "from_dicom")
            ]
            assert np.allclose(images[0].affine, images[1].affine, atol=1e-3)
            difference = float(np.max(np.abs(images[0].get_fdata() - images[1].get_fdata())))
            token = [t for t in sidecar.get("ImageType", []) if t in ("ND", "DIS2D", "DIS3D")]
            print(
                " | ".join(
                    [
                        nifti.name,
                        ",".join(token) or "-",
                        str(sidecar.get("PatientPosition")),
                        str(sidecar.get("TablePosition")),
                        via_nifti["correction"]["distortion_state"],
                        via_dicom["correction"]["distortion_state"],
                        str(via_nifti["source"]["isocentre_lps"]),
                        str(via_dicom["source"]["isocentre_lps"]),
                        f"{difference:.3g} (of {float(np.max(np.abs(images[1].get_fdata()))):.4g})",
                    ]
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
