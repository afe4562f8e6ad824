"""Every docstring example in the package runs and shows what it says (the examples are documentation)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import trueshape

MODULES = sorted(name for _, name, _ in pkgutil.walk_packages(trueshape.__path__, "trueshape."))


@pytest.mark.parametrize("name", MODULES)
def test_examples(name: str) -> None:
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False, report=True
    )
    assert failed == 0, f"{failed} of {attempted} examples in {name} failed (printed above)"
