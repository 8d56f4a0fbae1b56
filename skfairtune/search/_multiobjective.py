"""Several objectives in one search: their scorings and the choice of the trial to refit.

A multi-objective search scores each trial with a vector, one entry per
scoring (the Pareto order of such vectors is in :mod:`skfairtune.search._pareto`).

- :func:`resolve_scorings`: the names, scorers and directions of a list of
  scoring names (fairness scorers, scikit-learn scorers and the cost
  ``"n_trainable_params"``);
- :func:`utopia_index`, :func:`resolve_refit`: which trial to refit
  (``"utopia"``: MEDFAIR's distance to the optimal point; one objective's
  best; or a callable over ``cv_results_``).

The pruner that stops trials on the Pareto order per epoch is
:class:`skfairtune.search._pruners.ParetoSuccessiveHalving` (built for a search by
:func:`skfairtune.search._pruners.pareto_pruner`).
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import check_scoring, get_scorer, get_scorer_names

from ..scorers import get_fairness_scorer, get_fairness_scorer_names
from ._pareto import check_directions, oriented

__all__ = [
    "Scoring",
    "resolve_search_scoring",
    "N_TRAINABLE_PARAMS",
    "TrialCost",
    "resolve_scorings",
    "utopia_index",
    "resolve_refit",
    "objective_column",
]

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

    def from_trainer(self, trainer) -> float:
        """The cost of a trial being trained (a ``skfairtune._training._trainer.Trainer``, which
        names the value as the scoring does, without the fitted attribute's ``_``)."""
        return float(getattr(trainer, self.name))

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


@dataclass(frozen=True)
class Scoring:
    """A search's resolved ``scoring``: one objective, or several (a multi-objective study).

    Attributes
    ----------
    names : tuple of str
        Objective names; a single callable scoring is named ``"score"``.
    scorers : tuple
        Scorer callables, or :class:`TrialCost` for costs read from the model.
    directions : tuple of {"maximize", "minimize"}
    multi : bool
        True for a list or dict ``scoring`` (even of one entry): the study has
        ``directions`` and ``cv_results_`` has one column set per name.
    """

    names: tuple
    scorers: tuple
    directions: tuple
    multi: bool

    @property
    def prediction_scorers(self) -> list:
        """The scorers that read predictions (not costs)."""
        return [s for s in self.scorers if not isinstance(s, TrialCost)]

    def scorer_for_score(self, refit):
        """The scorer ``FairTuneSearchCV.score`` uses: the ``refit`` objective when it names one
        that reads predictions, else the first such objective."""
        if not self.multi:
            return self.scorers[0]
        named = dict(zip(self.names, self.scorers))
        if isinstance(refit, str) and named.get(refit) in self.prediction_scorers:
            return named[refit]
        return self.prediction_scorers[0]

    def scorer_attribute(self):
        """``scorer_`` as scikit-learn sets it: the scorer, or a dict of them by name."""
        return dict(zip(self.names, self.scorers)) if self.multi else self.scorers[0]


def resolve_search_scoring(scoring) -> Scoring:
    """``FairTuneSearchCV.scoring`` as a :class:`Scoring` (errors name the valid choices).

    Examples
    --------
    >>> resolve_search_scoring("min_group_auc").multi
    False
    >>> s = resolve_search_scoring(["min_group_auc", "n_trainable_params"])
    >>> s.names, s.directions
    (('min_group_auc', 'n_trainable_params'), ('maximize', 'minimize'))
    """
    if isinstance(scoring, (list, tuple, dict)):
        names, scorers, directions = resolve_scorings(scoring)
        return Scoring(tuple(names), tuple(scorers), tuple(directions), multi=True)
    if isinstance(scoring, str) and scoring in get_fairness_scorer_names():
        scorer = get_fairness_scorer(scoring)
    elif isinstance(scoring, str):
        try:
            scorer = check_scoring(None, scoring=scoring)
        except ValueError as exc:
            raise ValueError(f"`scoring={scoring!r}` is not a fairness scorer ({get_fairness_scorer_names()}) "
                             f"nor a scikit-learn scorer: {exc}") from None
    elif callable(scoring):
        scorer = scoring
    else:
        raise TypeError(f"`scoring` must be a scorer name, a callable, or a list/dict of them; got {scoring!r}.")
    return Scoring((scoring if isinstance(scoring, str) else "score",), (scorer,), ("maximize",), multi=False)
