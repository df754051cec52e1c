"""Lazy package attributes (PEP 562), so ``import mfclip`` and ``mfclip --help`` stay fast.

A package maps public names to the submodule that defines them; the submodule (and torch,
transformers, onnxruntime behind it) is imported on first access only, then cached.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, names: Mapping[str, str], public: list[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``; ``names`` maps a name to its submodule.

    Submodules are relative to ``package`` (``"inference.detector"`` or ``".detector"``).
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module.lstrip('.')}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(public)

    return __getattr__, __dir__
