"""Lazy package faces (PEP 562): a package's public names load their private module on first use.

A package whose modules pull in heavy libraries (nibabel, scipy, SimpleITK) lists each public name with
the module that defines it; importing the package then costs nothing until a name is used. Type checkers
read the same names from the package's ``if TYPE_CHECKING:`` imports.

Examples
--------
>>> import types
>>> package = types.ModuleType("example")
>>> getter, lister = lazy_names("example", {"sqrt": "math"}, namespace=vars(package))
>>> getter("sqrt")(9.0), "sqrt" in lister()
(3.0, True)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, origins: Mapping[str, str], *, namespace: MutableMapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a package's ``__getattr__`` and ``__dir__`` for ``origins`` (public name -> defining module).

    ``namespace`` is the package's ``globals()``: a name, once loaded, is kept there (``__getattr__`` then
    runs once per name).
    """

    def __getattr__(name: str) -> Any:
        module = origins.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *origins})

    return __getattr__, __dir__
