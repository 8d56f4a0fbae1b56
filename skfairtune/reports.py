"""Per-group fairness report as a fairlearn MetricFrame.

The report is descriptive: unlike the metrics in :mod:`skfairtune.metrics`,
which raise for a subgroup whose ``y_true`` holds a single class, the report
shows NaN for the quantities that such a group cannot define (ROC AUC, and its
true or false positive rate) and warns with
:class:`~skfairtune.metrics.UndefinedGroupWarning`. fairlearn's
``group_min()``, ``group_max()`` and ``difference()`` skip those NaN.
"""

from __future__ import annotations

import warnings
from functools import partial
from numbers import Integral, Real
from typing import Any, Sequence

import numpy as np
from fairlearn.metrics import MetricFrame, count

from .metrics._group import UndefinedGroupWarning
from .metrics._group_inputs import (
    resolve_pos_label,
    single_class_groups,
    validate_group_inputs,
)
from .metrics._rank_auc import rank_group_auc

__all__ = ["fairness_report", "fairness_report_from_scores", "format_by_group"]


def _roc_auc_or_nan(y_true: np.ndarray, y_score: np.ndarray) -> float:
    # The same rank-based AUC as the metrics; NaN (without sklearn's warning,
    # the report warns once with the group names) when a class is absent.
    codes = np.zeros(len(y_true), dtype=np.intp)
    return float(rank_group_auc(y_true, y_score, codes, 1)[0])


def _rate(numerator: np.ndarray) -> float:
    return float(numerator.mean()) if len(numerator) else float("nan")


def _accuracy(y_true, y_score, *, threshold):
    return _rate((y_score >= threshold) == y_true)


def _true_positive_rate(y_true, y_score, *, threshold):
    return _rate(y_score[y_true] >= threshold)


def _false_positive_rate(y_true, y_score, *, threshold):
    return _rate(y_score[~y_true] >= threshold)


def _selection_rate(y_true, y_score, *, threshold):
    return _rate(y_score >= threshold)


def fairness_report_from_scores(
    y_true: Any,
    y_score: Any,
    *,
    sensitive_features: Any,
    threshold: float = 0.5,
    pos_label: Any = None,
    n_boot: int | None = None,
    ci_quantiles: Sequence[float] = (0.025, 0.975),
    random_state: int | None = None,
) -> MetricFrame:
    """Per-group and overall performance of positive-class scores.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True binary labels.
    y_score : array-like of shape (n_samples,)
        Scores of the positive class, e.g. ``predict_proba(X)[:, 1]``.
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_features)
        Group of every sample; several columns define intersectional groups,
        labelled by tuples as in :func:`skfairtune.metrics.group_auc`.
    threshold : float, default=0.5
        A sample is predicted positive when ``y_score >= threshold``, as in
        :class:`sklearn.model_selection.FixedThresholdClassifier`.
    pos_label : int, float, bool or str, default=None
        Positive class; inferred for {0, 1}, {-1, 1} and {False, True}.
    n_boot : int, default=None
        Bootstrap resamples for confidence intervals (fairlearn's
        ``MetricFrame(n_boot=...)``); ``None``: point values only. A group AUC
        on a few dozen positives moves by several points between resamples,
        so use a few hundred before comparing groups.
    ci_quantiles : sequence of float, default=(0.025, 0.975)
        Quantiles of the bootstrap distribution reported (a 95% interval).
    random_state : int, default=None
        Seeds the bootstrap.

    Returns
    -------
    fairlearn.metrics.MetricFrame
        With ``n_boot``, also ``by_group_ci``, ``overall_ci``,
        ``group_min_ci()``, ``difference_ci()``..., one frame per quantile
        (see :func:`format_by_group` for a printable table).
        Columns ``count``, ``roc_auc``, ``accuracy``, ``tpr``, ``fpr`` and
        ``selection_rate``, per group (``.by_group``) and overall (``.overall``).
        ``roc_auc`` and ``tpr`` or ``fpr`` are NaN for a group whose ``y_true``
        holds a single class, with an :class:`UndefinedGroupWarning`.

    Examples
    --------
    >>> from skfairtune.reports import fairness_report_from_scores
    >>> y = [0, 1, 0, 1, 0, 1, 1, 0]
    >>> score = [0.1, 0.9, 0.2, 0.8, 0.7, 0.3, 0.6, 0.2]
    >>> report = fairness_report_from_scores(y, score, sensitive_features=list("FFFFMMMM"))
    >>> report.by_group[["count", "roc_auc", "tpr", "fpr"]]
                         count  roc_auc  tpr  fpr
    sensitive_feature_0
    F                      4.0      1.0  1.0  0.0
    M                      4.0      0.5  0.5  0.5
    >>> float(report.difference()["roc_auc"])
    0.5
    """
    if not isinstance(threshold, Real) or not np.isfinite(threshold):
        raise ValueError(f"`threshold` must be a finite real number; got {threshold!r}.")
    bootstrap = _bootstrap_kwargs(n_boot, ci_quantiles, random_state)
    data = validate_group_inputs(
        y_true, y_score, sensitive_features, response="score",
        caller="fairness_report", pos_label=pos_label,
    )
    undefined, summary = single_class_groups(data, "roc_auc and tpr or fpr")
    if undefined.any():
        warnings.warn(
            f"fairness_report shows NaN where {summary}.", UndefinedGroupWarning, stacklevel=2
        )
    metrics = {
        "count": count,
        "roc_auc": _roc_auc_or_nan,
        "accuracy": partial(_accuracy, threshold=threshold),
        "tpr": partial(_true_positive_rate, threshold=threshold),
        "fpr": partial(_false_positive_rate, threshold=threshold),
        "selection_rate": partial(_selection_rate, threshold=threshold),
    }
    return MetricFrame(
        metrics=metrics,
        y_true=data.y,
        y_pred=data.response,
        sensitive_features=data.features_frame(),
        **bootstrap,
    )


def fairness_report(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    sensitive_features: Any,
    threshold: float = 0.5,
    pos_label: Any = None,
    n_boot: int | None = None,
    ci_quantiles: Sequence[float] = (0.025, 0.975),
    random_state: int | None = None,
) -> MetricFrame:
    """Per-group and overall performance of a fitted binary classifier.

    Scores are ``estimator.predict_proba(X)`` in the column of ``pos_label``;
    see :func:`fairness_report_from_scores` for the columns and the handling
    of single-class groups.

    Parameters
    ----------
    estimator : fitted classifier
        Must have ``predict_proba`` and two ``classes_``.
    X : array-like
        Samples to evaluate, as accepted by ``estimator``.
    y : array-like of shape (n_samples,)
        True labels.
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_features)
        Group of every sample; several columns define intersectional groups.
    threshold : float, default=0.5
        A sample is predicted positive when its probability is ``>= threshold``.
    pos_label : int, float, bool or str, default=None
        Positive class among ``estimator.classes_``; inferred for {0, 1},
        {-1, 1} and {False, True}.
    n_boot, ci_quantiles, random_state
        Bootstrap confidence intervals; see :func:`fairness_report_from_scores`.

    Returns
    -------
    fairlearn.metrics.MetricFrame
        Use ``.by_group``, ``.overall``, ``.group_min()`` or ``.difference()``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skfairtune.reports import fairness_report
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 2))
    >>> y = (X[:, 0] > 0).astype(int)
    >>> sex = np.tile(["F", "M"], 30)
    >>> report = fairness_report(LogisticRegression().fit(X, y), X, y, sensitive_features=sex)
    >>> list(report.by_group.columns)
    ['count', 'roc_auc', 'accuracy', 'tpr', 'fpr', 'selection_rate']
    >>> int(report.overall["count"])
    60
    """
    if not hasattr(estimator, "predict_proba"):
        raise TypeError(
            f"fairness_report needs an estimator with predict_proba; "
            f"{type(estimator).__name__} has none. Pass its scores to "
            "fairness_report_from_scores, or calibrate it with "
            "sklearn.calibration.CalibratedClassifierCV."
        )
    if not hasattr(estimator, "classes_"):
        from sklearn.exceptions import NotFittedError

        # An unfitted model: sklearn's NotFittedError (a ValueError), not a count of classes.
        raise NotFittedError(
            f"fairness_report needs a fitted binary classifier; this {type(estimator).__name__} "
            "instance is not fitted yet. Call 'fit' first."
        )
    classes = np.asarray(estimator.classes_)
    if len(classes) != 2:
        raise ValueError(
            f"fairness_report needs a fitted binary classifier; "
            f"{type(estimator).__name__} has classes_ {classes.tolist()}."
        )
    _bootstrap_kwargs(n_boot, ci_quantiles, random_state)  # a bad value fails before predicting
    pos_label = resolve_pos_label(classes, pos_label, "`estimator.classes_`", "fairness_report")
    column = classes.tolist().index(pos_label)
    y_score = np.asarray(estimator.predict_proba(X))[:, column]
    return fairness_report_from_scores(
        y, y_score, sensitive_features=sensitive_features, threshold=threshold,
        pos_label=pos_label, n_boot=n_boot, ci_quantiles=ci_quantiles, random_state=random_state,
    )


def _bootstrap_kwargs(n_boot, ci_quantiles, random_state) -> dict:
    if n_boot is None:
        return {}
    if isinstance(n_boot, bool) or not isinstance(n_boot, Integral) or n_boot < 2:
        raise ValueError(f"`n_boot` must be an int >= 2 (bootstrap resamples) or None; got {n_boot!r}.")
    try:
        quantiles = [float(q) for q in ci_quantiles]
    except (TypeError, ValueError):
        quantiles = []
    if not quantiles or not all(0 < q < 1 for q in quantiles):
        raise ValueError(f"`ci_quantiles` must be quantiles strictly between 0 and 1, e.g. (0.025, 0.975); "
                         f"got {ci_quantiles!r}.")
    return {"n_boot": int(n_boot), "ci_quantiles": quantiles, "random_state": random_state}


def format_by_group(report: MetricFrame, columns: Sequence[str] | None = None, *, decimals: int = 3):
    """``report.by_group`` as text, with each value's bootstrap interval when the report has them.

    Parameters
    ----------
    report : fairlearn.metrics.MetricFrame
        From :func:`fairness_report` (with or without ``n_boot``).
    columns : sequence of str, default=None
        Metrics to show; ``None``: all. ``count`` never gets an interval.
    decimals : int, default=3
        Rounding.

    Returns
    -------
    table : pandas.DataFrame
        Strings such as ``"0.812 [0.741, 0.879]"`` (lowest and highest
        quantile), one row per group plus a row ``overall``.

    Examples
    --------
    >>> report = fairness_report_from_scores([0, 1, 0, 1, 0, 1, 1, 0],
    ...     [0.1, 0.9, 0.2, 0.8, 0.7, 0.3, 0.6, 0.2], sensitive_features=list("FFFFMMMM"))
    >>> format_by_group(report, ["roc_auc"])
                        roc_auc
    sensitive_feature_0
    F                     1.000
    M                     0.500
    overall               0.875
    """
    import pandas as pd

    cols = list(report.by_group.columns if columns is None else columns)
    levels = report.by_group.index.nlevels
    overall_label = "overall" if levels == 1 else ("overall",) + ("",) * (levels - 1)

    def with_overall(by_group, overall):
        row = pd.DataFrame([overall[cols].to_numpy()], columns=cols,
                           index=pd.Index([overall_label], tupleize_cols=levels > 1))
        joined = pd.concat([by_group[cols], row])
        joined.index.names = report.by_group.index.names
        return joined

    table = with_overall(report.by_group, report.overall)
    lows = highs = None
    if _has_ci(report):
        lows = with_overall(report.by_group_ci[0], report.overall_ci[0])
        highs = with_overall(report.by_group_ci[-1], report.overall_ci[-1])
    text = pd.DataFrame(index=table.index, columns=table.columns, dtype=object)
    for column in table.columns:
        for row in table.index:
            value = table.loc[row, column]
            cell = f"{value:.{decimals}f}" if column != "count" else f"{int(value)}"
            if lows is not None and column != "count":
                cell += f" [{lows.loc[row, column]:.{decimals}f}, {highs.loc[row, column]:.{decimals}f}]"
            text.loc[row, column] = cell
    return text


def _has_ci(report: MetricFrame) -> bool:
    try:
        return report.by_group_ci is not None
    except ValueError:  # fairlearn raises when the frame was built without n_boot
        return False
