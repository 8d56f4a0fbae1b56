"""Group-aware metrics: worst-group and per-group ROC AUC, AUC gap, EOddsD and DPD."""

from __future__ import annotations

from ._group import (  # noqa: F401 - re-exported
    UndefinedGroupWarning,
    auc_gap,
    demographic_parity_difference,
    equalized_odds_difference,
    group_auc,
    min_group_auc,
    overall_auc,
    worst_group_accuracy,
)

__all__ = [
    "UndefinedGroupWarning",
    "auc_gap",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "group_auc",
    "min_group_auc",
    "overall_auc",
    "worst_group_accuracy",
]
