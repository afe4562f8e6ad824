"""Frame: one 2-D image plane (a classic file, one frame of an enhanced file, or one mosaic tile).

Frames are header-only records: everything grouping and geometry need, plus how to fetch the pixels.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from trueshape.dicom._diffusion import Diffusion
from trueshape.dicom.vendor import VendorInfo

__all__ = ["Frame", "PixelLocation", "PixelReadMode"]


class PixelReadMode(enum.StrEnum):
    """How a frame's pixels are fetched."""

    NATIVE = "native"  #: uncompressed little-endian: read straight from the file at a byte offset
    PYDICOM = "pydicom"  #: decoded by pydicom's pixel handlers (compressed, big endian, odd bit depths)


@dataclass(frozen=True, slots=True)
class PixelLocation:
    """Where one frame's pixel values live.

    Parameters
    ----------
    mode : PixelReadMode
        NATIVE reads ``rows * columns`` values of ``dtype`` at ``offset``; PYDICOM decodes the file.
    offset : int
        Byte offset of the frame (native only).
    dtype : str
        NumPy dtype string of the stored values (native only), e.g. ``"<u2"``.
    stored_rows, stored_columns : int
        Size of the stored image (a mosaic's whole tiled image).
    frame_index : int
        Index into a multi-frame pixel array (0 for single-frame).
    tile : tuple of int or None
        (row, column) tile of a mosaic, None otherwise.
    """

    mode: PixelReadMode
    offset: int = 0
    dtype: str = ""
    stored_rows: int = 0
    stored_columns: int = 0
    frame_index: int = 0
    tile: tuple[int, int] | None = None
    #: BitsStored of unsigned native data narrower than its words (0: every bit is value); the bits above
    #: are not part of the value (old files keep overlays there) and are masked off when read.
    stored_bits: int = 0


@dataclass(frozen=True, slots=True)
class Frame:
    """Header facts of one image plane (mm, DICOM patient LPS).

    ``image_orientation`` is the 6-value ImageOrientationPatient (row direction then column direction);
    ``pixel_spacing`` is (row spacing, column spacing) exactly as DICOM PixelSpacing orders it.
    """

    path: str
    label: str  #: ``file`` or ``file#frame`` / ``file#tile`` for messages
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    series_number: int | None
    series_description: str
    modality: str
    manufacturer: str
    image_type: tuple[str, ...]
    rows: int
    columns: int
    image_position: tuple[float, float, float] | None
    image_orientation: tuple[float, float, float, float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    spacing_between_slices: float | None
    slice_location: float | None
    gantry_tilt_deg: float | None
    echo_number: int | None
    echo_time: float | None
    acquisition_number: int | None
    temporal_index: int | None
    acquisition_time_s: float | None
    instance_number: int | None
    stack_id: str
    complex_component: str  #: "M", "P", "R", "I" or ""
    is_localizer: bool
    rescale_slope: float
    rescale_intercept: float
    pixels: PixelLocation | None  #: None when the file has no pixel data
    vendor: VendorInfo = field(default_factory=VendorInfo)
    geometry_source: str = "ImagePositionPatient (0020,0032)"
    mosaic_slice_count: int = 0
    sop_class_uid: str = ""  #: what a derived image's SourceImageSequence cites with the instance UID
    trigger_time_ms: float | None = None  #: TriggerTime (cardiac phase), or the enhanced nominal trigger delay
    philips_scale_slope: float | None = None  #: Philips' private scale slope (2005,100E), for precise values
    diffusion: Diffusion | None = None  #: b-value and gradient direction of a diffusion-weighted image

    @property
    def where(self) -> str:
        """The file, with ``#frameN`` or ``#tileN`` for a plane inside it (how findings name places)."""
        return self.path + (self.label[self.label.index("#") :] if "#" in self.label else "")

    @property
    def temporal_key(self) -> tuple[float, ...]:
        """Sort key for repeated positions (time/echo order), most reliable tags first."""
        return (
            float(self.temporal_index if self.temporal_index is not None else -1),
            float(self.acquisition_number if self.acquisition_number is not None else -1),
            float(self.acquisition_time_s if self.acquisition_time_s is not None else -1),
            # After the acquisition tags: a triggered series may record each image's actual, jittering delay.
            float(self.trigger_time_ms if self.trigger_time_ms is not None else -1),
            float(self.instance_number if self.instance_number is not None else -1),
            float(self.pixels.frame_index if self.pixels is not None else 0),
        )
