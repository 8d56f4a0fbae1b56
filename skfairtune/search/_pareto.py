"""Pareto order of trial vectors: directions, dominance, non-dominated sorting, hypervolume.

Every function takes the vectors as a matrix (one row per trial) with one
direction per column, ``"maximize"`` or ``"minimize"``; internally each
column is *oriented* (negated where it is minimised) so that higher is
better everywhere.

- :func:`non_dominated_sort`, :func:`pareto_front_frame`: the Pareto ranks of
  a matrix and the non-dominated complete trials of a study as a table;
- :func:`hypervolume`, :func:`hypervolume_history`: the exact volume the
  trials dominate, and its growth over the trials.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "DIRECTIONS",
    "check_directions",
    "oriented",
    "dominance_counts",
    "non_dominated_sort",
    "pareto_front_frame",
    "hypervolume",
    "hypervolume_history",
]

DIRECTIONS = ("maximize", "minimize")


# ---------------------------------------------------------------------- Pareto order
def check_directions(directions) -> list[str]:
    """``directions`` as a list of ``"maximize"`` / ``"minimize"``.

    Parameters
    ----------
    directions : sequence of str or optuna.study.StudyDirection
        One direction per objective.

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        For an empty sequence or an unknown direction.

    Examples
    --------
    >>> check_directions(["maximize", "MINIMIZE"])
    ['maximize', 'minimize']
    """
    if isinstance(directions, str) or not isinstance(directions, Sequence) or not directions:
        raise ValueError(
            f"`directions` must be a non-empty list with one of {DIRECTIONS} per objective; got {directions!r}."
        )
    out = []
    for direction in directions:
        # optuna.study.StudyDirection.MAXIMIZE has name "MAXIMIZE".
        text = getattr(direction, "name", direction)
        text = text.lower() if isinstance(text, str) else text
        if text not in DIRECTIONS:
            raise ValueError(
                f"`directions` contains {direction!r}; each direction must be one of {DIRECTIONS}."
            )
        out.append(text)
    return out


def _matrix(values, n_objectives: int | None = None, *, allow_nan: bool = True) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim == 1 and n_objectives is not None and array.size == n_objectives:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"`values` must be a non-empty 2-D array (one row per trial, one column per objective); "
            f"got shape {array.shape}."
        )
    if n_objectives is not None and array.shape[1] != n_objectives:
        raise ValueError(
            f"`values` has {array.shape[1]} columns but `directions` names {n_objectives} objectives; "
            "give one direction per column."
        )
    if not allow_nan and not np.isfinite(array).all():
        raise ValueError("`values` holds NaN or infinite entries; drop the trials without values first.")
    return array


def oriented(values, directions) -> np.ndarray:
    """``values`` with minimised columns negated, so that higher is better in every column.

    Parameters
    ----------
    values : array-like of shape (n_trials, n_objectives)
    directions : sequence of {"maximize", "minimize"}

    Returns
    -------
    ndarray of shape (n_trials, n_objectives)

    Examples
    --------
    >>> oriented([[0.8, 100.0]], ["maximize", "minimize"]).tolist()
    [[0.8, -100.0]]
    """
    directions = check_directions(directions)
    array = _matrix(values, len(directions))
    signs = np.array([1.0 if d == "maximize" else -1.0 for d in directions])
    return array * signs


def dominance_counts(candidates: np.ndarray, others: np.ndarray) -> np.ndarray:
    """How many rows of ``others`` Pareto-dominate each row of ``candidates`` (both oriented).

    Row ``a`` dominates ``b`` when ``a >= b`` in every column and ``a > b``
    in at least one. NaN never dominates and is never dominated.

    Parameters
    ----------
    candidates : ndarray of shape (n, m)
        Oriented vectors (higher is better).
    others : ndarray of shape (k, m)
        Oriented vectors they are compared with.

    Returns
    -------
    ndarray of int of shape (n,)

    Examples
    --------
    >>> dominance_counts(np.array([[0.5, 0.5]]), np.array([[0.6, 0.5], [0.9, 0.1], [0.5, 0.5]])).tolist()
    [1]
    """
    candidates = np.asarray(candidates, dtype=float)
    others = np.asarray(others, dtype=float)
    if len(others) == 0:
        return np.zeros(len(candidates), dtype=int)
    weakly = (others[None, :, :] >= candidates[:, None, :]).all(axis=2)
    strictly = (others[None, :, :] > candidates[:, None, :]).any(axis=2)
    return (weakly & strictly).sum(axis=1)


def non_dominated_sort(values, directions) -> np.ndarray:
    """Pareto rank of every row: 0 for the non-dominated rows, 1 for those dominated only by rank 0, ...

    Rows with a NaN get rank -1 (no rank): a trial without values is on no
    front.

    Parameters
    ----------
    values : array-like of shape (n_trials, n_objectives)
        One row per trial.
    directions : sequence of {"maximize", "minimize"}
        One per column.

    Returns
    -------
    ranks : ndarray of int of shape (n_trials,)

    Examples
    --------
    >>> non_dominated_sort([[0.9, 0.1], [0.5, 0.5], [0.4, 0.4], [0.1, 0.9]],
    ...                    ["maximize", "maximize"]).tolist()
    [0, 0, 1, 0]
    >>> non_dominated_sort([[0.9, 10], [0.9, 20]], ["maximize", "minimize"]).tolist()
    [0, 1]
    """
    matrix = oriented(values, directions)
    ranks = np.full(len(matrix), -1, dtype=int)
    remaining = np.flatnonzero(np.isfinite(matrix).all(axis=1))
    rank = 0
    while remaining.size:
        points = matrix[remaining]
        front = dominance_counts(points, points) == 0
        ranks[remaining[front]] = rank
        remaining = remaining[~front]
        rank += 1
    return ranks


def _frozen_trials(study_or_trials):
    import optuna

    if isinstance(study_or_trials, optuna.Study):
        return study_or_trials.get_trials(deepcopy=False), study_or_trials
    try:
        return list(study_or_trials), None
    except TypeError:
        raise TypeError(
            f"`study_or_trials` must be an optuna.Study or a list of FrozenTrial; got "
            f"{type(study_or_trials).__name__}."
        ) from None


def pareto_front_frame(study_or_trials, *, names: Sequence[str] | None = None, directions=None):
    """The non-dominated complete trials as a table: their parameters and values.

    Parameters
    ----------
    study_or_trials : optuna.Study or list of optuna.trial.FrozenTrial
        A multi-objective study, or its trials.
    names : sequence of str, default=None
        Objective names, used as column names. None takes the study's
        ``metric_names`` when it has them, else ``value_0``, ``value_1``, ...
    directions : sequence of {"maximize", "minimize"}, default=None
        Required with a list of trials; a study's own directions otherwise.

    Returns
    -------
    front : pandas.DataFrame
        One row per non-dominated complete trial, best on the first
        objective first: ``trial_number``, the trial's parameters (the
        estimator parameters the search stored in the ``params`` user
        attribute, so ``mask`` is a bit string and ``lr`` the learning
        rate; else the Optuna parameters), ``baseline`` (the preset an
        enqueued baseline trained, else None) and one column per objective.

    Examples
    --------
    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(directions=["maximize", "minimize"])
    >>> for mask, auc, cost in [("1100", 0.8, 20), ("1000", 0.7, 10), ("1110", 0.75, 30)]:
    ...     trial = study.ask()
    ...     trial.set_user_attr("params", {"mask": mask, "lr": 1e-3})
    ...     _ = study.tell(trial, [auc, cost])
    >>> pareto_front_frame(study, names=["min_group_auc", "n_trainable_params"])
       trial_number  mask     lr baseline  min_group_auc  n_trainable_params
    0             0  1100  0.001     None            0.8                20.0
    1             1  1000  0.001     None            0.7                10.0
    """
    import optuna
    import pandas as pd

    trials, study = _frozen_trials(study_or_trials)
    if directions is None:
        if study is None:
            raise ValueError("`directions` is required when `study_or_trials` is a list of trials.")
        directions = study.directions
    directions = check_directions(directions)
    if names is None and study is not None and study.metric_names is not None:
        names = study.metric_names
    names = list(names) if names is not None else [f"value_{k}" for k in range(len(directions))]
    if len(names) != len(directions):
        raise ValueError(f"`names` has {len(names)} entries for {len(directions)} objectives; give one each.")
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.values is not None
                and len(t.values) == len(directions) and np.isfinite(t.values).all()]
    columns = ["trial_number", "baseline", *names]
    if not complete:
        return pd.DataFrame(columns=columns)
    values = np.array([t.values for t in complete], dtype=float)
    ranks = non_dominated_sort(values, directions)
    order = np.flatnonzero(ranks == 0)
    key = oriented(values[order], directions)[:, 0]
    order = order[np.lexsort((order, -key))]  # best on the first objective first, then trial order
    rows = []
    for i in order:
        trial = complete[i]
        params = trial.user_attrs.get("params") or dict(trial.params)
        row = {"trial_number": trial.number, **params, "baseline": trial.user_attrs.get("baseline")}
        row.update(zip(names, (v.item() if isinstance(v, np.generic) else v for v in trial.values)))
        rows.append(row)
    frame = pd.DataFrame(rows)
    # pandas would show a missing baseline as NaN next to preset names; None says "no baseline".
    frame["baseline"] = frame["baseline"].astype(object).where(frame["baseline"].notna(), None)
    params = [c for c in frame.columns if c not in columns]
    return frame[["trial_number", *params, "baseline", *names]]


# ---------------------------------------------------------------------- hypervolume
def _hypervolume_loss(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact volume dominated by ``points`` (minimised, all <= ``reference``) below ``reference``.

    Two objectives: a sweep. More: slice along the last objective (the
    hypervolume-by-slicing-objectives recursion), exact and fast enough
    for the few hundred trials of a search in 3-4 objectives.
    """
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(reference[0] - points[:, 0].min())
    points = points[np.lexsort(points.T[::-1])]  # first objective ascending, ties by the next
    if points.shape[1] == 2:
        volume, best_y = 0.0, reference[1]
        for x, y in points:
            if y < best_y:
                volume += (reference[0] - x) * (best_y - y)
                best_y = y
        return float(volume)
    points = points[np.argsort(points[:, -1], kind="stable")]
    volume = 0.0
    for i in range(len(points)):
        upper = points[i + 1, -1] if i + 1 < len(points) else reference[-1]
        depth = upper - points[i, -1]
        if depth > 0:
            volume += depth * _hypervolume_loss(points[: i + 1, :-1], reference[:-1])
    return float(volume)


def _reference(matrix: np.ndarray, reference_point, directions) -> np.ndarray:
    """The oriented reference point: the given one, else the worst value per objective."""
    if reference_point is None:
        finite = matrix[np.isfinite(matrix).all(axis=1)]
        if not len(finite):
            raise ValueError("`values` has no row without NaN; no hypervolume can be computed.")
        return finite.min(axis=0)
    reference = oriented(np.asarray(reference_point, dtype=float).reshape(1, -1), directions)[0]
    if not np.isfinite(reference).all():
        raise ValueError(f"`reference_point` must be finite; got {reference_point!r}.")
    return reference


def hypervolume(values, directions, reference_point=None) -> float:
    """The exact hypervolume the rows dominate, measured from ``reference_point``.

    Rows with a NaN and rows no better than the reference point in some
    objective add nothing.

    Parameters
    ----------
    values : array-like of shape (n_trials, n_objectives)
    directions : sequence of {"maximize", "minimize"}
    reference_point : array-like of shape (n_objectives,), default=None
        In the objectives' own units (e.g. ``[0.5, n_params_full]`` for an
        AUC and a parameter count). None takes the worst value of each
        objective over ``values``; pass a fixed point to compare searches.

    Returns
    -------
    float

    Notes
    -----
    Optuna computes hypervolumes only in a private
    module, whose name and signature may change between releases; this
    small exact computation (a sweep in 2-D, slicing above) depends on
    nothing private.

    Examples
    --------
    >>> hypervolume([[0.8, 0.6], [0.6, 0.8]], ["maximize", "maximize"], reference_point=[0.5, 0.5])
    0.05
    """
    directions = check_directions(directions)
    matrix = oriented(values, directions)
    reference = _reference(matrix, reference_point, directions)
    keep = np.isfinite(matrix).all(axis=1) & (matrix > reference).all(axis=1)
    points = -matrix[keep]
    points = points[dominance_counts(-points, -points) == 0]
    return round(_hypervolume_loss(points, -reference), 12)


def hypervolume_history(values, directions, reference_point=None) -> np.ndarray:
    """Hypervolume of the first k rows, for k = 1..n (trials in the order they ran).

    Parameters
    ----------
    values : array-like of shape (n_trials, n_objectives)
        NaN rows (pruned or failed trials) keep the previous volume.
    directions : sequence of {"maximize", "minimize"}
    reference_point : array-like of shape (n_objectives,), default=None
        As in :func:`hypervolume`; None takes the worst value over all rows,
        so that the volumes of all prefixes share one reference.

    Returns
    -------
    ndarray of shape (n_trials,)

    Examples
    --------
    >>> hypervolume_history([[0.6, 0.6], [0.7, 0.55], [0.55, 0.55]], ["maximize", "maximize"],
    ...                     reference_point=[0.5, 0.5]).round(4).tolist()
    [0.01, 0.015, 0.015]
    """
    directions = check_directions(directions)
    matrix = _matrix(values, len(directions))
    points = oriented(matrix, directions)
    reference = _reference(points, reference_point, directions)
    history = np.zeros(len(points))
    front = np.empty((0, points.shape[1]))  # the non-dominated rows so far, oriented
    volume = 0.0
    for k, point in enumerate(points):
        # Only a row that enters the front changes the volume: recompute then, on the front alone.
        if np.isfinite(point).all() and (point > reference).all() and not dominance_counts(point[None], front)[0]:
            front = np.vstack([front[dominance_counts(front, point[None]) == 0], point])
            volume = round(_hypervolume_loss(-front, -reference), 12)
        history[k] = volume
    return history
