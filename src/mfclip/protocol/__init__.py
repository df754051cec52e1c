"""Evaluation protocols and ablation studies: the research app beside the library.

:mod:`.spec` parses protocol files, :mod:`.runner` indexes, trains and tests one configuration
of a protocol (and writes the plain protocol table), :mod:`.ablations` is the ablation
registry, :mod:`.study` runs a study and :mod:`.table` builds its table.
"""

from __future__ import annotations

from .ablations import Ablation, load_ablations, resolve_ablations
from .runner import ProtocolRun, run_protocol
from .spec import PROTOCOL_DIR, Protocol, list_protocols, load_protocol
from .study import StudyOptions, run_ablations
from .table import AblationTable, RowResult

__all__ = [
    "PROTOCOL_DIR",
    "Ablation",
    "AblationTable",
    "Protocol",
    "ProtocolRun",
    "RowResult",
    "StudyOptions",
    "list_protocols",
    "load_ablations",
    "load_protocol",
    "resolve_ablations",
    "run_ablations",
    "run_protocol",
]
