"""One Optuna trial of FairTune: train the folds in lockstep, report after every epoch.

The public reference code reports once, after training, so successive halving
never stops anything. Here every epoch ends with the validation objective on the
whole validation split of every fold, and a trial the pruner rejects stops there.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

import numpy as np
import optuna
import torch
from sklearn.base import clone
from sklearn.utils import _safe_indexing

from .._training._net import NonFiniteLossError
from .._training._template import TemplateStore
from .._training._trainer import Trainer, resolve_seed
from .._utils._params import validate_params
from .._utils._strata import label_group_strata
from ..backbone._vit_split import ActivationCache, max_bytes_from_mb
from ..distributed._trial_record import TrialRecord
from ..metrics._group import overall_auc
from ._multiobjective import TrialCost
from ._predictions import FrozenPredictions
from ._pruners import record_epoch_values
from ._selection import stratified_bootstrap_indices

__all__ = ["Objective", "scorer_kwargs", "requires_sensitive_features", "index_fit_params"]


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


def index_fit_params(params: dict, indices, n_samples: int) -> dict:
    """``params`` for the samples at ``indices``: sample-aligned arrays indexed, anything else as is (sklearn's rule).

    Examples
    --------
    >>> import numpy as np
    >>> from skfairtune.search._objective import index_fit_params
    >>> index_fit_params({"w": np.arange(4.0), "alpha": 0.5}, [0, 2], 4)
    {'w': array([0., 2.]), 'alpha': 0.5}
    """
    def aligned(value) -> bool:
        return (not isinstance(value, (str, bytes, dict)) and hasattr(value, "__len__")
                and hasattr(value, "__getitem__") and len(value) == n_samples)

    return {k: _safe_indexing(v, indices) if aligned(v) else v for k, v in params.items()}


def _overall_auc(y_valid, proba, classes) -> float | None:
    """Validation ROC AUC over all samples for binary tasks (None otherwise or if undefined)."""
    if proba.shape[1] != 2 or len(np.unique(y_valid)) != 2:
        return None
    return overall_auc(y_valid, proba[:, 1], pos_label=classes[1])


@dataclass
class _Fold:
    trainer: Trainer
    valid_input: torch.Tensor
    valid: np.ndarray  # positions of the validation samples in the search's data
    overall_auc: float | None = None
    fit_time: float = 0.0  # seconds preparing and training this split (cv_results_' *_fit_time)
    score_time: float = 0.0  # seconds predicting and scoring its validation part (*_score_time)


def _timed_predictions(folds: list[_Fold]) -> list[np.ndarray]:
    """Each fold's validation probabilities, the time to predict them added to its score time."""
    probas = []
    for fold in folds:
        started = time.perf_counter()
        probas.append(fold.trainer.predict_proba(fold.valid_input))
        fold.score_time += time.perf_counter() - started
    return probas


def _share_score_time(folds: list[_Fold], seconds: float) -> None:
    """Scoring time shared by the folds (pooled scoring scores them together)."""
    for fold in folds:
        fold.score_time += seconds / len(folds)


def _write_split_times(trial, folds: list[_Fold]) -> None:
    TrialRecord.write(trial, split_fit_times=[f.fit_time for f in folds],
                      split_score_times=[f.score_time for f in folds])


class Objective:
    """Callable Optuna objective; picklable so worker processes can run it.

    Every epoch the folds' validation predictions are scored either *pooled*
    (``fold_scoring="pooled"``: one score over the out-of-fold predictions of
    all folds, so every validation image counts once in one larger set) or as
    the mean of per-fold scores (``"mean"``). A complete trial also stores
    ``n_bootstrap`` paired bootstrap replicates of its final score.

    Every trial trains copies of one :class:`~skfairtune._training._template.ModelTemplate`
    (built once per process), and trials share frozen-prefix activations through
    one :class:`~skfairtune.backbone._vit_split.ActivationCache`.
    """

    def __init__(self, *, estimator, step, space, X, X_original, y, sensitive_features,
                 splits, scorer, error_score, max_epochs, verbose=0, fold_scoring="mean",
                 g_codes=None, n_bootstrap=0, bootstrap_seed=0, templates=None, objectives=None,
                 pareto_pruner=None, prune_baselines=True, head_fit_params=None):
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
        self.fold_scoring = fold_scoring
        self.g_codes = g_codes
        self.n_bootstrap = n_bootstrap
        self.bootstrap_seed = bootstrap_seed
        self.templates = templates if templates is not None else TemplateStore()
        # Several objectives ({name: scorer or TrialCost}): the trial returns one value each and
        # pareto_pruner (None: no pruning) judges it, since Optuna's pruners judge one objective.
        self.objectives = objectives
        self.pareto_pruner = pareto_pruner
        # False: baseline trials still report (and leave rung records, so they compete at every
        # rung) but always train to the end, so each baseline is compared fully trained.
        self.prune_baselines = prune_baselines
        # fit(**params) routed to a Pipeline's steps before the classifier (sample-aligned to y).
        self.head_fit_params = dict(head_fit_params or {})
        self.classes = np.unique(y)
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
            self._activation_cache = ActivationCache(max_bytes_from_mb(self.estimator.frozen_cache_max_mb))
        return self._activation_cache

    def _set(self, estimator, params):
        prefix = f"{self.step}__" if self.step else ""
        return estimator.set_params(**{prefix + k: v for k, v in params.items()})

    def _prepare_fold(self, params, train, valid) -> _Fold:
        estimator = self._set(clone(self.estimator), params)
        if self.step:
            # A Pipeline: fit its transformers on the training fold, then train the classifier.
            head = estimator[:-1]
            params_train = index_fit_params(self.head_fit_params, train, len(self.y))
            X_train = head.fit_transform(_safe_indexing(self.X_original, train), self.y[train], **params_train)
            X_valid = head.transform(_safe_indexing(self.X_original, valid))
            clf = estimator[-1]
        else:
            X_train, X_valid, clf = self.X[train], self.X[valid], estimator
        validate_params(clf)
        clf_params = clf.get_params(deep=False)
        seed = resolve_seed(clf_params["random_state"])
        clf_params["random_state"] = seed  # the template and the training share one seed
        template = self.templates.get(clf_params, n_classes=len(self.classes), seed=seed)
        shared = self._shared_cache()
        fold_key = hash(np.asarray(train).tobytes()) if shared is not None else None
        trainer = Trainer(clf_params, template=template, cache=shared)
        trainer.prepare(X_train, self.y[train], data_key=fold_key)
        return _Fold(trainer, trainer.model_inputs(X_valid, data_key=fold_key), np.asarray(valid))

    # ------------------------------------------------------------------ scoring
    def _score_predictions(self, proba: np.ndarray, positions: np.ndarray, classes, scorer=None) -> float:
        scorer = self.scorer if scorer is None else scorer
        frozen = FrozenPredictions(proba, classes)
        placeholder = np.zeros((len(proba), 1))
        s = None if self.sensitive_features is None else _safe_indexing(self.sensitive_features, positions)
        return float(scorer(frozen, placeholder, self.y[positions], **scorer_kwargs(scorer, s)))

    def _epoch_scores(self, folds, probas=None, scorer=None) -> tuple[float, list[float], list]:
        """(objective value, per-fold scores, per-set predictions) after an epoch."""
        if probas is None:
            probas = [fold.trainer.predict_proba(fold.valid_input) for fold in folds]
        classes = folds[0].trainer.classes
        pooled = self.fold_scoring == "pooled" and len(folds) > 1
        fold_scores = []
        for fold, proba in zip(folds, probas):
            fold.overall_auc = _overall_auc(self.y[fold.valid], proba, classes)
            try:
                fold_scores.append(self._score_predictions(proba, fold.valid, classes, scorer))
            except ValueError:
                if not pooled:
                    raise
                fold_scores.append(float("nan"))  # e.g. a group with one class in this fold only
        if pooled:
            sets = [(np.concatenate([f.valid for f in folds]), np.concatenate(probas))]
            value = self._score_predictions(sets[0][1], sets[0][0], classes, scorer)
        else:
            sets = [(fold.valid, proba) for fold, proba in zip(folds, probas)]
            value = float(np.mean(fold_scores))
        return value, fold_scores, sets

    def _bootstrap(self, sets, classes) -> list[float]:
        """Paired replicates of the objective: the same resamples for every trial."""
        if not self.n_bootstrap:
            return []
        g_codes = np.zeros(len(self.y), dtype=np.int64) if self.g_codes is None else np.asarray(self.g_codes)
        y_codes = np.unique(self.y, return_inverse=True)[1].reshape(-1)
        replicates = np.zeros(self.n_bootstrap)
        for k, (positions, proba) in enumerate(sets):
            strata = label_group_strata(y_codes[positions], g_codes[positions])
            index = stratified_bootstrap_indices(strata, self.n_bootstrap, self.bootstrap_seed + k)
            for b, rows in enumerate(index):
                replicates[b] += self._score_predictions(proba[rows], positions[rows], classes)
        return (replicates / len(sets)).tolist()

    # ------------------------------------------------------------------ training
    def _train(self, params, splits, trial=None):
        """Train the folds in lockstep; report each epoch to ``trial`` when given.

        Returns (value, epoch fold scores, final evaluation sets, classes).
        """
        folds = []
        for train, valid in splits:
            started = time.perf_counter()
            folds.append(self._prepare_fold(params, train, valid))
            folds[-1].fit_time = time.perf_counter() - started
        return self._run_epochs(folds, trial)

    def _run_epochs(self, folds: list[_Fold], trial=None):
        """The epochs of :meth:`_train` on prepared folds (a seam for diagnostics and tests)."""
        if trial is not None:
            TrialRecord.write(trial, n_trainable_params=int(folds[0].trainer.n_trainable_params),
                              frozen_prefix=int(folds[0].trainer.frozen_prefix))
            if self._activation_cache is not None:
                TrialRecord.write(trial, activation_cache=self._activation_cache.stats())
        epoch_scores: list[list[float]] = []
        epoch_overall: list[list[float | None]] = []  # plot_pareto's x axis, whatever the scoring
        value, sets = float("nan"), []
        prunable = trial is not None and (self.prune_baselines or TrialRecord.of(trial).baseline is None)
        for epoch in range(1, self.max_epochs + 1):
            for fold in folds:
                started = time.perf_counter()
                fold.trainer.step(1, propagate_interrupt=True)
                fold.fit_time += time.perf_counter() - started
            probas = _timed_predictions(folds)
            started = time.perf_counter()
            if self.objectives:
                value, fold_scores, sets, per_objective = self._objective_values(folds, probas)
            else:
                (value, fold_scores, sets), per_objective = self._epoch_scores(folds, probas), None
            _share_score_time(folds, time.perf_counter() - started)
            epoch_scores.append(fold_scores)
            epoch_overall.append([fold.overall_auc for fold in folds])
            if not np.all(np.isfinite(value)):
                raise FloatingPointError(
                    f"the validation score is {value} at epoch {epoch} (fold scores {fold_scores})"
                )
            if trial is not None:
                TrialRecord.write(trial, epoch_split_overall_auc=epoch_overall,
                                  epoch_split_scores=epoch_scores, n_epochs=epoch,
                                  **({} if per_objective is None else {"split_objective_scores": per_objective}))
                # Pruning after the last epoch would save nothing and discard a trained trial.
                if self._judge(trial, value, epoch, may_prune=epoch < self.max_epochs) and prunable:
                    _write_split_times(trial, folds)
                    raise optuna.TrialPruned(f"pruned after epoch {epoch} with score {value}")
        if trial is not None:
            _write_split_times(trial, folds)
        return value, epoch_scores, sets, folds[0].trainer.classes

    def _objective_values(self, folds, probas=None):
        """(one value per objective, the first objective's fold scores, its sets, every objective's
        fold scores) after an epoch."""
        if probas is None:
            probas = [fold.trainer.predict_proba(fold.valid_input) for fold in folds]
        values, first, per_objective = [], None, []
        for scorer in self.objectives.values():
            if isinstance(scorer, TrialCost):
                values.append(scorer.from_trainer(folds[0].trainer))
                per_objective.append([values[-1]] * len(folds))  # a cost is the same on every split
                continue
            value, fold_scores, sets = self._epoch_scores(folds, probas, scorer)
            values.append(value)
            per_objective.append(list(fold_scores))
            first = first or (fold_scores, sets)
        return tuple(values), *(first or ([], [])), per_objective

    def _judge(self, trial, value, epoch: int, *, may_prune: bool) -> bool:
        """Report ``value`` after ``epoch``; True when the trial should stop (asked only if ``may_prune``)."""
        if not self.objectives:
            trial.report(value, epoch)
            return may_prune and trial.should_prune()
        if self.pareto_pruner is None:
            record_epoch_values(trial, value, epoch)  # the learning curves, for the results
            return False
        self.pareto_pruner.report(trial, value, epoch)
        return may_prune and self.pareto_pruner.should_prune(trial, epoch)

    def evaluate(self, params: dict, splits) -> float:
        """Train ``params`` to the end on other ``splits`` and return the objective.

        Used to re-evaluate the top trials (``selection="reeval"``); nothing is
        reported to the study and nothing is pruned.
        """
        value, _, _, _ = self._train(params, splits)
        return value

    def __call__(self, trial: optuna.Trial) -> float:
        baseline = TrialRecord.of(trial).baseline
        params = self.space.suggest(trial, preset=baseline)
        TrialRecord.write(trial, params=params, n_epochs=0)
        started = time.perf_counter()
        try:
            value, _, sets, classes = self._train(params, self.splits, trial)
            if not self.objectives:  # replicates of one objective; several are compared by their front
                scored = time.perf_counter()
                TrialRecord.write(trial, bootstrap_scores=self._bootstrap(sets, classes))
                if self.n_bootstrap:  # the bootstrap scores every split's predictions: its time is theirs
                    share = (time.perf_counter() - scored) / len(self.splits)
                    TrialRecord.write(trial, split_score_times=[
                        t + share for t in TrialRecord.of(trial).split_score_times])
            TrialRecord.write(trial, fit_time=time.perf_counter() - started)
            return value
        except optuna.TrialPruned:
            TrialRecord.write(trial, fit_time=time.perf_counter() - started)
            raise
        except (KeyboardInterrupt, SystemExit):
            # Optuna records the trial as failed; the mark says why (run_trials re-queues it).
            TrialRecord.write(trial, interrupted=True)
            raise
        except Exception as exc:  # noqa: BLE001 - error_score decides, like sklearn
            if isinstance(self.error_score, str) and self.error_score == "raise":
                raise
            # As scikit-learn: the fit scores error_score in cv_results_ and a FitFailedWarning says so.
            # The sampler is told the trial failed (NaN), never error_score as if it were a result.
            TrialRecord.write(trial, fit_time=time.perf_counter() - started, error_score=float(self.error_score),
                              fail_reason=f"{type(exc).__name__}: {exc}")
            if not isinstance(exc, (NonFiniteLossError, FloatingPointError)):
                TrialRecord.write(trial, traceback=traceback.format_exc()[-2000:])
            return (float("nan"),) * len(self.objectives) if self.objectives else float("nan")
