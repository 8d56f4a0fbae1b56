"""scikit-learn scorers for the group-fairness metrics.

The scorers are real scikit-learn scorers (subclasses of
``sklearn.metrics._scorer._Scorer``, built through
:func:`sklearn.metrics.make_scorer`) that request ``sensitive_features``
through metadata routing. With ``sklearn.set_config(enable_metadata_routing=True)``
they work unchanged in :func:`~sklearn.model_selection.cross_validate`,
:class:`~sklearn.model_selection.GridSearchCV`,
:class:`~sklearn.model_selection.RandomizedSearchCV` and
:class:`~sklearn.model_selection.HalvingRandomSearchCV`, which slice the
groups per fold like ``X`` and ``y``.

Called directly, ``scorer(estimator, X, y, sensitive_features=s)`` works with
routing on or off: the groups are the scorer's own input, not optional
metadata.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from sklearn import config_context, get_config
from sklearn.metrics import get_scorer_names, make_scorer
from sklearn.metrics._scorer import _cached_call, _Scorer
from sklearn.utils.metadata_routing import _raise_for_params

from .metrics._group import (
    auc_gap,
    demographic_parity_difference,
    equalized_odds_difference,
    min_group_auc,
    overall_auc,
    worst_group_accuracy,
)

__all__ = ["get_fairness_scorer", "get_fairness_scorer_names", "make_fairness_scorer"]

# Probabilities first; a decision function ranks samples the same way, so AUC
# scorers also accept classifiers without predict_proba (e.g. LinearSVC).
_SCORE_METHODS = ("predict_proba", "decision_function")


@dataclass(frozen=True)
class _MetricSpec:
    func: Callable[..., float]
    response_method: str | tuple[str, ...]
    greater_is_better: bool


_METRICS: dict[str, _MetricSpec] = {
    "min_group_auc": _MetricSpec(min_group_auc, _SCORE_METHODS, True),
    "overall_auc": _MetricSpec(overall_auc, _SCORE_METHODS, True),
    "auc_gap": _MetricSpec(auc_gap, _SCORE_METHODS, False),
    "worst_group_accuracy": _MetricSpec(worst_group_accuracy, "predict", True),
    "equalized_odds_difference": _MetricSpec(equalized_odds_difference, "predict", False),
    "demographic_parity_difference": _MetricSpec(
        demographic_parity_difference, "predict", False
    ),
}

# Scorer name -> metric name; "neg_" marks metrics where lower is better.
_SCORERS: dict[str, str] = {
    "min_group_auc": "min_group_auc",
    "overall_auc": "overall_auc",
    "neg_auc_gap": "auc_gap",
    "worst_group_accuracy": "worst_group_accuracy",
    "neg_equalized_odds_difference": "equalized_odds_difference",
    "neg_demographic_parity_difference": "demographic_parity_difference",
}


class _FairnessScorer(_Scorer):
    """A scikit-learn scorer whose metric needs ``sensitive_features``.

    It differs from the scorers of :func:`sklearn.metrics.make_scorer` only in
    accepting ``sensitive_features`` when metadata routing is off, in a clear
    error when the groups are missing, and in its repr.
    """

    def __init__(self, score_func, sign, kwargs, response_method, name):
        super().__init__(score_func, sign, kwargs, response_method)
        self._name = name

    def __repr__(self) -> str:
        sign = "" if self._sign > 0 else ", greater_is_better=False"
        kwargs = "".join(f", {k}={v!r}" for k, v in self._kwargs.items())
        return (
            f"make_fairness_scorer({self._name}{sign}, "
            f"response_method={self._response_method!r}{kwargs})"
        )

    def __call__(self, estimator, X, y_true, **kwargs) -> float:
        """Score ``estimator`` on ``X`` against ``y_true`` per group.

        Parameters
        ----------
        estimator : object
            Fitted classifier.
        X : array-like
            Samples to predict.
        y_true : array-like of shape (n_samples,)
            True labels.
        **kwargs : dict
            Must hold ``sensitive_features``; other metadata only with routing on.

        Returns
        -------
        float
            The metric, sign-flipped for ``neg_`` scorers.
        """
        _raise_for_params(kwargs, self, None, allow={"sensitive_features"})
        # As _BaseScorer.__call__ does, bar the routing check above.
        return self._score(partial(_cached_call, None), estimator, X, y_true, **kwargs)

    def _needs_groups(self) -> bool:
        """overall_auc takes groups only optionally; group metrics require them."""
        parameter = inspect.signature(self._score_func).parameters.get("sensitive_features")
        return parameter is None or parameter.default is inspect.Parameter.empty

    def _score(self, method_caller, estimator, X, y_true, **kwargs) -> float:
        # sklearn's multi-metric scorer calls _score directly, so check here.
        if kwargs.get("sensitive_features") is None and self._needs_groups():
            routing = get_config()["enable_metadata_routing"]
            raise ValueError(
                f"{self!r} needs `sensitive_features` at score time, got none. "
                "Call it as scorer(estimator, X, y, sensitive_features=groups). In "
                "cross_validate or a search CV, "
                + ("" if routing else "run sklearn.set_config(enable_metadata_routing=True) and ")
                + "pass the groups as metadata: cross_validate(..., "
                "params={'sensitive_features': groups}) or search.fit(X, y, "
                "sensitive_features=groups)."
            )
        pos_label = _estimator_pos_label(estimator)
        if (pos_label is not None and self._get_pos_label() is None and "pos_label" not in kwargs
                and "pos_label" in inspect.signature(self._score_func).parameters):
            # sklearn scores with the column of classes_[1] when pos_label is unset; the
            # metric must call the same class positive, or string labels cannot be scored.
            kwargs["pos_label"] = pos_label
        return super()._score(method_caller, estimator, X, y_true, **kwargs)


def _estimator_pos_label(estimator) -> Any:
    """``classes_[1]`` of a fitted binary classifier (sklearn's positive class), else None."""
    classes = getattr(estimator, "classes_", None)
    if classes is None or len(classes) != 2:
        return None
    value = np.asarray(classes)[1]
    return value.item() if isinstance(value, np.generic) else value


def _check_metric_kwargs(func: Callable, metric_kwargs: dict, name: str) -> None:
    if "sensitive_features" in metric_kwargs:
        raise ValueError(
            "`sensitive_features` is passed at score time, not to make_fairness_scorer: "
            "call scorer(estimator, X, y, sensitive_features=groups) or route it as "
            "metadata."
        )
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # builtins without a signature: trust the user
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    if "sensitive_features" not in params:
        raise ValueError(
            f"metric {name!r} must accept a `sensitive_features` keyword argument, "
            "with signature f(y_true, y_pred, *, sensitive_features, ...)."
        )
    accepted = [p for p in params if p not in ("y_true", "y_pred", "y_score", "sensitive_features")]
    unknown = sorted(set(metric_kwargs) - set(params))
    if unknown:
        raise ValueError(
            f"metric {name!r} got unexpected keyword argument(s) {unknown}; it accepts "
            f"{accepted}."
        )


def make_fairness_scorer(
    metric: str | Callable[..., float],
    *,
    response_method: str | Sequence[str] | None = None,
    greater_is_better: bool | None = None,
    name: str | None = None,
    **metric_kwargs: Any,
):
    """Make a scikit-learn scorer from a group-fairness metric.

    The scorer requests ``sensitive_features`` through metadata routing, so
    with ``sklearn.set_config(enable_metadata_routing=True)`` it can be given
    to ``cross_validate`` or any search CV, which slice the groups per fold.

    Parameters
    ----------
    metric : str or callable
        A metric name (``"min_group_auc"``, ``"overall_auc"``, ``"auc_gap"``,
        ``"worst_group_accuracy"``, ``"equalized_odds_difference"``,
        ``"demographic_parity_difference"``) or any callable with signature
        ``f(y_true, y_pred, *, sensitive_features, **kwargs)``, such as the
        output of :func:`fairlearn.metrics.make_derived_metric`.
    response_method : str or list of str, default=None
        Estimator method whose output is passed to ``metric``. None picks
        ``("predict_proba", "decision_function")`` (the positive-class column)
        for AUC metrics, ``"predict"`` for the other named metrics and for
        callables.
    greater_is_better : bool, default=None
        Whether higher values of ``metric`` are better. None uses the named
        metric's direction (False for gaps and differences) and True for
        callables. When False the scorer returns the negated metric.
    name : str, default=None
        Name shown in the scorer's repr and errors; defaults to the metric name.
    **metric_kwargs : dict
        Fixed keyword arguments of ``metric``, e.g. ``pos_label`` or
        ``on_undefined``. ``sensitive_features`` is passed at score time.

    Returns
    -------
    scorer : sklearn scorer
        Callable as ``scorer(estimator, X, y, sensitive_features=groups)``;
        higher is better. ``scorer._score_func`` is the metric and
        ``scorer._sign`` its sign, as for scikit-learn's scorers.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skfairtune.scorers import make_fairness_scorer
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(40, 2)), np.tile([0, 1], 20)
    >>> groups = np.repeat(["young", "old"], 20)
    >>> clf = LogisticRegression().fit(X, y)
    >>> scorer = make_fairness_scorer("auc_gap")  # lower is better: negated
    >>> scorer._score_func.__name__, scorer._sign
    ('auc_gap', -1)
    >>> bool(scorer(clf, X, y, sensitive_features=groups) <= 0)
    True
    """
    if isinstance(metric, str):
        if metric not in _METRICS:
            hint = (
                f" {metric!r} is a scorer name: use get_fairness_scorer({metric!r})."
                if metric in _SCORERS
                else ""
            )
            raise ValueError(
                f"{metric!r} is not a fairness metric name; valid names are "
                f"{sorted(_METRICS)}.{hint}"
            )
        spec = _METRICS[metric]
        func, name = spec.func, name or metric
        default_method, default_direction = spec.response_method, spec.greater_is_better
    elif callable(metric):
        func = metric
        name = name or getattr(metric, "__name__", None) or type(metric).__name__
        default_method, default_direction = "predict", True
    else:
        raise TypeError(
            f"`metric` must be a metric name or a callable; got {type(metric).__name__}."
        )
    _check_metric_kwargs(func, metric_kwargs, name)

    # make_scorer validates response_method and greater_is_better for us.
    base = make_scorer(
        func,
        response_method=default_method if response_method is None else response_method,
        greater_is_better=default_direction if greater_is_better is None else greater_is_better,
        **metric_kwargs,
    )
    scorer = _FairnessScorer(
        base._score_func, base._sign, base._kwargs, base._response_method, name
    )
    # set_score_request is refused while routing is off; the request it stores
    # is what routing reads once the user turns it on.
    with config_context(enable_metadata_routing=True):
        scorer.set_score_request(sensitive_features=True)
    return scorer


def get_fairness_scorer_names() -> list[str]:
    """Names of the built-in fairness scorers, for :func:`get_fairness_scorer`.

    Returns
    -------
    list of str
        Sorted scorer names; higher is better for all of them.

    Examples
    --------
    >>> from skfairtune.scorers import get_fairness_scorer_names
    >>> "min_group_auc" in get_fairness_scorer_names()
    True
    """
    return sorted(_SCORERS)


def get_fairness_scorer(scoring: str | Callable):
    """Get a fairness scorer by name, like :func:`sklearn.metrics.get_scorer`.

    Parameters
    ----------
    scoring : str or callable
        One of :func:`get_fairness_scorer_names`. A callable is returned as is.

    Returns
    -------
    scorer : sklearn scorer
        A new scorer on every call; higher is better (``neg_`` scorers negate
        a gap or difference).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skfairtune.scorers import get_fairness_scorer
    >>> X, y = np.arange(8.0).reshape(-1, 1), np.array([0, 1, 0, 0, 1, 0, 1, 1])
    >>> clf = LogisticRegression().fit(X, y)
    >>> scorer = get_fairness_scorer("min_group_auc")
    >>> float(scorer(clf, X, y, sensitive_features=[0, 1] * 4))
    0.5
    """
    if callable(scoring):
        return scoring
    if not isinstance(scoring, str) or scoring not in _SCORERS:
        hint = ""
        if isinstance(scoring, str) and scoring in get_scorer_names():
            hint = (
                f" {scoring!r} is a scikit-learn scorer without groups: use "
                f"sklearn.metrics.get_scorer({scoring!r})."
            )
        raise ValueError(
            f"{scoring!r} is not a valid fairness scoring value. Valid options are "
            f"{get_fairness_scorer_names()}.{hint}"
        )
    return make_fairness_scorer(_SCORERS[scoring], name=scoring)
