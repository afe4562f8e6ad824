"""The study a series belongs to, as a person reads it: its date, and on request who the patient is.

Scanning keeps no patient identifiers (Frame records carry none); ``inspect`` reads them from one file of a
series only when asked (``--show-identifiers``), and the study date to tell several visits apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pydicom

__all__ = ["StudyFacts", "study_facts"]

_KEYWORDS = ("StudyDate", "StudyDescription", "PatientName", "PatientID")


@dataclass(frozen=True)
class StudyFacts:
    """What a series' file says of its study and patient (empty text where it says nothing).

    Parameters
    ----------
    study_date : str
        StudyDate (0008,0020) as ``YYYY-MM-DD`` (as written when it is not a valid DA).
    study_description : str
        StudyDescription (0008,1030).
    patient_name, patient_id : str
        PatientName (0010,0010) and PatientID (0010,0020): identifiers, shown only when asked for.
    """

    study_date: str = ""
    study_description: str = ""
    patient_name: str = ""
    patient_id: str = ""


def study_facts(path: str | os.PathLike[str]) -> StudyFacts:
    """Read the study date and description and the patient's name and ID from one DICOM file (headers only).

    A file that cannot be read gives empty facts: they label output, they are not needed to use the series.
    """
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_KEYWORDS), force=True)
    except (OSError, ValueError, TypeError, EOFError, AttributeError):
        return StudyFacts()
    values = {keyword: str(dataset.get(keyword, "") or "").strip() for keyword in _KEYWORDS}
    date = values["StudyDate"]
    if len(date) == 8 and date.isdigit():
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    return StudyFacts(date, values["StudyDescription"], values["PatientName"], values["PatientID"])
