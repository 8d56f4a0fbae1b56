"""The FairTune search: FairTuneSearchCV, its baselines, pruners and selection rules."""

from __future__ import annotations

from ._search import (  # noqa: F401 - re-exported
    FairTuneSearchCV,
    BASELINES,
)
from ._pruners import (  # noqa: F401 - re-exported
    ParetoSuccessiveHalving,
    EPOCH_VALUES_ATTR,
    RUNGS_ATTR,
    pareto_prune_decision,
    record_epoch_values,
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
