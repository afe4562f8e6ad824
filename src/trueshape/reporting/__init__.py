"""Show the results: measurements (the size and shape of a bright round structure), figures and the HTML report.

``write_report(folder)`` writes one self-contained ``report.html`` for any output folder of trueshape, with each
figure as a PNG beside it; matplotlib loads only when a figure is drawn.
"""

from trueshape.reporting._kinds import FolderKind, folder_kind
from trueshape.reporting._metrics import SphereMeasurement, measure_bright_sphere
from trueshape.reporting._page import Picture, Section
from trueshape.reporting._report import FIGURES_FOLDER, IDENTIFIERS_SHOWN, REPORT_FILE, write_report
from trueshape.reporting._series import IDENTIFYING_KEYWORDS
from trueshape.reporting._spheres import find_bright_spheres

__all__ = [
    "FIGURES_FOLDER",
    "IDENTIFIERS_SHOWN",
    "IDENTIFYING_KEYWORDS",
    "REPORT_FILE",
    "FolderKind",
    "Picture",
    "Section",
    "SphereMeasurement",
    "find_bright_spheres",
    "folder_kind",
    "measure_bright_sphere",
    "write_report",
]
