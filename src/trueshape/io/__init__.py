"""Files trueshape writes and reads: NIfTI, NRRD, ITK transforms, JSON sidecars (RAS lives only here).

Every writer takes the final path and, optionally, an :class:`OutputTransaction` whose outputs appear
together or not at all.
"""

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
from trueshape.io._stack_files import write_stack
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
