"""Files trueshape writes and reads: NIfTI, NRRD, ITK transforms, JSON sidecars (RAS lives only here).

Every writer takes the final path and, optionally, an :class:`OutputTransaction` whose outputs appear
together or not at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trueshape._lazy import lazy_names

if TYPE_CHECKING:
    from trueshape.io._derived import DERIVED_SERIES_NUMBER_OFFSET, DerivedSeries, SourceImage, write_derived_series
    from trueshape.io._dicom_write import (
        SeriesMetadata,
        SlicePlane,
        planes_from_volume,
        write_dicom_slices,
        write_enhanced_dicom,
    )
    from trueshape.io._formats import OutputFormat
    from trueshape.io._frames import LPS_TO_RAS, lps_to_ras_affine, ras_to_lps_affine
    from trueshape.io._models import write_scanner_model
    from trueshape.io._outputs import check_free_space, check_output_folder, obsolete_outputs, refuse_output_inside
    from trueshape.io._sidecar import to_jsonable, write_json
    from trueshape.io._stack_files import convert_stack, write_stack
    from trueshape.io._transaction import (
        TRUESHAPE_FOLDER_FILE,
        OutputTransaction,
        atomic_folder,
        atomic_path,
        check_writable,
    )
    from trueshape.io._transforms import (
        read_itk_displacement_field,
        write_field_nifti,
        write_itk_transform,
    )
    from trueshape.io._volume_input import (
        VOLUME_SUFFIXES,
        is_volume_file,
        read_volume_file,
        sidecar_path,
        volume_stem,
    )
    from trueshape.io._volumes import (
        NIFTI_XFORM_ALIGNED_ANAT,
        NIFTI_XFORM_SCANNER_ANAT,
        physical_memory,
        read_volume,
        read_volume_geometry,
        write_nifti,
        write_nrrd,
        write_volume,
    )

#: Public name -> its module (loaded on first use: importing the package costs nothing until then).
_ORIGINS = {
    "DERIVED_SERIES_NUMBER_OFFSET": "trueshape.io._derived",
    "DerivedSeries": "trueshape.io._derived",
    "LPS_TO_RAS": "trueshape.io._frames",
    "NIFTI_XFORM_ALIGNED_ANAT": "trueshape.io._volumes",
    "NIFTI_XFORM_SCANNER_ANAT": "trueshape.io._volumes",
    "OutputFormat": "trueshape.io._formats",
    "OutputTransaction": "trueshape.io._transaction",
    "SeriesMetadata": "trueshape.io._dicom_write",
    "SlicePlane": "trueshape.io._dicom_write",
    "SourceImage": "trueshape.io._derived",
    "TRUESHAPE_FOLDER_FILE": "trueshape.io._transaction",
    "VOLUME_SUFFIXES": "trueshape.io._volume_input",
    "atomic_folder": "trueshape.io._transaction",
    "atomic_path": "trueshape.io._transaction",
    "check_free_space": "trueshape.io._outputs",
    "check_output_folder": "trueshape.io._outputs",
    "check_writable": "trueshape.io._transaction",
    "convert_stack": "trueshape.io._stack_files",
    "is_volume_file": "trueshape.io._volume_input",
    "lps_to_ras_affine": "trueshape.io._frames",
    "obsolete_outputs": "trueshape.io._outputs",
    "physical_memory": "trueshape.io._volumes",
    "planes_from_volume": "trueshape.io._dicom_write",
    "ras_to_lps_affine": "trueshape.io._frames",
    "read_itk_displacement_field": "trueshape.io._transforms",
    "read_volume": "trueshape.io._volumes",
    "read_volume_file": "trueshape.io._volume_input",
    "read_volume_geometry": "trueshape.io._volumes",
    "refuse_output_inside": "trueshape.io._outputs",
    "sidecar_path": "trueshape.io._volume_input",
    "to_jsonable": "trueshape.io._sidecar",
    "volume_stem": "trueshape.io._volume_input",
    "write_derived_series": "trueshape.io._derived",
    "write_dicom_slices": "trueshape.io._dicom_write",
    "write_enhanced_dicom": "trueshape.io._dicom_write",
    "write_field_nifti": "trueshape.io._transforms",
    "write_itk_transform": "trueshape.io._transforms",
    "write_json": "trueshape.io._sidecar",
    "write_nifti": "trueshape.io._volumes",
    "write_nrrd": "trueshape.io._volumes",
    "write_scanner_model": "trueshape.io._models",
    "write_stack": "trueshape.io._stack_files",
    "write_volume": "trueshape.io._volumes",
}

__all__ = [
    "DERIVED_SERIES_NUMBER_OFFSET",
    "LPS_TO_RAS",
    "NIFTI_XFORM_ALIGNED_ANAT",
    "NIFTI_XFORM_SCANNER_ANAT",
    "TRUESHAPE_FOLDER_FILE",
    "VOLUME_SUFFIXES",
    "DerivedSeries",
    "OutputFormat",
    "OutputTransaction",
    "SeriesMetadata",
    "SlicePlane",
    "SourceImage",
    "atomic_folder",
    "atomic_path",
    "check_free_space",
    "check_output_folder",
    "check_writable",
    "convert_stack",
    "is_volume_file",
    "lps_to_ras_affine",
    "obsolete_outputs",
    "physical_memory",
    "planes_from_volume",
    "ras_to_lps_affine",
    "read_itk_displacement_field",
    "read_volume",
    "read_volume_file",
    "read_volume_geometry",
    "refuse_output_inside",
    "sidecar_path",
    "to_jsonable",
    "volume_stem",
    "write_derived_series",
    "write_dicom_slices",
    "write_enhanced_dicom",
    "write_field_nifti",
    "write_itk_transform",
    "write_json",
    "write_nifti",
    "write_nrrd",
    "write_scanner_model",
    "write_stack",
    "write_volume",
]

__getattr__, __dir__ = lazy_names(__name__, _ORIGINS, namespace=globals())
