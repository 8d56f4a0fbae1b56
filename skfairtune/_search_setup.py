"""What a search's fit starts from: its parameters' checks and the checked data.

Each ``check_*`` function raises the message a user sees for a bad value
(parameter, value, fix); :class:`skfairtune._params.Checked` wraps them into
``FairTuneSearchCV._parameter_constraints``. :class:`FitData` is the frozen
record of the data that every step of ``FairTuneSearchCV.fit`` reads.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import optuna
from sklearn.pipeline import Pipeline

from .classifier import FairTuneClassifier
from .masks import PRESETS

__all__ = ["FitData", "check_baseline_lrs", "check_baselines", "check_callbacks", "check_error_score", "check_estimator",
           "check_lora_ranks", "check_lr_range", "check_split_iterable", "check_study", "classifier_step_of"]


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
    y_codes: np.ndarray
    g_codes: np.ndarray
    group_labels: list
    sensitive_features: object
    groups: object
    seed: int | None
    step: str | None
    prefix: str

