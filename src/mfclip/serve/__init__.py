"""``mfclip serve``: a local HTTP service and web page around :class:`mfclip.Detector`.

FastAPI and uvicorn come with the optional ``serve`` extra (``pip install 'mfclip[serve]'``),
so nothing here is imported until it is used: ``mfclip --help`` works without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import MicroBatcher, create_app

__all__ = ["MicroBatcher", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
