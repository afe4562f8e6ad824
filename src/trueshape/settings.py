"""One strictness policy for the whole package, the one helper that emits warnings, and option parsing.

Examples
--------
>>> from trueshape.settings import ValidationMode, settings
>>> settings.validation_mode is ValidationMode.WARN
True
"""

from __future__ import annotations

import enum
import logging
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from typing import TypeVar, overload

from trueshape.errors import TrueshapeError

__all__ = ["TrueshapeWarning", "ValidationMode", "parse_choice", "settings", "warn_and_log"]

_Choice = TypeVar("_Choice", bound=enum.Enum)

logger = logging.getLogger("trueshape")


class ValidationMode(enum.Enum):
    """What to do with a recoverable problem: ignore it, warn about it, or raise."""

    IGNORE = "ignore"
    WARN = "warn"
    RAISE = "raise"


class TrueshapeWarning(UserWarning):
    """A recoverable problem trueshape worked around (the message says how)."""


@dataclass
class Settings:
    """Process-wide options (the CLI sets them from flags)."""

    validation_mode: ValidationMode = ValidationMode.WARN


settings = Settings()


def warn_and_log(message: str, *, stacklevel: int = 2) -> None:
    """Warn once through :mod:`warnings` and the ``trueshape`` logger, honouring the validation mode."""
    if settings.validation_mode is ValidationMode.IGNORE:
        return
    logger.warning(message)
    warnings.warn(message, TrueshapeWarning, stacklevel=stacklevel + 1)


@overload
def parse_choice(enum_type: type[_Choice], value: None, option: str, *, unlisted: Collection[_Choice] = ()) -> None: ...
@overload
def parse_choice(
    enum_type: type[_Choice], value: _Choice | str, option: str, *, unlisted: Collection[_Choice] = ()
) -> _Choice: ...
def parse_choice(
    enum_type: type[_Choice], value: _Choice | str | None, option: str, *, unlisted: Collection[_Choice] = ()
) -> _Choice | None:
    """Return the member of ``enum_type`` a user's ``value`` names (any case), None for None.

    ``option`` names the option in the error; ``unlisted`` members are not offered there.

    Raises
    ------
    TrueshapeError
        ``value`` names no member (the message lists the values that exist).

    Examples
    --------
    >>> parse_choice(ValidationMode, "RAISE", "--validation")
    <ValidationMode.RAISE: 'raise'>
    >>> parse_choice(ValidationMode, "strict", "--validation")
    Traceback (most recent call last):
    ...
    trueshape.errors.TrueshapeError: --validation 'strict' is not one of: ignore, warn, raise
    """
    if value is None or isinstance(value, enum_type):
        return value
    text = str(value).strip()
    for candidate in (text, text.upper(), text.lower()):
        try:
            return enum_type(candidate)
        except ValueError:
            continue
    choices = ", ".join(str(member.value) for member in enum_type if member not in unlisted)
    raise TrueshapeError(f"{option} {value!r} is not one of: {choices}")
