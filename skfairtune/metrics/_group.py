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

import warnings
from typing import Any, Literal

import fairlearn.metrics
import numpy as np
import pandas as pd

from ._group_inputs import (
    GroupData,
    as_1d,
    check_choice,
    single_class_groups,
    validate_group_inputs,
)
from ._rank_auc import rank_group_auc

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

_ON_UNDEFINED = ("raise", "drop")
_METHODS = ("between_groups", "to_overall")
_AGGS = ("worst_case", "mean")


class UndefinedGroupWarning(UserWarning):
    """Warning raised when groups with a single class in ``y_true`` are dropped.

    Their ROC AUC (and their true or false positive rate) is undefined, so a
    metric computed with ``on_undefined="drop"`` ignores their samples, and
    :func:`skfairtune.reports.fairness_report` shows NaN for them.
    """


def _keep_defined_groups(
    data: GroupData, on_undefined: str, caller: str, what: str, *, stacklevel: int = 3
) -> GroupData:
    """Raise for, or drop with a warning, groups whose ``y_true`` has one class.

    ``stacklevel`` points the warning at the line that called the public metric.
    """
    undefined, summary = single_class_groups(data, what)
    if not undefined.any():
        return data
    if undefined.all():
        raise ValueError(f"{caller} is undefined: {summary}.")
    if on_undefined == "raise":
        raise ValueError(
            f"{caller}: {summary}. Pass on_undefined='drop' to ignore them, or merge "
            "small groups."
        )
    warnings.warn(f"{caller} drops {summary}.", UndefinedGroupWarning, stacklevel=stacklevel)
    return data.subset(~undefined)


def _group_auc_series(
    y_true: Any, y_score: Any, sensitive_features: Any, *, pos_label: Any, on_undefined: str, caller: str
) -> pd.Series:
    """Validated per-group ROC AUC over the groups ``on_undefined`` keeps, named for ``caller``'s errors."""
    check_choice(on_undefined, "on_undefined", _ON_UNDEFINED)
    data = validate_group_inputs(
        y_true, y_score, sensitive_features, response="score", caller=caller, pos_label=pos_label,
    )
    data = _keep_defined_groups(data, on_undefined, caller, "ROC AUC", stacklevel=4)
    auc = rank_group_auc(data.y, data.response, data.codes, data.n_groups)
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
    return _group_auc_series(
        y_true, y_score, sensitive_features, pos_label=pos_label, on_undefined=on_undefined, caller="group_auc"
    )


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
    per_group = _group_auc_series(
        y_true, y_score, sensitive_features, pos_label=pos_label, on_undefined=on_undefined,
        caller="min_group_auc",
    )
    return float(per_group.min())


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
    per_group = _group_auc_series(
        y_true, y_score, sensitive_features, pos_label=pos_label, on_undefined=on_undefined, caller="auc_gap"
    )
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
        sensitive_features = np.zeros(len(as_1d(y_true, "y_true")), dtype=np.int8)
    data = validate_group_inputs(
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
    auc = rank_group_auc(data.y, data.response, zeros, 1)
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
    data = validate_group_inputs(
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
    check_choice(on_undefined, "on_undefined", _ON_UNDEFINED)
    check_choice(method, "method", _METHODS)
    check_choice(agg, "agg", _AGGS)
    data = validate_group_inputs(
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
    check_choice(method, "method", _METHODS)
    data = validate_group_inputs(
        y_true, y_pred, sensitive_features, response="label",
        caller="demographic_parity_difference", pos_label=pos_label,
    )
    return float(fairlearn.metrics.demographic_parity_difference(
        data.y.astype(np.int8), data.response.astype(np.int8), sensitive_features=data.codes, method=method,
    ))
