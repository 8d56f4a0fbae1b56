"""What a search's fit starts from: its parameters' checks and the checked data.

Each ``check_*`` function raises the message a user sees for a bad value
(parameter, value, fix); :class:`skfairtune._utils._params.Checked` wraps them into
``FairTuneSearchCV._parameter_constraints``. :class:`FitData` is the frozen
record of the data that every step of ``FairTuneSearchCV.fit`` reads.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import optuna
from sklearn import get_config
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.metadata_routing import process_routing

from .._images._convert import ImageConverter, check_input
from .._training._trainer import encode_targets
from .._utils._checks import (
    check_param_distributions,
    check_scoring_classes,
    check_several_groups,
    check_splits,
)
from .._utils._params import Checked, InvalidParameterError, OneOf
from .._utils._strata import stratified_subsample
from ..classifier import FairTuneClassifier
from ..distributed._follow import progress_enabled
from ..distributed._run import resolve_n_jobs
from ..masks import PRESETS, MaskSpace
from ._baselines import baseline_lrs
from ._multiobjective import resolve_refit
from ._objective import requires_sensitive_features
from ._pruners import SAMPLERS, make_pruner, make_sampler
from ._selection import SELECTIONS
from ._splits import (
    check_validation_folds,
    group_codes,
    make_splits,
)

__all__ = ["FOLD_SCORINGS", "SEARCH_PARAMETER_CONSTRAINTS", "FitData", "searched_space", "check_fit_data", "search_splits", "check_baseline_lrs", "check_baselines", "check_callbacks", "check_error_score", "check_estimator",
           "check_lora_ranks", "check_lr_range", "check_split_iterable", "check_study", "classifier_step_of",
           "route_fit_params", "check_interacting_params", "search_images"]


def check_estimator(estimator) -> None:
    classifier_step_of(estimator)


def classifier_step_of(estimator):
    """(step name or None, the FairTuneClassifier) of a search's ``estimator``."""
    if isinstance(estimator, FairTuneClassifier):
        return None, estimator
    if isinstance(estimator, Pipeline) and isinstance(estimator.steps[-1][1], FairTuneClassifier):
        return estimator.steps[-1][0], estimator.steps[-1][1]
    raise TypeError(
        "`estimator` must be a FairTuneClassifier or a Pipeline whose last step is one; "
        f"got {type(estimator).__name__}."
    )


def check_lr_range(lr_range) -> None:
    try:
        low, high = (float(v) for v in lr_range)
    except (TypeError, ValueError):
        raise ValueError(f"`lr_range` must be (low, high) or None; got {lr_range!r}.") from None
    if not 0 < low < high:
        raise ValueError(f"`lr_range` must satisfy 0 < low < high; got {lr_range!r}.")


def check_split_iterable(cv) -> None:
    if isinstance(cv, (str, bytes, numbers.Number)) or not hasattr(cv, "__iter__"):
        raise TypeError(f"`cv` must be None, an int >= 2, a splitter or an iterable of splits; got {cv!r}.")


def check_lora_ranks(lora_ranks) -> None:
    if isinstance(lora_ranks, (str, bytes)) or not hasattr(lora_ranks, "__iter__") or not len(list(lora_ranks)) \
            or not all(isinstance(r, numbers.Integral) and not isinstance(r, bool) and r >= 1 for r in lora_ranks):
        raise ValueError(f"`lora_ranks` must be None or a non-empty sequence of positive ints (e.g. (4, 8, 16)); "
                         f"got {lora_ranks!r}.")


def check_baselines(baselines) -> None:
    for name in baselines:
        if not isinstance(name, str) or not (name in PRESETS or (name and set(name) <= {"0", "1"})):
            raise ValueError(f"`baselines` contains {name!r}; give presets among {PRESETS} or bit "
                             "strings of the searched space.")


def check_baseline_lrs(baseline_lrs) -> None:
    if baseline_lrs is None or (isinstance(baseline_lrs, str) and baseline_lrs == "auto"):
        return
    if isinstance(baseline_lrs, str) or not hasattr(baseline_lrs, "__iter__"):
        raise ValueError(f"`baseline_lrs` must be 'auto', a sequence of learning rates or None; "
                         f"got {baseline_lrs!r}.")
    for lr in baseline_lrs:
        if isinstance(lr, bool) or not (isinstance(lr, numbers.Real) and lr > 0):
            raise ValueError(f"`baseline_lrs` must hold positive learning rates; got {lr!r}.")


def check_error_score(error_score) -> None:
    if not (isinstance(error_score, numbers.Real) or error_score == "raise"):
        raise ValueError(f"`error_score` must be 'raise' or a number; got {error_score!r}.")


def check_study(study) -> None:
    if study is not None and not isinstance(study, optuna.Study):
        raise TypeError(f"`study` must be an optuna.Study or None; got {type(study).__name__}.")


def check_callbacks(callbacks) -> None:
    if not isinstance(callbacks, (list, tuple)) or not all(callable(c) for c in callbacks):
        raise TypeError("`callbacks` must be a list of callables `callback(study, frozen_trial)` or None; "
                        f"got {callbacks!r}.")


@dataclass(frozen=True)
class FitData:
    """What every step of ``FairTuneSearchCV.fit`` reads: the checked data and its encodings."""

    X: object
    y: np.ndarray
    classes: np.ndarray
    y_codes: np.ndarray
    g_codes: np.ndarray
    group_labels: list
    sensitive_features: object
    groups: object
    seed: int | None
    step: str | None
    prefix: str
    #: ``X`` after the checks that need no decoding: converted once, for every trial.
    checked: object = None
    #: What ``fit(**params)`` routes to the estimator's ``fit`` (the refit passes them all).
    fit_params: dict = None
    #: The part of them a Pipeline's steps before the classifier take (every trial's folds).
    head_fit_params: dict = None


def searched_space(search):
    """The mask space a search searches: ``mask_space``, or the deprecated ``space`` when given."""
    if isinstance(search.space, str) and search.space == "deprecated":
        return search.mask_space
    return search.space


def check_fit_data(search, X, y, sensitive_features, groups, fit_params, scoring, *, seed) -> FitData:
    """Labels, groups and sizes, checked and encoded before anything is built.

    ``scoring`` is the search's resolved :class:`skfairtune.search._multiobjective.Scoring`,
    ``seed`` its ``random_state`` as an int or None.
    """
    step, classifier = classifier_step_of(search.estimator)
    check_param_distributions(search.param_distributions, estimator_params=classifier.get_params(deep=False),
                              estimator_name=type(classifier).__name__,
                              searches_lr=search.lr_range is not None, searches_mask=searched_space(search) is not None)
    estimator_params, head_params = route_fit_params(search, fit_params)
    # A Pipeline's first steps may turn a matrix into images: its X is not refused as a table.
    checked = check_input(X, allow_tabular=bool(step) or classifier.allow_tabular)
    classes, y_codes = encode_targets(y, owner=type(search).__name__)
    for name in scoring.names:
        check_scoring_classes(name, classes)
    y = np.asarray(y).ravel()
    n_samples = len(y)
    n_images = checked.n_images
    if n_images != n_samples:
        raise ValueError(f"X has {n_images} images but y has {n_samples} labels.")
    if sensitive_features is None:
        if any(requires_sensitive_features(scorer) for scorer in scoring.prediction_scorers):
            raise ValueError(
                f"scoring={search.scoring!r} needs group labels: pass "
                "fit(X, y, sensitive_features=...) (one value or row per image)."
            )
        g_codes, group_labels = np.zeros(n_samples, dtype=np.int64), ["all"]
    else:
        g_codes, group_labels = group_codes(sensitive_features, n_samples)
        for name in scoring.names:
            check_several_groups(name, group_labels, n_samples)
    if groups is not None and len(groups) != n_samples:
        raise ValueError(f"`groups` has {len(groups)} entries but y has {n_samples}.")
    return FitData(X=X, y=y, classes=classes, y_codes=y_codes, g_codes=g_codes, group_labels=group_labels,
                   sensitive_features=sensitive_features, groups=groups, seed=seed,
                   step=step, prefix=f"{step}__" if step else "", checked=checked,
                   fit_params=estimator_params, head_fit_params=head_params)


def route_fit_params(search, params: dict) -> tuple[dict, dict]:
    """(the estimator's fit parameters, those of a Pipeline's steps before the classifier), as sklearn routes them.

    With metadata routing off, every parameter goes to the estimator's ``fit``
    (a Pipeline's as ``step__name``), as scikit-learn's searches do; with it on,
    :func:`~sklearn.utils.metadata_routing.process_routing` sends what the
    estimator requested and refuses what nobody did. Checked here, before any
    work: ``sample_weight`` for the classifier, and steps a Pipeline does not have.
    """
    step, _ = classifier_step_of(search.estimator)
    if get_config().get("enable_metadata_routing", False):
        routed = process_routing(search, "fit", **params).estimator.fit if params else {}
        if not step or not routed:
            return _refuse_sample_weight(routed, step), {}
        head = search.estimator[:-1]
        consumed = head.get_metadata_routing().consumes("fit_transform", list(routed))
        return routed, {k: v for k, v in routed.items() if k in consumed}
    if not step:
        return _refuse_sample_weight(dict(params), step), {}
    names = [name for name, _ in search.estimator.steps]
    for key in params:
        if "__" not in key or key.split("__", 1)[0] not in names:
            raise ValueError(
                f"FairTuneSearchCV.fit got {key!r}, which its Pipeline cannot route: pass parameters of a step "
                f"as <step>__<parameter> with a step among {names}, e.g. {names[0]}__sample_weight=...")
    _refuse_sample_weight({k.split("__", 1)[1]: v for k, v in params.items() if k.startswith(f"{step}__")}, step)
    return dict(params), {k: v for k, v in params.items() if not k.startswith(f"{step}__")}


def _refuse_sample_weight(params: dict, step) -> dict:
    if params.get("sample_weight") is not None:
        name = f"{step}__sample_weight" if step else "sample_weight"
        raise ValueError(f"FairTuneSearchCV.fit got {name}, which FairTuneClassifier does not support; use the "
                         "estimator's `class_weight` to weight the classes.")
    return params


def check_interacting_params(search, scoring) -> None:
    """The checks of parameters that interact (each alone passed ``_parameter_constraints``)."""
    if search.lr_range is not None:
        for lr in baseline_lrs(search.baseline_lrs, search.lr_range) or ():
            if not float(search.lr_range[0]) <= lr <= float(search.lr_range[1]):
                raise InvalidParameterError(
                    f"`baseline_lrs` holds {lr!r}, outside lr_range={tuple(search.lr_range)!r}; the "
                    "baselines are tuned over the searched range: widen `lr_range` or drop the rate.")
    if not (isinstance(search.space, str) and search.space == "deprecated"):
        if not (isinstance(search.mask_space, str) and search.mask_space == "ln-attn-mlp"):
            raise InvalidParameterError(f"both `mask_space={search.mask_space!r}` and its deprecated name "
                                        f"`space={search.space!r}` are set; pass `mask_space` only.")
        warnings.warn("`space` was renamed `mask_space` (the classifier's name for the same setting); "
                      "`space` will be removed in a future version.", FutureWarning, stacklevel=4)
    if scoring.multi:
        if search.selection != "best":
            raise InvalidParameterError(
                f"selection={search.selection!r} applies to one objective; a multi-objective search "
                "chooses its refit trial with `refit` ('utopia', an objective name or a callable).")
        resolve_refit(search.refit, scoring.names, scoring.directions)  # a bad refit fails now
    elif not isinstance(search.refit, (bool, np.bool_)):
        raise InvalidParameterError(f"`refit` must be True or False for one objective; got {search.refit!r} "
                                    "('utopia', names and callables choose among several objectives).")
    if search.selection == "one_se" and search.n_bootstrap < 2:
        raise InvalidParameterError(
            f"selection='one_se' needs the paired bootstrap replicates; got n_bootstrap={search.n_bootstrap}: "
            "set n_bootstrap >= 2 or choose selection='best'.")


def search_images(classifier, template, data: FitData):
    """The images every trial reads, converted once (None for a Pipeline: its steps run per fold).

    The trials' converter takes them as they are (converting its own output is a
    no-op), so pixels are never scaled twice and rows keep their width.
    """
    if data.step:
        return None
    converter = ImageConverter.for_model(classifier.get_params(deep=False), template.input_config,
                                         template.geometry)
    return converter.convert(data.X if data.checked is None else data.checked)


#: Scorings whose validation folds must hold both classes in every group.
GROUP_AUC_SCORINGS = ("min_group_auc", "neg_auc_gap")


def search_splits(search, data: FitData, scoring):
    """(positions searched, validation splits of those positions), checked up front."""
    n_samples = len(data.y)
    search_idx = (np.arange(n_samples) if search.subsample is None else
                  stratified_subsample(search.subsample, y_codes=data.y_codes, g_codes=data.g_codes,
                                       random_state=data.seed))
    sub_groups = None if data.groups is None else np.asarray(data.groups)[search_idx]
    splits = make_splits(search.cv, y_codes=data.y_codes[search_idx], g_codes=data.g_codes[search_idx],
                         groups=sub_groups, validation_fraction=search.validation_fraction, random_state=data.seed)
    check_splits(splits, len(search_idx))
    if set(scoring.names) & set(GROUP_AUC_SCORINGS) and data.sensitive_features is not None:
        check_validation_folds(splits, y_codes=data.y_codes[search_idx], g_codes=data.g_codes[search_idx],
                               group_labels=data.group_labels, class_labels=data.classes.tolist(),
                               pooled=search.fold_scoring == "pooled" and len(splits) > 1)
    return search_idx, splits


FOLD_SCORINGS = ("pooled", "mean")

#: ``FairTuneSearchCV._parameter_constraints``: every parameter's allowed values, checked by
#: :func:`skfairtune._utils._params.validate_params` before any work.
SEARCH_PARAMETER_CONSTRAINTS: dict = {
    "estimator": [Checked(check_estimator, "a FairTuneClassifier or a Pipeline ending in one")],
    "mask_space": [str, MaskSpace, None],
    "space": [str, MaskSpace, None],
    "lr_range": [Checked(check_lr_range, "(low, high) with 0 < low < high"), None],
    "lora_ranks": [Checked(check_lora_ranks, "a sequence of positive ints"), None],
    "param_distributions": [dict, None],
    "n_trials": [Interval(Integral, 1, None, closed="left")],
    "n_startup_trials": [Interval(Integral, 0, None, closed="left")],
    "prune_baselines": ["boolean"],
    "scoring": [str, callable, list, tuple, dict],
    "cv": [Interval(Integral, 2, None, closed="left"), HasMethods(["split"]),
           Checked(check_split_iterable, "an iterable of (train, test) splits"), None],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "fold_scoring": [OneOf(*FOLD_SCORINGS)],
    "n_bootstrap": [Interval(Integral, 0, None, closed="left")],
    "selection": [OneOf(*SELECTIONS)],
    "reeval_top_k": [Interval(Integral, 1, None, closed="left")],
    "reeval_repeats": [Interval(Integral, 1, None, closed="left")],
    "baselines": [Checked(check_baselines, "presets or bit strings"), None],
    "baseline_lrs": [Checked(check_baseline_lrs, "'auto', a sequence of learning rates or None")],
    "pruner": [Checked(lambda pruner: make_pruner(pruner, 2), "a pruner name or an optuna pruner"), None],
    "sampler": [Checked(lambda sampler: make_sampler(sampler, None), f"one of {SAMPLERS} or an optuna sampler"),
                None],
    "study": [Checked(check_study, "an optuna.Study"), None],
    # A path, URL or storage object: checked where it is opened (skfairtune.distributed._study).
    "storage": "no_validation",
    "study_name": [str, None],
    "subsample": [Interval(Real, 0, 1, closed="right"), None],
    "refit": ["boolean", str, callable],
    "error_score": [Checked(check_error_score, "'raise' or a number")],
    "timeout": [Interval(Real, 0, None, closed="neither"), None],
    "n_jobs": [Checked(resolve_n_jobs, "a positive int, -1 or None"), None],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "progress_bar": [Checked(progress_enabled, "'auto', True or False")],
    "callbacks": [Checked(check_callbacks, "a list of callables"), None],
    "resume": [OneOf("check", "force")],
}
