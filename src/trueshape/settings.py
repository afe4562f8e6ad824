"""One strictness policy for the whole package, and the one helper that emits warnings.

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
from dataclasses import dataclass

__all__ = ["TrueshapeWarning", "ValidationMode", "settings", "warn_and_log"]

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
