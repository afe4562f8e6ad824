"""Coefficient files: Siemens ``.grad`` and ``.coef`` (read as-is, never modified) and trueshape's model JSON.

Siemens ``.grad`` rows look like ``  101 A( 3, 1)   -0.055   x`` (number, A or B, (n, m), value, axis) and
the header states the reference radius, e.g. ``0.25 m = R0`` (gradunwarp's pattern) or ``R0 = 0.25 m``. The
header may name the coil (:func:`coil_named_in_header`); a file that does not has no coil id, never its file
name.

The older ``.coef`` layout, as gradunwarp reads it (``core/coeffs.py``), has one term per line,
``alpha_y 3 1 -0.055;`` (name, n, m, value), ``#`` comment lines, and no R0: gradunwarp guesses R0 from
the file-name prefix (``sonata``/``avanto``/... 0.25 m, ``allegra`` 0.14 m), which fails for any other
name and for paths (``UnboundLocalError``). trueshape takes R0 from the caller, or from an ``R0 = ... m``
statement in the file (a comment will do), and otherwise refuses. Term names map to axes exactly as
gradunwarp maps them (:data:`GRADUNWARP_COEF_NAMES`), so a ``.coef`` file gives the same field in both.

The scanner-model JSON (:data:`MODEL_FORMAT`) holds R0 in mm, the coil id, the per-axis A/B tables as one
object per term, the coefficient frame, provenance and fit quality. Every malformed file raises
:class:`~trueshape.errors.CoefficientFileError` naming the file and the line.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
from collections.abc import Callable
from json import decoder as json_decoder
from json import scanner as json_scanner
from pathlib import Path
from typing import Any

from trueshape.errors import CoefficientFileError
from trueshape.gnl._coefficients import AXIS_NAMES, GradientCoefficients, TermKind
from trueshape.gnl._frames import CoefficientFrame
from trueshape.gnl._harmonics import MAX_HARMONIC_ORDER

__all__ = [
    "COEFFICIENT_SOURCES",
    "GRADUNWARP_COEF_NAMES",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "coil_named_in_header",
    "format_siemens_grad",
    "read_coefficients",
    "read_scanner_model",
    "read_siemens_coef",
    "read_siemens_grad",
    "scanner_model_json",
]

#: ``format`` value of trueshape's scanner-model JSON.
MODEL_FORMAT = "trueshape-gradient-model"
#: Version of the scanner-model JSON layout this module writes and reads.
MODEL_FORMAT_VERSION = 1
#: Normalisation name stored in model files (the only one trueshape evaluates).
SIEMENS_NORMALISATION = "siemens"

#: ``.coef`` term name -> (kind, axis) as gradunwarp's ``get_siemens_coef`` assigns them to its x, y, z
#: fields (``Coeffs(alpha_y, alpha_z, alpha_x, beta_y, beta_x, beta_z)``); unverified against vendor documents.
GRADUNWARP_COEF_NAMES: dict[str, tuple[TermKind, str]] = {
    "alpha_y": (TermKind.A, "x"),
    "alpha_z": (TermKind.A, "y"),
    "alpha_x": (TermKind.A, "z"),
    "beta_y": (TermKind.B, "x"),
    "beta_x": (TermKind.B, "y"),
    "beta_z": (TermKind.B, "z"),
}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eEdD][-+]?\d+)?"
_GRAD_ROW = re.compile(
    rf"^\s*(?P<no>\d+)\s+(?P<kind>[AB])\s*\(\s*(?P<n>\d+)\s*,\s*(?P<m>\d+)\s*\)\s+(?P<value>{_NUMBER})\s+"
    r"(?P<axis>[xyzXYZ])\s*$"
)
# Anything that reads as a term (a letter A or B, "(n, m)", a number) is a row: one that is not in the
# vendor layout above is refused by line rather than skipped, as gradunwarp's parser would skip it.
_GRAD_ROW_LIKE = re.compile(rf"^\s*\d+\s*[ABab]\s*\(|[ABab]\s*\(\s*[-+]?\d+\s*,\s*[-+]?\d+\s*\)\s*{_NUMBER}")
_R0_AFTER = re.compile(rf"\bR0\s*=\s*(?P<value>{_NUMBER})\s*(?P<unit>mm|m)\b", re.IGNORECASE)
_R0_BEFORE = re.compile(rf"(?P<value>{_NUMBER})\s*(?P<unit>mm|m)\s*=\s*R0\b", re.IGNORECASE)
_R0_ASSIGNMENT = re.compile(r"\bR0\s*=|=\s*R0\b", re.IGNORECASE)
# How a coefficient file's header names its coil, most explicit first: a statement ("Gradient coil: AS82", as
# trueshape writes it), Siemens' description ("... for high end gradient coil AC44 (Allegra)") and Siemens'
# script name ("Name : coeff_AC44.grad", "Name : AS097.grad"). A Siemens coil id is letters then digits; a
# model name ("Gradient Coil Verio") is not one.
_COIL_ID = r"[A-Z]{1,4}\d{2,3}[A-Z0-9]{0,4}"
_COIL_PATTERNS = (
    re.compile(r"\b(?i:gradient\s*coil)\s*[:=]\s*(?P<id>[A-Za-z0-9][A-Za-z0-9_.+-]*)"),
    re.compile(rf"\b(?i:gradient\s+coil)\s+(?P<id>{_COIL_ID})\b"),
    re.compile(rf"\bName\s*:\s*(?:\S*?[/\\])?(?:coeff_)?(?P<id>{_COIL_ID})\.grad\b"),
)

_TermKey = tuple[str, str, int, int]


def _fail(path: Path, line: int | None, problem: str) -> CoefficientFileError:
    where = f"{path}, line {line}" if line is not None else str(path)
    return CoefficientFileError(f"{where}: {problem}")


def _read_lines(path: Path) -> list[str]:
    """Return the file's lines as an editor numbers them (only CR/LF end a line, not Latin-1 byte 0x85)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CoefficientFileError(f"{path}: cannot read the coefficient file ({error.strerror})") from error
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16")
    elif b"\x00" in data:
        raise CoefficientFileError(
            f"{path}: holds NUL bytes: not a text coefficient file (binary, or UTF-16 "
            "without a byte-order mark; save it as plain text)"
        )
    else:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _parse_float(text: str) -> float:
    return float(text.replace("d", "e").replace("D", "e"))


def _r0_mm_from_line(path: Path, number: int, line: str, *, comment: bool = False) -> float | None:
    """Return R0 in mm if the line states it; raise if it tries to and fails.

    Prose in a comment may mention R0 without a value.
    """
    match = _R0_AFTER.search(line) or _R0_BEFORE.search(line)
    if match is None:
        if _R0_ASSIGNMENT.search(line) and not comment:
            raise _fail(path, number, f"cannot read R0 from {line.strip()!r} (expected e.g. 'R0 = 0.25 m')")
        return None
    value = _parse_float(match.group("value"))
    r0_mm = value * (1000.0 if match.group("unit").lower() == "m" else 1.0)
    if not (math.isfinite(r0_mm) and r0_mm > 0.0):
        raise _fail(path, number, f"R0 must be a positive length, got {line.strip()!r}")
    return r0_mm


def _one_r0(path: Path, stated: list[tuple[int, float]]) -> float | None:
    """Return the reference radius the file states; refuse a file whose statements disagree."""
    if not stated:
        return None
    first_line, first = stated[0]
    for line, value in stated[1:]:
        if not math.isclose(value, first, rel_tol=1e-9):
            raise _fail(
                path,
                line,
                f"states R0 = {value:g} mm, but line {first_line} states {first:g} mm: which coil is this file for?",
            )
    return first


def _store(
    terms: dict[_TermKey, float],
    lines_of: dict[_TermKey, int],
    path: Path,
    number: int,
    key: _TermKey,
    value: float,
) -> None:
    axis, kind, n, m = key
    if not 0 <= m <= n:
        raise _fail(path, number, f"term {kind}({n},{m}) needs 0 <= m <= n")
    if n > MAX_HARMONIC_ORDER:
        raise _fail(path, number, f"term {kind}({n},{m}) exceeds the highest supported order {MAX_HARMONIC_ORDER}")
    if not math.isfinite(value):
        raise _fail(path, number, f"term {kind}({n},{m}) of axis {axis} is not a finite number")
    if key in terms:
        raise _fail(path, number, f"term {kind}({n},{m}) of axis {axis} repeats line {lines_of[key]}")
    terms[key] = value
    lines_of[key] = number


def _require_every_axis(source: Path, terms: dict[_TermKey, float], what: str) -> None:
    """Refuse terms missing a gradient: a coil has three, so such a file is truncated or mislabelled."""
    missing = [axis for axis in AXIS_NAMES if not any(key[0] == axis for key in terms)]
    if missing:
        raise _fail(
            source,
            None,
            f"no {what} for the {' and '.join(missing)} gradient "
            f"(a complete file lists terms for x, y and z; is it truncated?)",
        )


def read_siemens_grad(path: str | os.PathLike[str]) -> GradientCoefficients:
    """Read a Siemens ``.grad`` coefficient file.

    Parameters
    ----------
    path : path-like
        The ``.grad`` file (read only).

    Returns
    -------
    GradientCoefficients
        R0 in mm, LAI frame (gradunwarp's convention for Siemens coefficients).

    Raises
    ------
    CoefficientFileError
        A term row that does not parse, a repeated term, m > n, or no R0 statement; the message names the
        file and the line.
    """
    source = Path(path)
    lines = _read_lines(source)
    terms: dict[_TermKey, float] = {}
    lines_of: dict[_TermKey, int] = {}
    stated: list[tuple[int, float]] = []
    for number, line in enumerate(lines, start=1):
        row = _GRAD_ROW.match(line)
        if row is None:
            comment = line.lstrip().startswith("#")
            if not comment and _GRAD_ROW_LIKE.search(line):
                raise _fail(
                    source,
                    number,
                    f"malformed coefficient row {line.strip()!r} (expected e.g. '101 A( 3, 1) -0.055 x': row number, "
                    "A or B, (n, m), value, axis)",
                )
            r0 = _r0_mm_from_line(source, number, line, comment=comment)
            if r0 is not None:
                stated.append((number, r0))
            continue
        key = (row.group("axis").lower(), row.group("kind"), int(row.group("n")), int(row.group("m")))
        _store(terms, lines_of, source, number, key, _parse_float(row.group("value")))
    r0_mm = _one_r0(source, stated)
    if r0_mm is None:
        raise _fail(
            source, None, f"no line states R0 (expected e.g. '0.25 m = R0' or 'R0 = 0.25 m'; {len(lines)} lines read)"
        )
    if not terms:
        raise _fail(source, None, "no coefficient rows (expected e.g. '101 A( 3, 1) -0.055 x')")
    _require_every_axis(source, terms, "coefficient rows")
    coil_id, said = coil_named_in_header(lines)
    return GradientCoefficients.from_terms(
        r0_mm,
        terms,
        frame=CoefficientFrame.LAI,
        coil_id=coil_id,
        source=f"{source} (Siemens .grad)",
        provenance={"coil_id_from": said} if coil_id else None,
    )


def coil_named_in_header(lines: list[str]) -> tuple[str, str]:
    """Return the coil id a coefficient file's header states, and the line that says it (``""`` if none).

    Only the lines before the first coefficient row count; the most explicit statement wins (see
    ``_COIL_PATTERNS``).

    Examples
    --------
    >>> coil_named_in_header(["# Description : Legendre coefficients for", "#   high end gradient coil AC44 (Allegra)"])
    ('AC44', "line 2: '#   high end gradient coil AC44 (Allegra)'")
    >>> coil_named_in_header(["# Description : ... Gradient Coil Verio (r0=0.25m)"])
    ('', '')
    """
    header = []
    for line in lines:
        if _GRAD_ROW.match(line):
            break
        header.append(line)
    for pattern in _COIL_PATTERNS:
        for number, line in enumerate(header, start=1):
            found = pattern.search(line)
            if found:
                return found.group("id"), f"line {number}: {line.strip()!r}"
    return "", ""


def read_siemens_coef(path: str | os.PathLike[str], *, r0_mm: float | None = None) -> GradientCoefficients:
    """Read an older Siemens ``.coef`` file (layout and axis names as gradunwarp reads them).

    Parameters
    ----------
    path : path-like
        The ``.coef`` file (read only).
    r0_mm : float, optional
        Reference radius, mm. When omitted the file must state it (``R0 = 0.25 m``, a comment is fine);
        trueshape never guesses it from the file name.

    Returns
    -------
    GradientCoefficients
        LAI frame; axes assigned by :data:`GRADUNWARP_COEF_NAMES`.
    """
    source = Path(path)
    if r0_mm is not None and not (math.isfinite(r0_mm) and r0_mm > 0.0):
        raise CoefficientFileError(
            f"{source}: the reference radius R0 (--r0-mm) must be a positive length in mm, got {r0_mm}"
        )
    lines = _read_lines(source)
    terms: dict[_TermKey, float] = {}
    lines_of: dict[_TermKey, int] = {}
    stated: list[tuple[int, float]] = []
    for number, line in enumerate(lines, start=1):
        body, _, comment = line.partition("#")
        for text, in_comment in ((body, False), (comment, True)):
            r0 = _r0_mm_from_line(source, number, text, comment=in_comment)
            if r0 is not None:
                stated.append((number, r0))
        body = body.strip().rstrip(";").strip()
        if not body or _R0_AFTER.search(body) or _R0_BEFORE.search(body):
            continue
        fields = body.split()
        if len(fields) != 4 or fields[0] not in GRADUNWARP_COEF_NAMES:
            raise _fail(source, number, f"malformed term {line.strip()!r} (expected e.g. 'alpha_y 3 1 -0.055;')")
        try:
            n, m, value = int(fields[1]), int(fields[2]), _parse_float(fields[3])
        except ValueError:
            raise _fail(source, number, f"malformed numbers in {line.strip()!r}") from None
        kind, axis = GRADUNWARP_COEF_NAMES[fields[0]]
        _store(terms, lines_of, source, number, (axis, kind.value, n, m), value)
    stated_r0 = _one_r0(source, stated)
    if r0_mm is not None and stated_r0 is not None and not math.isclose(r0_mm, stated_r0, rel_tol=1e-9):
        raise _fail(
            source,
            stated[0][0],
            f"states R0 = {stated_r0:g} mm; --r0-mm {r0_mm:g} disagrees (leave --r0-mm out to use the file's)",
        )
    radius = r0_mm if r0_mm is not None else stated_r0
    if radius is None:
        raise _fail(
            source,
            None,
            "the file does not state R0: pass r0_mm (gradunwarp guesses it from the file-name prefix, "
            "which trueshape does not do)",
        )
    if not terms:
        raise _fail(source, None, "no coefficient lines (expected e.g. 'alpha_y 3 1 -0.055;')")
    _require_every_axis(source, terms, "coefficient lines")
    coil_id, said = coil_named_in_header(lines)
    return GradientCoefficients.from_terms(
        radius,
        terms,
        frame=CoefficientFrame.LAI,
        coil_id=coil_id,
        source=f"{source} (Siemens .coef)",
        provenance={"coil_id_from": said} if coil_id else None,
    )


def format_siemens_grad(coefficients: GradientCoefficients, *, title: str = "") -> str:
    """Return the coefficients as ``.grad`` text that both trueshape and gradunwarp read.

    Rows are numbered as in vendor files (z from 1, x from 101, y from 201); values are written with nine
    decimals (gradunwarp's parser takes no exponents). Only LAI-frame coefficients can be written (the frame
    ``.grad`` files are read in).
    """
    if coefficients.frame is not CoefficientFrame.LAI:
        raise ValueError(f".grad files hold LAI-frame coefficients, got frame {coefficients.frame.value}")
    r0_m = coefficients.r0_mm / 1000.0
    lines = [
        f"#*] {title or coefficients.coil_id or 'gradient coil'} (written by trueshape)",
        *([f"#*] Gradient coil: {coefficients.coil_id}"] if coefficients.coil_id else []),
        f" {r0_m:.6g} m = R0, lnorm = 4? A(1,0) = B(1,1) = A(1,1) = 0",
        " NO.  TYPE       SPECTRUM    AXIS",
    ]
    first_number = {"z": 1, "x": 101, "y": 201}
    # A gradient without non-linear terms still gets a (zero) row: readers take a file without rows for
    # one gradient as truncated.
    zero_row = {"z": ("A", 3, 0), "x": ("A", 3, 1), "y": ("B", 3, 1)}
    for axis in ("z", "x", "y"):
        number = first_number[axis]
        rows = [(t.kind.value, t.n, t.m, t.value) for t in coefficients.terms() if t.axis == axis]
        for kind, n, m, value in rows or [(*zero_row[axis], 0.0)]:
            lines.append(f" {number:4d} {kind}({n:2d},{m:2d})  {value: .9f}  {axis}")
            number += 1
    return "\n".join(lines) + "\n"


def scanner_model_json(coefficients: GradientCoefficients) -> str:
    """Return the scanner-model JSON text (one term per line, so errors can name it)."""
    header = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "coil_id": coefficients.coil_id,
        "r0_mm": coefficients.r0_mm,
        "frame": coefficients.frame.value,
        "normalisation": SIEMENS_NORMALISATION,
        "source": coefficients.source,
    }
    parts = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in header.items()]
    axes = []
    for axis in AXIS_NAMES:
        rows = [
            "      " + json.dumps({"type": t.kind.value, "n": t.n, "m": t.m, "value": t.value})
            for t in coefficients.terms()
            if t.axis == axis
        ]
        body = ("[\n" + ",\n".join(rows) + "\n    ]") if rows else "[]"
        axes.append(f"    {json.dumps(axis)}: {body}")
    parts.append('  "coefficients": {\n' + ",\n".join(axes) + "\n  }")
    parts.append(f'  "provenance": {json.dumps(dict(coefficients.provenance), sort_keys=True, default=str)}')
    parts.append(f'  "fit_quality": {json.dumps(dict(coefficients.fit_quality), sort_keys=True, default=str)}')
    return "{\n" + ",\n".join(parts) + "\n}\n"


class _Located(dict[str, Any]):
    """A JSON object that remembers the line its ``{`` is on."""

    line: int = 0


class _DuplicateKey(ValueError):
    def __init__(self, key: str, line: int) -> None:
        super().__init__(key)
        self.key, self.line = key, line


def _located_loads(text: str) -> Any:
    """``json.loads`` whose objects are :class:`_Located` (pure-Python scanner, fine for small files).

    A key given twice in one object raises :class:`_DuplicateKey`: plain JSON keeps the last silently, and
    a model whose x gradient is listed twice would lose the first list.
    """
    line_starts = [0] + [index + 1 for index, char in enumerate(text) if char == "\n"]
    decoder = json.JSONDecoder(object_pairs_hook=list)
    base: Callable[..., tuple[list[tuple[str, Any]], int]] = json_decoder.JSONObject  # type: ignore[attr-defined]

    def parse_object(s_and_end: tuple[str, int], *args: Any, **kwargs: Any) -> tuple[_Located, int]:
        _, end = s_and_end
        pairs, new_end = base(s_and_end, *args, **kwargs)
        line = bisect.bisect_right(line_starts, end - 1)
        located = _Located()
        for key, value in pairs:
            if key in located:
                raise _DuplicateKey(key, line)
            located[key] = value
        located.line = line
        return located, new_end

    decoder.parse_object = parse_object  # type: ignore[attr-defined]
    decoder.scan_once = json_scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder.decode(text)


def read_scanner_model(path: str | os.PathLike[str]) -> GradientCoefficients:
    """Read trueshape's scanner-model JSON.

    Raises
    ------
    CoefficientFileError
        Invalid JSON, a missing or mistyped field, an unknown frame, a bad term; the message names the
        file and the line of the offending object.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8-sig")  # a byte-order mark (some editors add one) is not JSON
    except OSError as error:
        raise CoefficientFileError(f"{source}: cannot read the scanner model ({error.strerror})") from error
    except UnicodeDecodeError as error:
        raise CoefficientFileError(f"{source}: not UTF-8 text ({error.reason})") from error
    try:
        document = _located_loads(text)
    except json.JSONDecodeError as error:
        raise _fail(source, error.lineno, f"invalid JSON: {error.msg} (column {error.colno})") from None
    except RecursionError:
        raise _fail(source, None, "JSON nested too deeply to be a scanner model") from None
    except _DuplicateKey as duplicate:
        raise _fail(
            source,
            duplicate.line,
            f"the key {duplicate.key!r} appears twice in one object (JSON readers would keep only the last)",
        ) from None
    if not isinstance(document, _Located):
        raise _fail(source, 1, "the scanner model must be a JSON object")

    def need(obj: _Located, key: str, kinds: type | tuple[type, ...], what: str) -> Any:
        if key not in obj:
            raise _fail(source, obj.line, f"{what} lacks the field {key!r}")
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise _fail(source, obj.line, f"{what} field {key!r} has the wrong type ({type(value).__name__})")
        return value

    def number(obj: _Located, key: str, what: str) -> float:
        value = need(obj, key, (int, float), what)
        try:
            return float(value)
        except OverflowError:
            raise _fail(
                source, obj.line, f"{what} field {key!r} is too large for a number ({len(str(value))} digits)"
            ) from None

    if document.get("format") != MODEL_FORMAT:
        raise _fail(source, document.line, f"'format' must be {MODEL_FORMAT!r}, got {document.get('format')!r}")
    version = need(document, "format_version", int, "the model")
    if version > MODEL_FORMAT_VERSION:
        raise _fail(source, document.line, f"format_version {version} is newer than {MODEL_FORMAT_VERSION}")
    if version < 1:
        raise _fail(source, document.line, f"format_version must be 1 or more, got {version}")
    for optional in ("provenance", "fit_quality"):
        if document.get(optional) is not None and not isinstance(document[optional], _Located):
            raise _fail(
                source,
                document.line,
                f"the field {optional!r} must be an object (got {type(document[optional]).__name__})",
            )
    r0_mm = number(document, "r0_mm", "the model")
    for text_field in ("coil_id", "source"):
        if document.get(text_field) is not None and not isinstance(document[text_field], str):
            raise _fail(
                source,
                document.line,
                f"the field {text_field!r} must be text or null (got {type(document[text_field]).__name__})",
            )
    frame_name = need(document, "frame", str, "the model")
    try:
        frame = CoefficientFrame(frame_name)
    except ValueError:
        known = ", ".join(f.value for f in CoefficientFrame)
        raise _fail(source, document.line, f"unknown frame {frame_name!r} (known: {known})") from None
    normalisation = document.get("normalisation", SIEMENS_NORMALISATION)
    if normalisation != SIEMENS_NORMALISATION:
        raise _fail(source, document.line, f"unsupported normalisation {normalisation!r}")
    tables = need(document, "coefficients", _Located, "the model")
    terms: dict[_TermKey, float] = {}
    lines_of: dict[_TermKey, int] = {}
    for axis, entries in tables.items():
        if axis not in AXIS_NAMES:
            raise _fail(source, tables.line, f"unknown axis {axis!r} in 'coefficients' (expected x, y, z)")
        if not isinstance(entries, list):
            raise _fail(source, tables.line, f"coefficients of axis {axis!r} must be a list of terms")
        for entry in entries:
            if not isinstance(entry, _Located):
                raise _fail(source, tables.line, f"a term of axis {axis!r} is not an object")
            kind = need(entry, "type", str, "the term")
            if kind not in ("A", "B"):
                raise _fail(source, entry.line, f"term type must be 'A' or 'B', got {kind!r}")
            n = need(entry, "n", int, "the term")
            m = need(entry, "m", int, "the term")
            value = number(entry, "value", "the term")
            _store(terms, lines_of, source, entry.line, (axis, kind, n, m), value)
    missing = [axis for axis in AXIS_NAMES if axis not in tables]
    if missing:  # an axis without terms is written as an empty list; a missing one is a damaged file
        raise _fail(
            source,
            tables.line,
            f"'coefficients' lacks the {' and '.join(missing)} gradient (write an "
            "empty list for a gradient without non-linear terms)",
        )
    try:
        return GradientCoefficients.from_terms(
            r0_mm,
            terms,
            frame=frame,
            coil_id=document.get("coil_id") or "",
            source=document.get("source") or f"{source} (trueshape model)",
            provenance=dict(document.get("provenance") or {}),
            fit_quality=dict(document.get("fit_quality") or {}),
        )
    except ValueError as error:
        raise _fail(source, document.line, str(error)) from None


#: Where a command's coefficient options come from, said when none is given.
COEFFICIENT_SOURCES = (
    "--coef coeff.grad (the scanner's vendor file: ask your site physicist; Siemens keeps it on the scanner host) "
    "or --model model.json (a scanner model learned by trueshape learn)"
)


def read_coefficient_option(
    coefficients: str | os.PathLike[str] | None,
    model: str | os.PathLike[str] | None,
    *,
    r0_mm: float | None = None,
) -> tuple[GradientCoefficients, Path]:
    """Read the one coefficient file a command was given: vendor coefficients (``--coef``) or a model (``--model``).

    Raises
    ------
    CoefficientFileError
        Neither or both given, or a file given to the other option (a ``.grad`` to ``--model``, a ``.json`` to
        ``--coef``): the message names the option it belongs to.

    Examples
    --------
    >>> read_coefficient_option(None, "coeff.grad")
    Traceback (most recent call last):
    ...
    trueshape.errors.CoefficientFileError: coeff.grad: vendor coefficients (.grad): give them with --coef, not --model
    """
    if (coefficients is None) == (model is None):
        given = "both --coef and --model were given" if coefficients is not None else "no coefficients were given"
        raise CoefficientFileError(f"{given}: give exactly one of {COEFFICIENT_SOURCES}")
    if model is not None:
        path = Path(model)
        if path.suffix.lower() in (".grad", ".coef"):
            raise CoefficientFileError(
                f"{path}: vendor coefficients ({path.suffix}): give them with --coef, not --model"
            )
    else:
        path = Path(str(coefficients))
        if path.suffix.lower() == ".json":
            raise CoefficientFileError(f"{path}: a scanner model (.json): give it with --model, not --coef")
    return read_coefficients(path, r0_mm=r0_mm), path


def read_coefficients(path: str | os.PathLike[str], *, r0_mm: float | None = None) -> GradientCoefficients:
    """Read ``.grad``, ``.coef`` or trueshape model ``.json`` by suffix (``r0_mm`` only for ``.coef``)."""
    source = Path(path)
    suffix = source.suffix.lower()
    if r0_mm is not None and suffix in (".grad", ".json"):
        raise CoefficientFileError(f"{source}: states its own reference radius; --r0-mm is for .coef files only")
    if suffix == ".grad":
        return read_siemens_grad(source)
    if suffix == ".coef":
        return read_siemens_coef(source, r0_mm=r0_mm)
    if suffix == ".json":
        return read_scanner_model(source)
    raise CoefficientFileError(f"{source}: unknown coefficient file type {suffix!r} (expected .grad, .coef, .json)")
