"""One Optuna trial of FairTune: train the folds in lockstep, report after every epoch.

The public reference code reports once, after training, so successive halving
never stops anything. Here every epoch ends with the validation objective on the
whole validation split of every fold, and a trial the pruner rejects stops there.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import optuna
import torch
from sklearn.base import clone
from sklearn.utils import _safe_indexing

from ._training import NonFiniteLossError

__all__ = ["SearchSpace", "Objective", "scorer_kwargs", "requires_sensitive_features"]


def requires_sensitive_features(scorer) -> bool:
    """True when the scorer takes ``sensitive_features`` and its metric has no default."""
    if not scorer_kwargs(scorer, "probe"):
        return False
    import inspect

    func = getattr(scorer, "_score_func", scorer)
    try:
        parameter = inspect.signature(func).parameters.get("sensitive_features")
    except (TypeError, ValueError):
        return True
    return parameter is None or parameter.default is inspect.Parameter.empty


def scorer_kwargs(scorer, sensitive_features) -> dict:
    """Pass ``sensitive_features`` only to scorers that take it (and only when known)."""
    if sensitive_features is None:
        return {}
    requests = None
    try:
        requests = scorer._get_metadata_request().score.requests
    except AttributeError:
        pass
    if requests is not None:
        wanted = requests.get("sensitive_features") not in (None, False)
    else:
        import inspect

        try:
            parameters = inspect.signature(scorer).parameters
        except (TypeError, ValueError):
            return {}
        wanted = "sensitive_features" in parameters or any(
            p.kind is p.VAR_KEYWORD for p in parameters.values()
        )
    return {"sensitive_features": sensitive_features} if wanted else {}


@dataclass
class SearchSpace:
    """What a trial samples: mask bits, learning rate and any extra distributions."""

    mask_space: object | None  # skfairtune.masks.MaskSpace, or None to keep the estimator's mask
    lr_range: tuple[float, float] | None
    extra: dict = field(default_factory=dict)

    def suggest(self, trial: optuna.Trial) -> dict:
        params = {}
        if self.mask_space is not None:
            params["mask"] = self.mask_space.suggest(trial).to_string()
        if self.lr_range is not None:
            params["lr"] = trial.suggest_float("lr", *self.lr_range, log=True)
        for name, distribution in self.extra.items():
            params[name] = _suggest(trial, name, distribution)
        return params

    def trial_params(self, params: dict) -> dict:
        """Optuna parameter values (for ``enqueue_trial``) from estimator parameters."""
        out = {key: value for key, value in params.items() if key != "mask"}
        if "mask" in params and self.mask_space is not None:
            out.update(zip(self.mask_space.bit_names, self.mask_space.resolve(params["mask"]).bits))
        return out

    def from_trial(self, trial_params: dict) -> dict | None:
        """Estimator parameters of a trial; None when sampling was cut short (Ctrl-C)."""
        try:
            params = {}
            if self.mask_space is not None:
                params["mask"] = self.mask_space.mask_from_params(trial_params).to_string()
            if self.lr_range is not None:
                params["lr"] = trial_params["lr"]
            params.update({k: trial_params[k] for k in self.extra})
        except (KeyError, ValueError):
            return None
        return params


def _suggest(trial, name, distribution):
    dists = optuna.distributions
    if isinstance(distribution, dists.FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high,
                                   log=distribution.log, step=distribution.step)
    if isinstance(distribution, dists.IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high,
                                 log=distribution.log, step=distribution.step)
    if isinstance(distribution, dists.CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(
        f"param_distributions[{name!r}] must be an optuna FloatDistribution, IntDistribution "
        f"or CategoricalDistribution; got {distribution!r}."
    )


def _overall_auc(y_valid, proba, classes) -> float | None:
    """Validation ROC AUC over all samples for binary tasks (None otherwise or if undefined)."""
    if proba.shape[1] != 2 or len(np.unique(y_valid)) != 2:
        return None
    from .metrics import overall_auc

    return overall_auc(y_valid, proba[:, 1], pos_label=classes[1])


@dataclass
class _FoldState:
    clf: object
    prepared: object
    valid_input: torch.Tensor
    y_valid: np.ndarray
    s_valid: object


class Objective:
    """Callable Optuna objective; picklable so worker processes can run it."""

    def __init__(self, *, estimator, step, space, X, X_original, y, sensitive_features,
                 splits, scorer, error_score, max_epochs, verbose=0):
        self.estimator = estimator
        self.step = step
        self.space = space
        self.X = X
        self.X_original = X_original
        self.y = y
        self.sensitive_features = sensitive_features
        self.splits = splits
        self.scorer = scorer
        self.error_score = error_score
        self.max_epochs = max_epochs
        self.verbose = verbose
        self._activation_cache = None

    def __getstate__(self):
        # Activations stay in the process that computed them; a worker builds its own.
        state = dict(self.__dict__)
        state["_activation_cache"] = None
        return state

    def _shared_cache(self):
        """Frozen-prefix activations shared across trials (plain estimators only).

        Bounded by the template's ``frozen_cache_max_mb``. A Pipeline refits its
        transformers per trial, so its inputs are not shared.
        """
        if self.step:
            return None
        if self._activation_cache is None:
            from ._cache import ActivationCache, max_bytes_from_mb

            self._activation_cache = ActivationCache(max_bytes_from_mb(self.estimator.frozen_cache_max_mb))
        return self._activation_cache

    def _set(self, estimator, params):
        prefix = f"{self.step}__" if self.step else ""
        return estimator.set_params(**{prefix + k: v for k, v in params.items()})

    def _prepare_fold(self, params, train, valid) -> _FoldState:
        estimator = self._set(clone(self.estimator), params)
        if self.step:
            # A Pipeline: fit its transformers on the training fold, then drive the classifier.
            head = estimator[:-1]
            X_train = head.fit_transform(_safe_indexing(self.X_original, train), self.y[train])
            X_valid = head.transform(_safe_indexing(self.X_original, valid))
            clf = estimator[-1]
        else:
            X_train, X_valid, clf = self.X[train], self.X[valid], estimator
        shared = self._shared_cache()
        fold_key = hash(np.asarray(train).tobytes()) if shared is not None else None
        prepared = clf._prepare_training(X_train, self.y[train], shared_cache=shared,
                                         data_key=("train", fold_key))
        valid_tensor = clf._transform_input(X_valid)
        if prepared.cache_start:
            valid_tensor = clf._frozen_activations(valid_tensor, prepared.cache_start, shared_cache=shared,
                                                   data_key=("valid", fold_key))
        return _FoldState(clf, prepared, valid_tensor, self.y[valid],
                          _safe_indexing(self.sensitive_features, valid)
                          if self.sensitive_features is not None else None)

    def _score(self, fold: _FoldState) -> float:
        from .scorers import _FrozenPredictions

        proba = fold.clf._predict_proba_tensor(fold.valid_input, start=fold.prepared.cache_start)
        frozen = _FrozenPredictions(proba, fold.clf.classes_)
        placeholder = np.zeros((len(proba), 1))
        fold.overall_auc = _overall_auc(fold.y_valid, proba, fold.clf.classes_)
        return float(self.scorer(frozen, placeholder, fold.y_valid,
                                 **scorer_kwargs(self.scorer, fold.s_valid)))

    def __call__(self, trial: optuna.Trial) -> float:
        params = self.space.suggest(trial)
        trial.set_user_attr("params", params)
        started = time.perf_counter()
        epoch_scores: list[list[float]] = []
        epoch_overall: list[list[float | None]] = []  # plot_pareto's x axis, whatever the scoring
        try:
            folds = [self._prepare_fold(params, tr, va) for tr, va in self.splits]
            trial.set_user_attr("n_trainable_params", int(folds[0].clf.n_trainable_params_))
            trial.set_user_attr("frozen_prefix", int(folds[0].prepared.cache_start))
            if self._activation_cache is not None:
                trial.set_user_attr("activation_cache", self._activation_cache.stats())
            for epoch in range(1, self.max_epochs + 1):
                scores = []
                for fold in folds:
                    fold.clf._train_epochs(fold.prepared, 1, propagate_interrupt=True)
                    scores.append(self._score(fold))
                epoch_scores.append(scores)
                epoch_overall.append([fold.overall_auc for fold in folds])
                trial.set_user_attr("epoch_split_overall_auc", epoch_overall)
                value = float(np.mean(scores))
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"the validation score is {value} at epoch {epoch} (fold scores {scores})"
                    )
                trial.report(value, epoch)
                if trial.should_prune():
                    self._record(trial, epoch_scores, started)
                    raise optuna.TrialPruned(f"pruned after epoch {epoch} with score {value:.4f}")
            self._record(trial, epoch_scores, started)
            return value
        except optuna.TrialPruned:
            raise
        except (KeyboardInterrupt, SystemExit):
            # Optuna records the trial as failed; the mark says why (run_trials re-queues it).
            trial.set_user_attr("interrupted", True)
            raise
        except Exception as exc:  # noqa: BLE001 - error_score decides, like sklearn
            if isinstance(self.error_score, str) and self.error_score == "raise":
                raise
            self._record(trial, epoch_scores, started)
            reason = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("fail_reason", reason)
            if not isinstance(exc, (NonFiniteLossError, FloatingPointError)):
                trial.set_user_attr("traceback", traceback.format_exc()[-2000:])
            return float(self.error_score)

    @staticmethod
    def _record(trial, epoch_scores, started):
        trial.set_user_attr("epoch_split_scores", epoch_scores)
        trial.set_user_attr("n_epochs", len(epoch_scores))
        trial.set_user_attr("fit_time", time.perf_counter() - started)
