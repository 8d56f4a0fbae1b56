"""The FairTune search: FairTuneSearchCV, its baselines, pruners and selection rules."""

from __future__ import annotations

from ._pruners import (  # noqa: F401 - re-exported
    EPOCH_VALUES_ATTR,
    RUNGS_ATTR,
    ParetoSuccessiveHalving,
    pareto_prune_decision,
    record_epoch_values,
)
from ._search import (  # noqa: F401 - re-exported
    BASELINES,
    FairTuneSearchCV,
)

__all__ = [
    "FairTuneSearchCV",
    "BASELINES",
    "ParetoSuccessiveHalving",
    "EPOCH_VALUES_ATTR",
    "RUNGS_ATTR",
    "pareto_prune_decision",
    "record_epoch_values",
]
