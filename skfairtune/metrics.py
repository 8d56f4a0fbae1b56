"""Group-fairness metrics over patient subgroups.

All metrics follow fairlearn's signature, ``f(y_true, y_score_or_pred, *,
sensitive_features, ...)``, and are computed over the whole set they are given:
never per batch, never averaged over batches.

Per-group ROC AUC is computed in a single vectorised rank-based pass (the
Mann-Whitney U statistic with average ranks for ties): the samples are sorted
once by (group, score), so the cost is one sort of ``n`` samples whatever the
number of groups. The result equals :func:`sklearn.metrics.roc_auc_score`
applied per group.

Groups
------
``sensitive_features`` may be a 1-D list, array or :class:`pandas.Series`, or a
2-D array, :class:`pandas.DataFrame` or dict of columns; several columns define
intersectional groups (e.g. age x sex). Group labels follow
:class:`fairlearn.metrics.MetricFrame`: a plain label for one column and a
tuple ``(age, sex)`` for several, held in a :class:`pandas.Index` or
:class:`pandas.MultiIndex` whose names are the column names (Series name,
DataFrame column, or ``sensitive_feature_<i>``). Only groups that occur in the
data are reported, sorted by value as MetricFrame sorts them (also for
categoricals, whose category order is ignored). Rows are matched by position,
never by pandas index.

Undefined groups
----------------
A group whose ``y_true`` holds a single class has no ROC AUC, no true positive
rate or no false positive rate. By default (``on_undefined="raise"``) the
metrics raise a :class:`ValueError` naming such groups and their class counts;
``on_undefined="drop"`` removes their samples with an
:class:`UndefinedGroupWarning`. A NaN never enters a minimum, maximum or mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
import warnings

import fairlearn.metrics
import numpy as np
import pandas as pd

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

_MAX_LISTED = 10  # items listed in an error message before "... and N more"
_ON_UNDEFINED = ("raise", "drop")
_METHODS = ("between_groups", "to_overall")
_AGGS = ("worst_case", "mean")


class UndefinedGroupWarning(UserWarning):
    """Warning raised when groups with a single class in ``y_true`` are dropped.

    Their ROC AUC (and their true or false positive rate) is undefined, so a
    metric computed with ``on_undefined="drop"`` ignores their samples, and
    :func:`skfairtune.reports.fairness_report` shows NaN for them.
    """


# --------------------------------------------------------------------------
# Input validation shared by metrics, scorers and reports
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _GroupData:
    """Validated, encoded inputs of a group metric.

    Attributes
    ----------
    y : ndarray of shape (n_samples,)
        ``y_true == pos_label`` as bool for binary metrics, else the raw labels.
    response : ndarray of shape (n_samples,)
        float64 scores, ``y_pred == pos_label`` as bool, or raw predicted labels.
    codes : ndarray of shape (n_samples,)
        Integer group code of each sample, in ``range(len(groups))``.
    groups : pandas.Index
        Group labels; ``groups[k]`` is the group of code ``k``.
    pos_label : object
        Positive class (None for non-binary metrics).
    """

    y: np.ndarray
    response: np.ndarray
    codes: np.ndarray
    groups: pd.Index
    pos_label: Any

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def class_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Return positives and negatives of ``y`` per group."""
        n_total = np.bincount(self.codes, minlength=self.n_groups)
        n_pos = np.bincount(self.codes[self.y], minlength=self.n_groups)
        return n_pos, n_total - n_pos

    def features_frame(self) -> pd.DataFrame:
        """Return one column per sensitive feature, decoded, one row per sample."""
        return self.groups.take(self.codes).to_frame(index=False)

    def subset(self, keep_groups: np.ndarray) -> _GroupData:
        """Return the samples of the groups where ``keep_groups`` is True."""
        rows = keep_groups[self.codes]
        # Re-number kept groups 0..k-1 so bincount-based code stays dense.
        new_code = np.cumsum(keep_groups) - 1
        return _GroupData(
            y=self.y[rows],
            response=self.response[rows],
            codes=new_code[self.codes[rows]],
            groups=self.groups[keep_groups],
            pos_label=self.pos_label,
        )


def _format_list(items: list, limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", ... and {len(items) - limit} more"
    return shown


def _count_at_positions(mask: np.ndarray, what: str) -> str:
    positions = np.flatnonzero(mask)
    first = positions[:_MAX_LISTED].tolist()
    where = "at positions" if len(positions) <= _MAX_LISTED else "first at positions"
    return f"{len(positions)} {what} {where} {first}"


def _as_1d(values: Any, name: str, *, scores: bool = False) -> np.ndarray:
    """Return ``values`` as a 1-D array, with a fix-it message otherwise."""
    if values is None:
        raise ValueError(f"`{name}` is None; pass an array-like of shape (n_samples,).")
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2 and scores:
        raise ValueError(
            f"`{name}` has shape {array.shape}; pass the positive-class column only, "
            "e.g. `estimator.predict_proba(X)[:, 1]`."
        )
    if array.ndim != 1:
        raise ValueError(
            f"`{name}` must be 1-D with shape (n_samples,); got shape {array.shape}."
        )
    return array


def _check_missing(array: np.ndarray, name: str) -> None:
    if array.dtype.kind in "biu":  # integers and bools cannot hold NaN
        return
    missing = pd.isna(array)
    if missing.any():
        raise ValueError(
            f"`{name}` has {_count_at_positions(missing, 'missing values (None/NaN)')}; "
            "drop or impute them before calling."
        )


def _sensitive_columns(sensitive_features: Any) -> list[tuple[str, Any]]:
    """Split ``sensitive_features`` into named 1-D columns, fairlearn-style."""
    if sensitive_features is None:
        raise ValueError(
            "`sensitive_features` is None; pass the group of every sample as a 1-D "
            "array-like, or a 2-D array / DataFrame for intersectional groups."
        )
    if isinstance(sensitive_features, Mapping):
        sensitive_features = pd.DataFrame(dict(sensitive_features))
    if isinstance(sensitive_features, pd.DataFrame):
        return [(str(c), sensitive_features.iloc[:, i]) for i, c in
                enumerate(sensitive_features.columns)]
    if isinstance(sensitive_features, pd.Series):
        name = sensitive_features.name
        return [("sensitive_feature_0" if name is None else str(name), sensitive_features)]
    array = np.asarray(sensitive_features)
    if array.ndim == 1:
        return [("sensitive_feature_0", array)]
    if array.ndim == 2:
        return [(f"sensitive_feature_{i}", array[:, i]) for i in range(array.shape[1])]
    raise ValueError(
        "`sensitive_features` must be 1-D (one feature) or 2-D (one column per "
        f"feature); got shape {array.shape}."
    )


def _factorize(column: Any) -> tuple[np.ndarray, pd.Index]:
    if isinstance(getattr(column, "dtype", None), pd.CategoricalDtype):
        # Sort categories by value, not category order, as MetricFrame does,
        # so that metrics and reports list groups in the same order.
        column = np.asarray(column, dtype=object)
    try:
        codes, uniques = pd.factorize(column, sort=True)
    except TypeError:
        # Mixed, unorderable labels (e.g. 1 and "a"): keep order of appearance.
        codes, uniques = pd.factorize(column, sort=False)
    return codes.astype(np.intp, copy=False), pd.Index(uniques)


def _encode_groups(sensitive_features: Any, n_samples: int) -> tuple[np.ndarray, pd.Index]:
    """Return integer group codes and the matching (Multi)Index of group labels."""
    columns = _sensitive_columns(sensitive_features)
    if not columns:
        raise ValueError("`sensitive_features` has no columns; pass at least one feature.")
    for name, column in columns:
        if len(column) != n_samples:
            raise ValueError(
                f"`sensitive_features` has {len(column)} rows but `y_true` has "
                f"{n_samples} samples; pass one group per sample."
            )
        label = "`sensitive_features`"
        if len(columns) > 1:
            label += f" column {name!r}"
        missing = np.asarray(pd.isna(column))
        if missing.any():
            raise ValueError(
                f"{label} has {_count_at_positions(missing, 'missing values (None/NaN)')}; "
                "drop or impute them before calling."
            )

    encoded = [_factorize(column) for _, column in columns]
    names = [name for name, _ in columns]
    if len(encoded) == 1:
        codes, uniques = encoded[0]
        return codes, uniques.rename(names[0])

    # Mixed-radix key whose numeric order is the lexicographic order of tuples.
    key = np.zeros(n_samples, dtype=np.int64)
    for codes, uniques in encoded:
        key = key * len(uniques) + codes
    observed, combined = np.unique(key, return_inverse=True)
    arrays, rest = [], observed
    for codes, uniques in reversed(encoded):
        arrays.append(uniques.take(rest % len(uniques)))
        rest = rest // len(uniques)
    groups = pd.MultiIndex.from_arrays(arrays[::-1], names=names)
    return combined.astype(np.intp, copy=False), groups


def _resolve_pos_label(labels: np.ndarray, pos_label: Any, source: str, caller: str) -> Any:
    """Pick the positive class among ``labels`` the way scikit-learn does."""
    present = labels.tolist()
    if pos_label is not None:
        if pos_label not in present:
            raise ValueError(
                f"`pos_label`={pos_label!r} is not present in {source}; its labels "
                f"are {sorted(present, key=str)}. Pass one of them."
            )
        return pos_label
    as_set = set(present)
    if as_set <= {0, 1} or as_set <= {-1, 1}:
        return True if all(isinstance(v, bool) for v in present) else 1
    raise ValueError(
        f"{source} has labels {sorted(present, key=str)}; pass `pos_label` to {caller} "
        "to say which one is the positive class. It is only inferred for labels "
        "{0, 1}, {-1, 1} or {False, True}."
    )


def _validate_group_inputs(
    y_true: Any,
    y_response: Any,
    sensitive_features: Any,
    *,
    response: Literal["score", "label", "multiclass_label"],
    caller: str,
    pos_label: Any = None,
) -> _GroupData:
    """Check and encode the inputs of a group metric before any real work.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_response : array-like of shape (n_samples,)
        Scores (``response="score"``) or predicted labels.
    sensitive_features : array-like or DataFrame
        Group of every sample; several columns define intersectional groups.
    response : {"score", "label", "multiclass_label"}
        ``"score"``: numeric finite scores, binary ``y_true``. ``"label"``: binary
        class predictions, the two labels shared with ``y_true``.
        ``"multiclass_label"``: any labels, no positive class.
    caller : str
        Name of the public function, used in error messages.
    pos_label : object, default=None
        Positive class; inferred for {0, 1}, {-1, 1} and {False, True}.

    Returns
    -------
    _GroupData
    """
    response_name = "y_score" if response == "score" else "y_pred"
    y = _as_1d(y_true, "y_true")
    values = _as_1d(y_response, response_name, scores=response == "score")
    if len(y) == 0:
        raise ValueError(f"`y_true` is empty; {caller} needs at least one sample.")
    if len(values) != len(y):
        raise ValueError(
            f"`y_true` has {len(y)} samples but `{response_name}` has {len(values)}; "
            "they must have the same length."
        )
    _check_missing(y, "y_true")

    if response == "score":
        values = _check_scores(values)
        labels = pd.unique(y)
        if len(labels) > 2:
            raise ValueError(
                f"`y_true` has {len(labels)} classes {sorted(labels.tolist(), key=str)}; "
                f"{caller} needs binary labels."
            )
        pos_label = _resolve_pos_label(labels, pos_label, "`y_true`", caller)
        y = y == pos_label
    elif response == "label":
        _check_missing(values, response_name)
        # object dtype so that e.g. str y_true and int y_pred concatenate (then fail below).
        labels = pd.unique(
            np.concatenate([pd.unique(y).astype(object), pd.unique(values).astype(object)])
        )
        if len(labels) > 2:
            raise ValueError(
                f"`y_true` and `y_pred` together have {len(labels)} distinct labels "
                f"{_format_list(sorted(map(repr, labels.tolist())))}; {caller} needs "
                "binary class predictions, e.g. `estimator.predict(X)` or `y_score >= 0.5`."
            )
        pos_label = _resolve_pos_label(labels, pos_label, "`y_true` and `y_pred`", caller)
        y, values = y == pos_label, values == pos_label
    else:
        _check_missing(values, response_name)
    # Last, as factorizing the groups is the costliest check.
    codes, groups = _encode_groups(sensitive_features, len(y))
    return _GroupData(y, values, codes, groups, pos_label)


def _check_scores(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind not in "biuf":
        raise ValueError(
            f"`y_score` must be numeric scores or probabilities; got dtype "
            f"{values.dtype}. For class predictions use a thresholded metric."
        )
    values = values.astype(np.float64, copy=False)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(
            f"`y_score` has {_count_at_positions(bad, 'non-finite values (NaN/inf)')}; "
            "fix the model or drop those samples before calling."
        )
    return values


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; got {value!r}.")


def _single_class_groups(data: _GroupData, what: str) -> tuple[np.ndarray, str]:
    """Mask of groups whose ``y_true`` holds one class, and a sentence naming them."""
    n_pos, n_neg = data.class_counts()
    undefined = (n_pos == 0) | (n_neg == 0)
    labels = data.groups.tolist()
    described = [
        f"{labels[k]!r} ({n_pos[k]} positive, {n_neg[k]} negative)"
        for k in np.flatnonzero(undefined)
    ]
    summary = (
        f"{undefined.sum()} of {data.n_groups} group(s) hold a single class in y_true"
    )
    return undefined, f"{summary}, so their {what} is undefined: {_format_list(described)}"


def _keep_defined_groups(
    data: _GroupData, on_undefined: str, caller: str, what: str
) -> _GroupData:
    """Raise for, or drop with a warning, groups whose ``y_true`` has one class."""
    undefined, summary = _single_class_groups(data, what)
    if not undefined.any():
        return data
    if undefined.all():
        raise ValueError(f"{caller} is undefined: {summary}.")
    if on_undefined == "raise":
        raise ValueError(
            f"{caller}: {summary}. Pass on_undefined='drop' to ignore them, or merge "
            "small groups."
        )
    warnings.warn(f"{caller} drops {summary}.", UndefinedGroupWarning, stacklevel=3)
    return data.subset(~undefined)


# --------------------------------------------------------------------------
# Rank-based per-group ROC AUC
# --------------------------------------------------------------------------


def _rank_group_auc(
    y: np.ndarray, score: np.ndarray, codes: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per-group ROC AUC, positives and negatives in one sorted pass.

    AUC = (R+ - n+ (n+ + 1) / 2) / (n+ n-), where R+ is the sum of the
    within-group ranks of the positives and tied scores share their average
    rank. Groups with a single class get NaN.
    """
    n = len(score)
    # Sort by score, then stably by group: every group becomes one contiguous
    # block sorted by score. A stable sort of small integers is a radix sort,
    # faster than np.lexsort on (score, codes).
    order = np.argsort(score)
    small_codes = codes.astype(np.min_scalar_type(max(n_groups - 1, 0)), copy=False)
    order = order[np.argsort(small_codes[order], kind="stable")]
    s = score[order]
    c = codes[order]
    positive = y[order]

    # A run is a maximal block of equal (group, score); it shares one rank.
    new_run = np.empty(n, dtype=bool)
    new_run[0] = True
    np.not_equal(s[1:], s[:-1], out=new_run[1:])
    new_run[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], n)
    # Average 1-based position of a run in the global order. These are
    # half-integers, so the sums below are exact in float64 while the rank sum
    # (at most n**2 / 2) stays under 2**53, i.e. for up to ~1e8 samples.
    run_rank = (starts + ends + 1) * 0.5
    pos_in_run = np.add.reduceat(positive.astype(np.int64), starts)
    rank_sum = np.bincount(c[starts], weights=pos_in_run * run_rank, minlength=n_groups)

    n_total = np.bincount(codes, minlength=n_groups)
    n_pos = np.bincount(codes[y], minlength=n_groups)
    n_neg = n_total - n_pos
    group_start = np.concatenate([[0], np.cumsum(n_total)[:-1]])
    u = rank_sum - n_pos * group_start - n_pos * (n_pos + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = u / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc, n_pos, n_neg


def _group_auc_series(data: _GroupData) -> pd.Series:
    auc, _, _ = _rank_group_auc(data.y, data.response, data.codes, data.n_groups)
    return pd.Series(auc, index=data.groups, name="roc_auc")


# --------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------


def group_auc(
    y_true: Any,
    y_score: Any,
    *,
    sensitive_features: Any,
    pos_label: Any = None,
    on_undefined: Literal["raise", "drop"] = "raise",
) -> pd.Series:
    """ROC AUC of every subgroup, computed over the whole set.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True binary labels.
    y_score : array-like of shape (n_samples,)
        Scores of the positive class, e.g. ``predict_proba(X)[:, 1]``.
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_features)
        Group of every sample; several columns define intersectional groups.
    pos_label : int, float, bool or str, default=None
        Positive class. Inferred as 1 (or True) for labels {0, 1}, {-1, 1} and
        {False, True}; required otherwise.
    on_undefined : {"raise", "drop"}, default="raise"
        What to do with groups whose ``y_true`` holds a single class: raise a
        ValueError naming them, or drop them with an :class:`UndefinedGroupWarning`.

    Returns
    -------
    pandas.Series
        AUC per group, indexed by group label (a tuple for several features),
        named ``"roc_auc"``.

    Examples
    --------
    >>> from skfairtune.metrics import group_auc
    >>> y = [0, 1, 0, 1, 0, 1, 1, 0]
    >>> score = [0.1, 0.9, 0.2, 0.8, 0.7, 0.3, 0.6, 0.2]
    >>> sex = ["F", "F", "F", "F", "M", "M", "M", "M"]
    >>> group_auc(y, score, sensitive_features=sex)
    sensitive_feature_0
    F    1.0
    M    0.5
    Name: roc_auc, dtype: float64
    """
    _check_choice(on_undefined, "on_undefined", _ON_UNDEFINED)
    data = _validate_group_inputs(
        y_true, y_score, sensitive_features, response="score",
        caller="group_auc", pos_label=pos_label,
    )
    data = _keep_defined_groups(data, on_undefined, "group_auc", "ROC AUC")
    return _group_auc_series(data)


def min_group_auc(
    y_true: Any,
    y_score: Any,
    *,
    sensitive_features: Any,
    pos_label: Any = None,
    on_undefined: Literal["raise", "drop"] = "raise",
) -> float:
    """Worst subgroup ROC AUC, the FairTune objective (higher is better).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True binary labels.
    y_score : array-like of shape (n_samples,)
        Scores of the positive class, e.g. ``predict_proba(X)[:, 1]``.
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_features)
        Group of every sample; several columns define intersectional groups.
    pos_label : int, float, bool or str, default=None
        Positive class; inferred for {0, 1}, {-1, 1} and {False, True}.
    on_undefined : {"raise", "drop"}, default="raise"
        Raise for groups whose ``y_true`` holds a single class, or drop them
        with an :class:`UndefinedGroupWarning`.

    Returns
    -------
    float
        The minimum over groups of the per-group ROC AUC.

    See Also
    --------
    group_auc : The per-group values.
    auc_gap : Best minus worst group AUC.

    Examples
    --------
    >>> from skfairtune.metrics import min_group_auc
    >>> y = [0, 1, 0, 1, 0, 1, 1, 0]
    >>> score = [0.1, 0.9, 0.2, 0.8, 0.7, 0.3, 0.6, 0.2]
    >>> min_group_auc(y, score, sensitive_features=[0, 0, 0, 0, 1, 1, 1, 1])
    0.5
    """
    _check_choice(on_undefined, "on_undefined", _ON_UNDEFINED)
    data = _validate_group_inputs(
        y_true, y_score, sensitive_features, response="score",
        caller="min_group_auc", pos_label=pos_label,
    )
    data = _keep_defined_groups(data, on_undefined, "min_group_auc", "ROC AUC")
    return float(_group_auc_series(data).min())


def auc_gap(
    y_true: Any,
    y_score: Any,
    *,
    sensitive_features: Any,
    pos_label: Any = None,
    on_undefined: Literal["raise", "drop"] = "raise",
) -> float:
    """Best minus worst subgroup ROC AUC (lower is better).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True binary labels.
    y_score : array-like of shape (n_samples,)
        Scores of the positive class, e.g. ``predict_proba(X)[:, 1]``.
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_features)
        Group of every sample; several columns define intersectional groups.
    pos_label : int, float, bool or str, default=None
        Positive class; inferred for {0, 1}, {-1, 1} and {False, True}.
    on_undefined : {"raise", "drop"}, default="raise"
        Raise for groups whose ``y_true`` holds a single class, or drop them
        with an :class:`UndefinedGroupWarning`.

    Returns
    -------
    float
        ``max - min`` of the per-group ROC AUC; 0 for a single group.

    Examples
    --------
    >>> from skfairtune.metrics import auc_gap
    >>> y = [0, 1, 0, 1, 0, 1, 1, 0]
    >>> score = [0.1, 0.9, 0.2, 0.8, 0.7, 0.3, 0.6, 0.2]
    >>> auc_gap(y, score, sensitive_features=[0, 0, 0, 0, 1, 1, 1, 1])
    0.5
    """
    _check_choice(on_undefined, "on_undefined", _ON_UNDEFINED)
    data = _validate_group_inputs(
        y_true, y_score, sensitive_features, response="score",
        caller="auc_gap", pos_label=pos_label,
    )
    data = _keep_defined_groups(data, on_undefined, "auc_gap", "ROC AUC")
    per_group = _group_auc_series(data)
    return float(per_group.max() - per_group.min())


def overall_auc(
    y_true: Any,
    y_score: Any,
    *,
    sensitive_features: Any = None,
    pos_label: Any = None,
) -> float:
    """ROC AUC over all samples, ignoring groups (higher is better).

    ``sensitive_features`` is accepted, and validated when given, so that this
    metric shares the scorer interface of the group metrics.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True binary labels.
    y_score : array-like of shape (n_samples,)
        Scores of the positive class, e.g. ``predict_proba(X)[:, 1]``.
    sensitive_features : array-like, default=None
        Not used in the value; checked for length and missing values if given.
    pos_label : int, float, bool or str, default=None
        Positive class; inferred for {0, 1}, {-1, 1} and {False, True}.

    Returns
    -------
    float
        Equal to :func:`sklearn.metrics.roc_auc_score` on the same inputs.

    Examples
    --------
    >>> from skfairtune.metrics import overall_auc
    >>> overall_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    if sensitive_features is None:
        # One group holding every sample: the validation still runs on y and scores.
        sensitive_features = np.zeros(len(_as_1d(y_true, "y_true")), dtype=np.int8)
    data = _validate_group_inputs(
        y_true, y_score, sensitive_features, response="score", caller="overall_auc",
        pos_label=pos_label,
    )
    n_pos = int(data.y.sum())
    n_neg = len(data.y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"overall_auc is undefined: y_true holds a single class ({n_pos} positive, "
            f"{n_neg} negative)."
        )
    zeros = np.zeros(len(data.y), dtype=np.intp)
    auc, _, _ = _rank_group_auc(data.y, data.response, zeros, 1)
    return float(auc[0])


def worst_group_accuracy(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: Any,
) -> float:
    """Lowest accuracy of any subgroup on class predictions (higher is better).

    Accuracy is defined for every non-empty group and any number of classes,
    so there is no ``pos_label`` or ``on_undefined``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels, e.g. ``estimator.predict(X)``.
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_features)
        Group of every sample; several columns define intersectional groups.

    Returns
    -------
    float
        The minimum over groups of the fraction of correct predictions.

    Examples
    --------
    >>> from skfairtune.metrics import worst_group_accuracy
    >>> worst_group_accuracy([0, 1, 1, 0], [0, 1, 0, 0], sensitive_features=["a", "a", "b", "b"])
    0.5
    """
    data = _validate_group_inputs(
        y_true, y_pred, sensitive_features, response="multiclass_label",
        caller="worst_group_accuracy",
    )
    correct = np.bincount(data.codes[data.y == data.response], minlength=data.n_groups)
    return float(np.min(correct / np.bincount(data.codes, minlength=data.n_groups)))


def equalized_odds_difference(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: Any,
    pos_label: Any = None,
    on_undefined: Literal["raise", "drop"] = "raise",
    method: Literal["between_groups", "to_overall"] = "between_groups",
    agg: Literal["worst_case", "mean"] = "worst_case",
) -> float:
    """Largest between-group difference in true or false positive rate.

    Computed by :func:`fairlearn.metrics.equalized_odds_difference` once every
    group holds both classes. fairlearn reports a rate of 0 for a group
    without positives (or negatives); here such a group is undefined and
    handled by ``on_undefined`` first (raise, naming the groups, or drop).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True binary labels.
    y_pred : array-like of shape (n_samples,)
        Predicted class labels, e.g. ``estimator.predict(X)``.
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_features)
        Group of every sample; several columns define intersectional groups.
    pos_label : int, float, bool or str, default=None
        Positive class; inferred for {0, 1}, {-1, 1} and {False, True}.
    on_undefined : {"raise", "drop"}, default="raise"
        Raise for groups whose ``y_true`` holds a single class, or drop their
        samples with an :class:`UndefinedGroupWarning`.
    method : {"between_groups", "to_overall"}, default="between_groups"
        Largest difference between two groups, or between a group and the
        overall rate, as in :meth:`fairlearn.metrics.MetricFrame.difference`.
    agg : {"worst_case", "mean"}, default="worst_case"
        Larger of, or mean of, the TPR and FPR differences.

    Returns
    -------
    float
        Equalized odds difference (0 is perfect parity; lower is better).

    Examples
    --------
    >>> from skfairtune.metrics import equalized_odds_difference
    >>> y = [0, 1, 0, 1, 0, 1, 0, 1]
    >>> pred = [0, 1, 0, 1, 1, 1, 0, 0]
    >>> equalized_odds_difference(y, pred, sensitive_features=[0, 0, 0, 0, 1, 1, 1, 1])
    0.5
    """
    _check_choice(on_undefined, "on_undefined", _ON_UNDEFINED)
    _check_choice(method, "method", _METHODS)
    _check_choice(agg, "agg", _AGGS)
    data = _validate_group_inputs(
        y_true, y_pred, sensitive_features, response="label",
        caller="equalized_odds_difference", pos_label=pos_label,
    )
    data = _keep_defined_groups(
        data, on_undefined, "equalized_odds_difference", "true or false positive rate"
    )
    # Every group left holds both classes, where fairlearn's definition is ours: delegate.
    return float(fairlearn.metrics.equalized_odds_difference(
        data.y.astype(np.int8), data.response.astype(np.int8), sensitive_features=data.codes,
        method=method, agg=agg,
    ))


def demographic_parity_difference(
    y_true: Any,
    y_pred: Any,
    *,
    sensitive_features: Any,
    pos_label: Any = None,
    method: Literal["between_groups", "to_overall"] = "between_groups",
) -> float:
    """Largest between-group difference in selection rate ``P(y_pred = pos_label)``.

    Computed by :func:`fairlearn.metrics.demographic_parity_difference`,
    after this module's validation of the labels and groups. The
    selection rate is defined for every group, so there is no ``on_undefined``;
    ``y_true`` only fixes the two labels and the positive class.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True binary labels.
    y_pred : array-like of shape (n_samples,)
        Predicted class labels, e.g. ``estimator.predict(X)``.
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_features)
        Group of every sample; several columns define intersectional groups.
    pos_label : int, float, bool or str, default=None
        Positive class; inferred for {0, 1}, {-1, 1} and {False, True}.
    method : {"between_groups", "to_overall"}, default="between_groups"
        Largest difference between two groups, or between a group and the
        overall rate.

    Returns
    -------
    float
        Demographic parity difference (0 is perfect parity; lower is better).

    Examples
    --------
    >>> from skfairtune.metrics import demographic_parity_difference
    >>> pred = [1, 1, 0, 0, 1, 0, 0, 0]
    >>> demographic_parity_difference([0, 1] * 4, pred, sensitive_features=[0] * 4 + [1] * 4)
    0.25
    """
    _check_choice(method, "method", _METHODS)
    data = _validate_group_inputs(
        y_true, y_pred, sensitive_features, response="label",
        caller="demographic_parity_difference", pos_label=pos_label,
    )
    return float(fairlearn.metrics.demographic_parity_difference(
        data.y.astype(np.int8), data.response.astype(np.int8), sensitive_features=data.codes, method=method,
    ))
