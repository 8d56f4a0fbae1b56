"""Figures of a fitted search: mask selection, convergence, reports and Pareto fronts."""

from __future__ import annotations

from ._search import (  # noqa: F401 - re-exported
    plot_group_auc_curves,
    plot_hypervolume_history,
    plot_mask_selection,
    plot_pareto,
    plot_pareto_front,
    plot_report,
    plot_search_convergence,
)

__all__ = [
    "plot_hypervolume_history",
    "plot_mask_selection",
    "plot_pareto_front",
    "plot_search_convergence",
    "plot_pareto",
    "plot_group_auc_curves",
    "plot_report",
]
