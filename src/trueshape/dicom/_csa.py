"""Siemens CSA headers and the Phoenix protocol text (read through nibabel's CSA parser).

nibabel's ``csareader`` is the maintained parser of the binary CSA format; we only pick the values out.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from pydicom.dataset import Dataset

__all__ = ["phoenix_protocol", "phoenix_slice_positions", "siemens_csa_image_tags", "siemens_csa_series_tags"]


def _csa_tags(ds: Dataset, kind: str) -> dict[str, list[Any]]:
    if (0x0029, 0x0010) not in ds and (0x0029, 0x0011) not in ds:
        return {}  # no private group 0029: not a Siemens CSA header (skip importing the parser)
    with warnings.catch_warnings():
        # nibabel.nicom warns on import that its *readers* are experimental; we use only the CSA parser.
        warnings.simplefilter("ignore")
        from nibabel.nicom import csareader
    try:
        header = csareader.get_csa_header(ds, kind)
    except Exception:  # a malformed private header must not stop loading: treat as absent
        return {}
    if not header:
        return {}
    return {name: tag.get("items", []) for name, tag in header.get("tags", {}).items()}


def siemens_csa_image_tags(ds: Dataset) -> dict[str, list[Any]]:
    """Return the CSA image header (0029,1010) tags as ``{name: items}`` (empty when absent)."""
    return _csa_tags(ds, "image")


def siemens_csa_series_tags(ds: Dataset) -> dict[str, list[Any]]:
    """Return the CSA series header (0029,1020) tags as ``{name: items}`` (empty when absent)."""
    return _csa_tags(ds, "series")


def phoenix_protocol(ds: Dataset) -> str | None:
    """Return the Phoenix protocol text (ASCCONV) from the CSA series header or the XA private tag."""
    items = siemens_csa_series_tags(ds).get("MrPhoenixProtocol")
    if items:
        return str(items[0])
    shared = ds.get("SharedFunctionalGroupsSequence")
    holders = [shared[0]] if shared else []
    holders.append(ds)
    for holder in holders:
        try:
            sds = holder.private_block(0x0021, "SIEMENS MR SDS 01")
        except KeyError:
            continue
        if 0xFE in sds:
            inner = sds[0xFE].value
            holder = inner[0] if inner else holder
            try:
                sds = holder.private_block(0x0021, "SIEMENS MR SDS 01")
            except KeyError:
                continue
        if 0x19 in sds:
            raw = sds[0x19].value
            return raw.decode("latin-1", errors="replace") if isinstance(raw, bytes) else str(raw)
    return None


_SLICE_POSITION = re.compile(r"sSliceArray\.asSlice\[(\d+)\]\.sPosition\.d(Sag|Cor|Tra)\s*=\s*([-+0-9.eE]+)")
_SLICE_COUNT = re.compile(r"sSliceArray\.lSize\s*=\s*(\d+)")


def phoenix_slice_positions(protocol: str | None) -> list[tuple[float, float, float]] | None:
    """Return the prescribed slice centres (LPS mm) from ``sSliceArray``, in protocol order.

    ASCCONV omits zero-valued entries, so a missing coordinate is 0.
    """
    if not protocol:
        return None
    count_match = _SLICE_COUNT.search(protocol)
    if count_match is None:
        return None
    count = int(count_match.group(1))
    positions = [[0.0, 0.0, 0.0] for _ in range(count)]
    axis = {"Sag": 0, "Cor": 1, "Tra": 2}
    for index, name, value in _SLICE_POSITION.findall(protocol):
        if int(index) < count:
            positions[int(index)][axis[name]] = float(value)
    return [(p[0], p[1], p[2]) for p in positions]
