"""Figures of a multi-objective search: its Pareto front and its hypervolume over trials.

- :func:`plot_pareto_front`: the complete trials on the plane of two
  objectives, the non-dominated ones outlined and joined, baselines ringed,
  the refit trial starred;
- :func:`plot_hypervolume_history`: the hypervolume of the complete trials
  so far after each trial, for one search or several on one reference point
  (e.g. multi-objective TPE against random search).

Both read a fitted search's ``scoring`` (a list of objective names) and its
``cv_results_`` (one ``mean_test_<name>`` column per objective, ``state``,
``trial_number`` and ``baseline``), draw on a given Matplotlib ``ax`` (or a
new figure) and return the axes. Matplotlib is imported only when a function
is called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..search._multiobjective import objective_column, resolve_scorings
from ..search._pareto import hypervolume_history, non_dominated_sort, oriented

__all__ = ["plot_pareto_front", "plot_hypervolume_history"]

_COMPLETE_COLOR = "tab:blue"
_SELECTED_COLOR = "tab:orange"


def _objectives(search, caller: str):
    """(names, directions, cv_results_) of a fitted multi-objective search."""
    results = getattr(search, "cv_results_", None)
    if results is None:
        raise ValueError(
            f"{caller} needs a fitted multi-objective FairTuneSearchCV; got an unfitted "
            f"{type(search).__name__}: call search.fit(X, y, sensitive_features=...) first."
        )
    scoring = getattr(search, "scoring", None)
    if not isinstance(scoring, (list, tuple, dict)):
        raise ValueError(
            f"{caller} needs a search with several objectives (scoring=[...]); this one has "
            f"scoring={scoring!r}. For one objective use skfairtune.plotting.plot_pareto."
        )
    names, _, directions = resolve_scorings(scoring)
    return names, directions, results


def primary_objective(search, caller: str) -> tuple[str, int] | None:
    """(name, number of objectives) of the objective a one-objective plot draws: None for one
    objective, else the first maximised one (a ValueError naming the two-objective plots if none)."""
    scoring = getattr(search, "scoring", None)
    if not isinstance(scoring, (list, tuple, dict)):
        return None
    names, _, directions = resolve_scorings(scoring)
    name = next((n for n, d in zip(names, directions) if d == "maximize"), None)
    if name is None:
        raise ValueError(
            f"{caller} draws one objective to maximise; this search minimises all of {list(names)}. "
            "Use skfairtune.plotting.plot_pareto_front or plot_hypervolume_history instead."
        )
    return name, len(names)


def scored_objective(search) -> tuple[str, str]:
    """(name, note) of the objective a one-objective plot labels: ``scoring``, or with several
    objectives the :func:`primary_objective` and a note saying so."""
    scoring, primary = getattr(search, "scoring", None), primary_objective(search, "plot")
    if primary is None:
        return (scoring if isinstance(scoring, str) else "objective"), ""
    return primary[0], f" (1 of {primary[1]} objectives; all: plot_pareto_front)"


def single_objective_results(search, results, caller: str) -> dict:
    """``cv_results_`` whose ``mean_test_score`` is :func:`primary_objective`'s column."""
    primary = primary_objective(search, caller)
    return results if primary is None else {**results, "mean_test_score": results[objective_column(primary[0])]}


def _complete_matrix(results, names) -> tuple[np.ndarray, np.ndarray]:
    """(rows of complete trials with all values, their values), in cv_results_ order."""
    matrix = np.column_stack([np.asarray(results[objective_column(n)], dtype=float) for n in names])
    state = np.asarray(results["state"], dtype=object)
    rows = np.flatnonzero((state == "complete") & np.isfinite(matrix).all(axis=1))
    return rows, matrix[rows]


def _label(name: str, direction: str) -> str:
    better = "higher" if direction == "maximize" else "lower"
    return f"Validation {name} ({better} is better)"


def plot_pareto_front(search, *, x: str | None = None, y: str | None = None, ax=None):
    """Place the complete trials on the plane of two objectives, with the Pareto front.

    Trials no other complete trial dominates in *all* objectives are
    outlined in black; the dashed staircase joins the trials non-dominated
    on the two plotted objectives. Rings mark the enqueued baselines (named
    in the legend), the star the trial the search refit (``best_index_``).

    Parameters
    ----------
    search : FairTuneSearchCV
        A fitted search with a list ``scoring``.
    x, y : str, default=None
        The objectives on the axes; None takes the first and the second.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> results = {"mean_test_min_group_auc": np.array([0.70, 0.78, 0.72]),
    ...            "mean_test_overall_auc": np.array([0.90, 0.80, 0.86]),
    ...            "state": np.array(["complete"] * 3, dtype=object),
    ...            "trial_number": np.arange(3), "baseline": np.array([None, "linear", None])}
    >>> search = SimpleNamespace(scoring=["min_group_auc", "overall_auc"], cv_results_=results,
    ...                          best_index_=1)
    >>> ax = plot_pareto_front(search)
    >>> ax.get_xlabel()
    'Validation min_group_auc (higher is better)'
    """
    names, directions, results = _objectives(search, "plot_pareto_front")
    x = names[0] if x is None else x
    y = (names[1] if len(names) > 1 else names[0]) if y is None else y
    for axis, name in (("x", x), ("y", y)):
        if name not in names:
            raise ValueError(f"`{axis}={name!r}` is not an objective of this search; use one of {names}.")
    if x == y:
        raise ValueError(f"`x` and `y` are both {x!r}; choose two different objectives among {names}.")
    rows, values = _complete_matrix(results, names)
    if not len(rows):
        raise ValueError("plot_pareto_front: no trial completed with all its values; nothing to draw.")
    i, j = names.index(x), names.index(y)
    on_front = non_dominated_sort(values, directions) == 0
    pair = [directions[i], directions[j]]
    plane = np.flatnonzero(non_dominated_sort(values[:, [i, j]], pair) == 0)
    plane = plane[np.argsort(oriented(values[plane][:, [i, j]], pair)[:, 0])]

    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5), layout="constrained")
    ax.plot(values[~on_front, i], values[~on_front, j], "o", color=_COMPLETE_COLOR, alpha=0.5,
            label=f"trial ({(~on_front).sum()})")
    ax.plot(values[on_front, i], values[on_front, j], "o", color=_COMPLETE_COLOR, markeredgecolor="black",
            label=f"Pareto-optimal trial ({on_front.sum()})", zorder=3)
    # A staircase through the corners both neighbours dominate (the boundary of what the front
    # dominates): ordered by the x objective's quality, each step goes along y first.
    ax.plot(values[plane, i], values[plane, j], "--", color="0.3", linewidth=1, zorder=2,
            drawstyle="steps-pre")
    selected = getattr(search, "best_index_", None)
    if selected is not None and int(selected) in set(rows.tolist()):
        k = int(np.flatnonzero(rows == int(selected))[0])
        ax.plot(values[k, i], values[k, j], "*", color=_SELECTED_COLOR, markersize=16, markeredgecolor="black",
                label="refit trial", zorder=4)
    names_of = results.get("baseline")
    shapes = iter(["s", "D", "^", "v", "p", "h", "P", "X"])
    n_rings = 0
    for k, row in enumerate(rows):
        name = names_of[row] if names_of is not None else None
        if isinstance(name, str) and name:
            ax.plot(values[k, i], values[k, j], next(shapes, "o"), markersize=11, markerfacecolor="none",
                    markeredgewidth=1.5, color=f"C{2 + n_rings % 8}", label=f"baseline: {name}", zorder=5)
            n_rings += 1
    ax.set_xlabel(_label(x, directions[i]))
    ax.set_ylabel(_label(y, directions[j]))
    title = "Pareto front of the complete trials"
    ax.set_title(title if len(names) == 2 else f"{title}\n(outlined: non-dominated over all {len(names)} objectives)",
                 fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.margins(0.1)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return ax


def plot_hypervolume_history(searches, *, reference_point: Sequence[float] | None = None, ax=None):
    """Plot the hypervolume of the complete trials so far after every trial.

    Trials are taken in the order they ran (``trial_number``); pruned and
    failed trials add nothing. All curves share one reference point, so
    that searches on the same objectives can be compared.

    Parameters
    ----------
    searches : FairTuneSearchCV or mapping of str to FairTuneSearchCV
        One fitted search, or several by label (e.g. ``{"TPE": a,
        "random": b}``) with the same objectives.
    reference_point : sequence of float, default=None
        In the objectives' units; None takes the worst value of each
        objective over the complete trials of all the searches.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> results = {"mean_test_min_group_auc": np.array([0.70, 0.78, 0.72]),
    ...            "mean_test_overall_auc": np.array([0.90, 0.80, 0.86]),
    ...            "state": np.array(["complete"] * 3, dtype=object), "trial_number": np.arange(3)}
    >>> search = SimpleNamespace(scoring=["min_group_auc", "overall_auc"], cv_results_=results)
    >>> ax = plot_hypervolume_history(search, reference_point=[0.5, 0.5])
    >>> ax.lines[0].get_ydata().round(4).tolist()
    [0.08, 0.104, 0.1052]
    """
    labelled = dict(searches) if isinstance(searches, Mapping) else {"search": searches}
    if not labelled:
        raise ValueError("`searches` is empty; pass a fitted search or a dict {label: search}.")
    curves, objectives = {}, None
    for label, search in labelled.items():
        names, directions, results = _objectives(search, "plot_hypervolume_history")
        if objectives is None:
            objectives = (names, directions)
        elif (names, directions) != objectives:
            raise ValueError(f"search {label!r} optimises {names}, not {objectives[0]}; compare searches "
                             "with the same objectives.")
        matrix = np.column_stack([np.asarray(results[objective_column(n)], dtype=float) for n in names])
        matrix[np.asarray(results["state"], dtype=object) != "complete"] = np.nan
        order = np.argsort(np.asarray(results["trial_number"]), kind="stable")
        curves[label] = (np.asarray(results["trial_number"])[order], matrix[order])
    names, directions = objectives
    if reference_point is None:
        everything = np.vstack([m for _, m in curves.values()])
        finite = everything[np.isfinite(everything).all(axis=1)]
        if not len(finite):
            raise ValueError("plot_hypervolume_history: no trial completed with all its values.")
        reference_point = [finite[:, k].min() if d == "maximize" else finite[:, k].max()
                           for k, d in enumerate(directions)]
    elif len(reference_point) != len(names):
        raise ValueError(f"`reference_point` has {len(reference_point)} entries for the {len(names)} "
                         f"objectives {names}; give one each.")

    from matplotlib import pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for label, (numbers, matrix) in curves.items():
        volume = np.zeros(len(matrix))
        first = np.flatnonzero(np.isfinite(matrix).all(axis=1))
        if first.size:  # before the first complete trial the volume is 0
            volume[first[0]:] = hypervolume_history(matrix[first[0]:], directions, reference_point)
        ax.step(numbers, volume, where="post", linewidth=2, label=label if len(curves) > 1 else None)
    ax.set_xlabel("Trial")
    ax.set_ylabel("Hypervolume of the complete trials")
    shown = ", ".join(f"{n}={float(r):.3g}" for n, r in zip(names, reference_point))
    ax.set_title(f"Hypervolume over trials\nreference point: {shown}", fontsize=10)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(loc="best", fontsize=8)
    return ax
