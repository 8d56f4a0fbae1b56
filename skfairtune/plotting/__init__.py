"""Figures of a fitted search: mask selection, convergence, reports and Pareto fronts."""

from __future__ import annotations

from ._pareto import plot_hypervolume_history, plot_pareto_front  # noqa: F401 - re-exported
from ._reports import plot_group_auc_curves, plot_report  # noqa: F401 - re-exported
from ._search import plot_mask_selection, plot_pareto, plot_search_convergence  # noqa: F401 - re-exported

__all__ = [
    "plot_hypervolume_history",
    "plot_mask_selection",
    "plot_pareto_front",
    "plot_search_convergence",
    "plot_pareto",
    "plot_group_auc_curves",
    "plot_report",
]
