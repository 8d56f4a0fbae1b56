"""Several objectives at once: scorings, Pareto fronts, hypervolume and the refit choice.

A multi-objective search scores each trial with a vector, one entry per
scoring. Every helper here takes the vectors as a matrix (one row per trial)
with one direction per column, ``"maximize"`` or ``"minimize"``; internally
each column is *oriented* (negated where it is minimised) so that higher is
better everywhere.

- :func:`resolve_scorings`: the names, scorers and directions of a list of
  scoring names (fairness scorers, scikit-learn scorers and the cost
  ``"n_trainable_params"``);
- :func:`non_dominated_sort`, :func:`pareto_front_frame`: the Pareto ranks of
  a matrix and the non-dominated complete trials of a study as a table;
- :func:`hypervolume`, :func:`hypervolume_history`: the exact volume the
  trials dominate, and its growth over the trials;
- :func:`utopia_index`, :func:`resolve_refit`: which trial to refit
  (``"utopia"``: MEDFAIR's distance to the optimal point; one objective's
  best; or a callable over ``cv_results_``).

The pruner that consults these rules per epoch is
:class:`skfairtune._pareto_pruning.ParetoSuccessiveHalving`.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "DIRECTIONS",
    "N_TRAINABLE_PARAMS",
    "TrialCost",
    "resolve_scorings",
    "check_directions",
    "oriented",
    "dominance_counts",
    "non_dominated_sort",
    "pareto_front_frame",
    "hypervolume",
    "hypervolume_history",
    "utopia_index",
    "resolve_refit",
    "objective_column",
]

DIRECTIONS = ("maximize", "minimize")
N_TRAINABLE_PARAMS = "n_trainable_params"


# ---------------------------------------------------------------------- scorings
class TrialCost:
    """An objective read from the trained model, not from its predictions.

    ``"n_trainable_params"`` is the only one: the number of parameters a
    trial trains, a cost to minimise. The objective reads it from the
    fitted classifier (:meth:`from_estimator`) or, after the fact, from the
    trial's ``n_trainable_params`` user attribute (:meth:`from_trial`).

    Parameters
    ----------
    name : str
        The scoring name, also the trial user attribute holding the value.
    attribute : str
        The fitted classifier's attribute holding the value.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> cost = TrialCost("n_trainable_params", "n_trainable_params_")
    >>> cost.from_estimator(SimpleNamespace(n_trainable_params_=1200))
    1200.0
    """

    def __init__(self, name: str, attribute: str):
        self.name = name
        self.attribute = attribute

    def __repr__(self) -> str:
        return f"TrialCost({self.name!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, TrialCost) and (self.name, self.attribute) == (other.name, other.attribute)

    def __hash__(self) -> int:
        return hash((self.name, self.attribute))

    def from_estimator(self, estimator) -> float:
        """The cost of a fitted classifier.

        Parameters
        ----------
        estimator : FairTuneClassifier
            A fitted (or prepared) classifier.

        Returns
        -------
        float
        """
        return float(getattr(estimator, self.attribute))

    def from_trial(self, trial) -> float:
        """The cost stored in a trial's user attributes (NaN when absent).

        Parameters
        ----------
        trial : optuna.trial.FrozenTrial or optuna.Trial

        Returns
        -------
        float
        """
        return float(trial.user_attrs.get(self.name, np.nan))


def _valid_scoring_names() -> tuple[list[str], list[str]]:
    from sklearn.metrics import get_scorer_names

    from .scorers import get_fairness_scorer_names

    return [*get_fairness_scorer_names(), N_TRAINABLE_PARAMS], sorted(get_scorer_names())


def resolve_scorings(scoring_list) -> tuple[list[str], list, list[str]]:
    """Names, scorers and directions of a multi-objective ``scoring``.

    Each name is looked up as :class:`FairTuneSearchCV` looks up a single
    ``scoring`` today: a fairness scorer first
    (:func:`skfairtune.scorers.get_fairness_scorer`), then a scikit-learn
    scorer (:func:`sklearn.metrics.get_scorer`). Both are "higher is better"
    (``neg_`` scorers negate a loss), so their direction is ``"maximize"``.
    ``"n_trainable_params"`` is a cost to minimise, read from the trained
    model (a :class:`TrialCost`), not from the predictions.

    Parameters
    ----------
    scoring_list : list or tuple of str, or dict of str to str or callable
        The scoring names, in the order of the study's objectives. A dict
        names custom scorers, as scikit-learn's multi-metric ``scoring``
        does: each value is a scoring name or a scorer callable
        ``scorer(estimator, X, y, **kwargs)`` (higher is better).

    Returns
    -------
    names : list of str
        The objective names (the keys of ``cv_results_`` columns such as
        ``mean_test_<name>``).
    scorers : list
        One scorer per name; a :class:`TrialCost` for ``"n_trainable_params"``.
    directions : list of {"maximize", "minimize"}
        The Optuna study directions.

    Raises
    ------
    ValueError
        For an empty list, a repeated name or an unknown name (the message
        lists the valid ones).
    TypeError
        For anything but a list, tuple or dict of names.

    Examples
    --------
    >>> names, scorers, directions = resolve_scorings(["min_group_auc", "n_trainable_params"])
    >>> names, directions
    (['min_group_auc', 'n_trainable_params'], ['maximize', 'minimize'])
    >>> scorers[1]
    TrialCost('n_trainable_params')
    """
    from sklearn.metrics import get_scorer

    from .scorers import get_fairness_scorer, get_fairness_scorer_names

    if isinstance(scoring_list, dict):
        items = list(scoring_list.items())
    elif isinstance(scoring_list, (list, tuple)):
        items = [(name, name) for name in scoring_list]
    else:
        raise TypeError(
            "`scoring` for several objectives must be a list of scorer names (e.g. "
            f"['min_group_auc', 'overall_auc']) or a dict {{name: scorer}}; got {scoring_list!r}."
        )
    if not items:
        raise ValueError("`scoring` is an empty list; give at least one scorer name, e.g. ['min_group_auc'].")
    names, scorers, directions = [], [], []
    ours, sklearn_names = _valid_scoring_names()
    fairness = set(get_fairness_scorer_names())
    for name, spec in items:
        if not isinstance(name, str):
            raise TypeError(f"`scoring` names must be strings; got {name!r} in {scoring_list!r}.")
        if name in names:
            raise ValueError(f"`scoring` lists {name!r} twice; each objective must appear once.")
        if callable(spec) and not isinstance(spec, str):
            scorer, direction = spec, "maximize"
        elif not isinstance(spec, str):
            raise TypeError(f"`scoring[{name!r}]` must be a scorer name or a callable; got {spec!r}.")
        elif spec == N_TRAINABLE_PARAMS:
            scorer, direction = TrialCost(N_TRAINABLE_PARAMS, "n_trainable_params_"), "minimize"
        elif spec in fairness:
            scorer, direction = get_fairness_scorer(spec), "maximize"
        elif spec in sklearn_names:
            scorer, direction = get_scorer(spec), "maximize"
        else:
            close = difflib.get_close_matches(spec, ours + sklearn_names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"`scoring` contains {spec!r}, which is not a known scorer.{hint} Valid names are the "
                f"fairness scorers and cost {ours}, or a scikit-learn scorer name {sklearn_names}."
            )
        names.append(name)
        scorers.append(scorer)
        directions.append(direction)
    return names, scorers, directions


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
    Optuna computes hypervolumes only in the private ``optuna._hypervolume``
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
    reference = _reference(oriented(matrix, directions), reference_point, directions)
    # Back to the objectives' units, so that hypervolume() orients it once more.
    reference = reference * np.array([1.0 if d == "maximize" else -1.0 for d in directions])
    history = np.zeros(len(matrix))
    for k in range(len(matrix)):
        if k and not np.isfinite(matrix[k]).all():
            history[k] = history[k - 1]
            continue
        history[k] = hypervolume(matrix[: k + 1], directions, reference)
    return history


# ---------------------------------------------------------------------- refit choice
def utopia_index(values, directions) -> int:
    """Row closest (Euclidean) to the per-objective best after min-max scaling.

    Each objective is scaled to [0, 1] over the rows with values (1 = the
    best row on it; a constant objective counts as 1 for all) and the row
    nearest the utopia point (1, ..., 1) wins: MEDFAIR's "distance to
    optimal" rule (Zong et al., ICLR 2023). The winner is always
    non-dominated. Ties go to the earlier row; rows with a NaN are skipped.

    Parameters
    ----------
    values : array-like of shape (n_trials, n_objectives)
    directions : sequence of {"maximize", "minimize"}

    Returns
    -------
    int
        The row index.

    Raises
    ------
    ValueError
        When no row has all its values.

    Examples
    --------
    >>> utopia_index([[0.90, 0.60], [0.80, 0.80], [0.60, 0.90]], ["maximize", "maximize"])
    1
    >>> utopia_index([[0.75, 5000], [0.80, 90000], [0.74, 4000]], ["maximize", "minimize"])
    0
    """
    matrix = oriented(values, directions)
    rows = np.flatnonzero(np.isfinite(matrix).all(axis=1))
    if not rows.size:
        raise ValueError("`values` has no row without NaN (no complete trial); nothing to choose.")
    points = matrix[rows]
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    scaled = np.where(high > low, (points - low) / span, 1.0)
    distance = np.sqrt(((1.0 - scaled) ** 2).sum(axis=1))
    return int(rows[np.argmin(distance)])


def objective_column(name: str) -> str:
    """The ``cv_results_`` column of an objective's mean validation value (scikit-learn's naming).

    Examples
    --------
    >>> objective_column("min_group_auc")
    'mean_test_min_group_auc'
    """
    return f"mean_test_{name}"


def _results_matrix(cv_results, names) -> np.ndarray:
    missing = [objective_column(n) for n in names if objective_column(n) not in cv_results]
    if missing:
        raise KeyError(f"cv_results_ lacks the column(s) {missing}; it must hold one mean_test_<name> per objective.")
    matrix = np.column_stack([np.asarray(cv_results[objective_column(n)], dtype=float) for n in names])
    state = cv_results.get("state")
    if state is not None:
        # Pruned trials stopped at an earlier epoch; their values are not comparable.
        matrix[np.asarray(state, dtype=object) != "complete"] = np.nan
    return matrix


def resolve_refit(refit, names: Sequence[str], directions) -> Callable[[dict], int] | None:
    """Check ``refit`` of a multi-objective search and return the rule that picks its trial.

    Called twice: once before the search (bad values fail before any
    training), and the returned function once after it, on ``cv_results_``.

    Parameters
    ----------
    refit : bool, str or callable
        ``"utopia"`` (or True): :func:`utopia_index` over the complete
        trials. The name of one objective: its best complete trial (ties
        broken by the other objectives in order, so the pick is
        non-dominated). A callable: ``refit(cv_results_) -> int``, the
        row to refit, as scikit-learn's ``refit=callable``. False: no refit
        (returns None).
    names : sequence of str
        The objective names, as :func:`resolve_scorings` returns them.
    directions : sequence of {"maximize", "minimize"}

    Returns
    -------
    select : callable or None
        ``select(cv_results_) -> int``: the row of the trial to refit, a
        complete one. None when ``refit`` is False.

    Raises
    ------
    ValueError
        For an unknown ``refit`` string (the message lists the valid ones),
        or, from ``select``, a callable's index that is out of range or a
        trial that did not complete.
    TypeError
        For any other type, or a callable that returns no integer.

    Examples
    --------
    >>> import numpy as np
    >>> results = {"mean_test_min_group_auc": np.array([0.70, 0.78, 0.72]),
    ...            "mean_test_overall_auc": np.array([0.90, 0.80, 0.88]),
    ...            "state": np.array(["complete", "complete", "complete"], dtype=object)}
    >>> names, directions = ["min_group_auc", "overall_auc"], ["maximize", "maximize"]
    >>> resolve_refit("min_group_auc", names, directions)(results)
    1
    >>> resolve_refit("utopia", names, directions)(results)
    2
    >>> resolve_refit(lambda r: int(np.argmax(r["mean_test_overall_auc"])), names, directions)(results)
    0
    """
    names = list(names)
    directions = check_directions(directions)
    if len(names) != len(directions):
        raise ValueError(f"`names` has {len(names)} entries for {len(directions)} objectives; give one each.")
    if refit is False:
        return None
    if refit is True or (isinstance(refit, str) and refit == "utopia"):
        def select(cv_results):
            return utopia_index(_results_matrix(cv_results, names), directions)

        return select
    if isinstance(refit, str):
        if refit not in names:
            raise ValueError(
                f"`refit={refit!r}` is not an objective of this search; use 'utopia', one of {names}, "
                "a callable cv_results_ -> index, or False."
            )
        first = names.index(refit)
        order = [first, *(k for k in range(len(names)) if k != first)]

        def select(cv_results):
            matrix = oriented(_results_matrix(cv_results, names), directions)
            rows = np.flatnonzero(np.isfinite(matrix).all(axis=1))
            if not rows.size:
                raise ValueError("no complete trial to refit: every trial was pruned or failed.")
            keys = [-matrix[rows, k] for k in reversed(order)]
            return int(rows[np.lexsort([rows, *keys])[0]])

        return select
    if callable(refit):
        def select(cv_results):
            index = refit(cv_results)
            if not isinstance(index, numbers.Integral) or isinstance(index, bool):
                raise TypeError(f"`refit` callable must return the index of a row of cv_results_ (an int); "
                                f"got {index!r}.")
            n = len(next(iter(cv_results.values())))
            if not 0 <= index < n:
                raise ValueError(f"`refit` callable returned {index}, outside cv_results_'s rows 0..{n - 1}.")
            state = cv_results.get("state")
            if state is not None and state[index] != "complete":
                raise ValueError(
                    f"`refit` callable chose row {index}, a {state[index]} trial: only complete trials "
                    "trained all epochs. Choose among rows whose cv_results_['state'] is 'complete'."
                )
            return int(index)

        return select
    raise TypeError(
        f"`refit` must be True, False, 'utopia', an objective name among {names} or a callable "
        f"cv_results_ -> index; got {refit!r}."
    )
