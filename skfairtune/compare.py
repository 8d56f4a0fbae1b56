"""An honest comparison in one call: FairTune against the paper's baselines on held-out data.

:func:`compare_methods` runs every method on the same outer splits. Inside each
outer training part, each baseline's learning rate is tuned on the *same*
inner validation split and objective as the search (the paper's protocol), the
search runs as configured, and every method is refit and scored once on the
outer held-out part. The differences in worst-group AUC to FairTune come with
paired bootstrap intervals, so a reader sees which differences are noise.

Two more rows keep the comparison from flattering FairTune: FairTune
restricted to the masks it searched (its study also holds the baselines, so
it may simply re-pick one), and the baseline a practitioner would pick
without FairTune, chosen per outer fold on inner validation only.
"""

from __future__ import annotations

import logging
import numbers
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.utils import _safe_indexing

from ._training._trainer import encode_targets
from ._utils._strata import label_group_strata
from .masks import PRESETS
from .metrics._group import (
    auc_gap,
    demographic_parity_difference,
    equalized_odds_difference,
    min_group_auc,
    overall_auc,
)
from .search._baselines import baseline_lrs, copy_baseline_trial
from .search._pruners import make_pruner, make_sampler
from .search._search import BASELINES, FairTuneSearchCV
from .search._selection import cluster_bootstrap_indices, stratified_bootstrap_indices
from .search._setup import classifier_step_of, searched_space
from .search._splits import group_codes, make_splits

__all__ = ["compare_methods", "COMPARISON_COLUMNS", "FAIRTUNE", "FAIRTUNE_SEARCHED", "VALIDATION_SELECTED"]

logger = logging.getLogger("skfairtune")

FAIRTUNE = "FairTune"
FAIRTUNE_SEARCHED = "FairTune (searched)"
VALIDATION_SELECTED = "validation-selected baseline"
SEARCHED = "searched"  # `chosen` of a fold whose predictions come from a searched (non-preset) mask

COMPARISON_COLUMNS = (
    "overall_auc", "min_group_auc", "auc_gap", "equalized_odds_difference",
    "demographic_parity_difference", "n_trainable_params", "fit_time_s", "validation_score",
    "lr", "mask", "chosen", "min_group_auc_diff", "min_group_auc_diff_ci_low", "min_group_auc_diff_ci_high",
    "ci_contains_zero",
)
"""Columns of the DataFrame that :func:`compare_methods` returns."""


def _method_searches(search: FairTuneSearchCV, methods) -> dict[str, FairTuneSearchCV]:
    """One search per method: each baseline's lr grid on the search's own protocol, then FairTune."""
    step, _ = classifier_step_of(search.estimator)
    prefix = f"{step}__" if step else ""
    lrs = baseline_lrs(search.baseline_lrs, search.lr_range)
    searches = {}
    for method in methods:
        estimator = clone(search.estimator).set_params(**{prefix + "mask": method})
        if lrs:
            import optuna

            # Every rate of the grid runs to the end; the best on the inner validation wins.
            sampler = optuna.samplers.GridSampler({"lr": list(lrs)}, seed=0)
            tuned = clone(search).set_params(
                estimator=estimator, mask_space=None, baselines=None, sampler=sampler, n_trials=len(lrs),
                pruner="none", selection="best", storage=None, study=None, study_name=None, n_jobs=1,
            )
        else:
            tuned = clone(search).set_params(
                estimator=estimator, mask_space=None, lr_range=None, baselines=None, n_trials=1, pruner="none",
                selection="best", storage=None, study=None, study_name=None, n_jobs=1,
            )
        searches[method] = tuned
    searches[FAIRTUNE] = clone(search).set_params(storage=None, study=None, study_name=None)
    return searches


def _int_seed(random_state) -> int | None:
    """None or an int as given; a ``RandomState`` gives one int draw (the search's own rule)."""
    if random_state is None or isinstance(random_state, numbers.Integral):
        return random_state
    return int(random_state.randint(2**31 - 1))


def _start_from_baselines(search: FairTuneSearchCV, fitted: dict[str, FairTuneSearchCV], seed) -> FairTuneSearchCV:
    """FairTune's search, its study holding the baselines' trials already run on the same folds.

    The baseline searches train each preset at each rate of the grid on the very
    folds, seed and objective the search's own enqueued baselines would use, so
    their complete trials are copied rather than trained twice. Only when the
    search enqueues exactly the compared presets; otherwise it runs as given.
    """
    import optuna

    if searched_space(search) is None or not search.baselines or set(search.baselines) != set(fitted):
        return search
    _, template = classifier_step_of(search.estimator)
    copies = [(name, source) for name in search.baselines for source in fitted[name].study_.trials
              if source.state == optuna.trial.TrialState.COMPLETE]
    pruner = make_pruner(search.pruner, template.max_epochs, template.warmup_fraction)
    study = optuna.create_study(direction="maximize", pruner=pruner,
                                sampler=make_sampler(search.sampler, seed, n_baseline_trials=len(copies),
                                                     n_startup_trials=search.n_startup_trials))
    for name, source in copies:
        copy_baseline_trial(study, source, baseline=name, source_study=fitted[name].study_.study_name,
                            presets=search.baselines, pruner=pruner, max_epochs=template.max_epochs)
    return clone(search).set_params(study=study)


def _best_searched_row(fitted: FairTuneSearchCV) -> int | None:
    """Row of the best complete trial of a searched mask (not a baseline), by validation; None if none."""
    results = fitted.cv_results_
    scores = np.asarray(results["mean_test_score"], dtype=float)
    rows = [i for i in range(len(scores)) if results["state"][i] == "complete" and np.isfinite(scores[i])
            and results["baseline"][i] is None]
    return min(rows, key=lambda i: (-scores[i], i)) if rows else None


def _refit_row(fitted: FairTuneSearchCV, row: int, X, y):
    """The search's estimator refit on ``X`` with the parameters of ``row``, as the search's own refit does."""
    step, _ = classifier_step_of(fitted.estimator)
    prefix = f"{step}__" if step else ""
    estimator = clone(fitted.estimator)
    if searched_space(fitted) is not None:
        estimator.set_params(**{prefix + "mask_space": searched_space(fitted)})
    params = fitted.cv_results_["params"][row]
    estimator.set_params(**{prefix + k: v for k, v in params.items() if k != "random_state"})
    if fitted.random_state is not None:
        # The int seed the search's own refit used (drawn once per fit when random_state is a RandomState).
        estimator.set_params(**{prefix + "random_state": fitted._seed()})
    return estimator.fit(X, y)


def _positive_proba(estimator, X, positive) -> np.ndarray:
    return estimator.predict_proba(X)[:, list(estimator.classes_).index(positive)]


def _n_trainable(estimator) -> float:
    final = estimator[-1] if hasattr(estimator, "steps") else estimator
    return float(getattr(final, "n_trainable_params_", np.nan))


def _held_out_metrics(y, score, y_pred, s, pos_label) -> dict[str, float]:
    kwargs = dict(sensitive_features=s, pos_label=pos_label)
    return {
        "overall_auc": overall_auc(y, score, pos_label=pos_label),
        "min_group_auc": min_group_auc(y, score, **kwargs),
        "auc_gap": auc_gap(y, score, **kwargs),
        "equalized_odds_difference": equalized_odds_difference(y, y_pred, **kwargs),
        "demographic_parity_difference": demographic_parity_difference(y, y_pred, **kwargs),
    }


def compare_methods(
    search: FairTuneSearchCV,
    X: Any,
    y: Any,
    *,
    sensitive_features: Any,
    groups: Any = None,
    methods: tuple[str, ...] = BASELINES,
    cv: Any = None,
    test_size: float = 0.2,
    threshold: float = 0.5,
    n_boot: int = 1000,
    random_state: int | None = None,
    return_searches: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict]:
    """Compare FairTune with the baselines on held-out data, with uncertainty.

    For every outer split, each method is fitted on the outer training part
    only: a baseline (a mask preset, trained as the public FairTune code
    defines it) has its learning rate chosen among the search's baseline grid
    (``baseline_lrs``, by default one rate per decade of ``lr_range``) on the search's
    inner validation protocol and objective, then is refit on the whole outer
    training part; FairTune is ``search`` itself. All methods are then scored
    on the outer held-out part. With several outer folds every image is held
    out once and the metrics are computed on the pooled held-out predictions.

    Two rows guard against a flattering comparison. ``"FairTune (searched)"``
    is FairTune restricted to the masks it searched: the best complete trial
    of FairTune's search whose ``cv_results_["baseline"]`` is None (by
    validation score), refit on the outer training part. ``"validation-selected
    baseline"`` is what one would do without FairTune: in each outer fold,
    the baseline with the best inner validation score, and that method's
    held-out predictions in that fold.

    Parameters
    ----------
    search : FairTuneSearchCV
        The configured (unfitted) search; its estimator, budget, inner
        validation and objective are used for every method.
    X : array-like, tensor, list of PIL images or list of file paths
        Images.
    y : array-like of shape (n_samples,)
        Binary labels.
    sensitive_features : array-like, Series or DataFrame
        Group membership of every image.
    groups : array-like, default=None
        Patient or lesion ids: no id straddles an outer or inner split, and
        the bootstrap of the intervals resamples whole ids (a cluster
        bootstrap; within label x group cells when every id lies in one).
    methods : tuple of str, default=("full", "linear", "attention", "layernorm")
        Baseline presets (see :data:`skfairtune.masks.PRESETS`).
    cv : None, int or iterable of (train, test), default=None
        Outer splits. ``None``: one split holding out ``test_size``,
        stratified on label x group. An int: that many stratified folds.
    test_size : float, default=0.2
        Held-out share when ``cv=None``.
    threshold : float, default=0.5
        Probability above which an image is predicted positive, for the
        thresholded metrics (EOddsD, DPD).
    n_boot : int, default=1000
        Paired bootstrap resamples of the held-out images (within label x
        group cells; of whole ``groups`` when given) for the intervals of the
        worst-group AUC differences.
    random_state : int, default=None
        Seeds the outer split and the bootstrap.
    return_searches : bool, default=False
        Also return the fitted searches, ``{method: [search per outer fold]}``
        (as ``cross_validate(..., return_estimator=True)`` does).

    Returns
    -------
    table : pandas.DataFrame
        One row per method: the baselines, ``"validation-selected
        baseline"`` (when there are baselines), ``"FairTune (searched)"``,
        then ``"FairTune"``; columns
        :data:`COMPARISON_COLUMNS`: held-out ``overall_auc``,
        ``min_group_auc``, ``auc_gap``, ``equalized_odds_difference``,
        ``demographic_parity_difference``; ``n_trainable_params``,
        ``fit_time_s`` (tuning and refit, summed over outer folds; the
        validation-selected baseline counts every baseline's, FairTune
        (searched) FairTune's plus its own refit), ``validation_score`` (the
        inner objective of the chosen setting, mean over outer folds), the
        chosen ``lr`` and ``mask`` (last outer fold); ``chosen``, per outer
        fold (comma-joined), what produced the row's predictions: a
        baseline's name, or ``"searched"`` for a searched mask (so the
        ``"FairTune"`` row shows when FairTune re-picked a preset);
        ``min_group_auc_diff`` (the method minus FairTune) with its 95%
        paired-bootstrap interval, and ``ci_contains_zero`` (the interval
        contains 0). ``"FairTune (searched)"`` is NaN (with a logged
        warning) when some outer fold's search completed no searched mask.

    searches : dict of str to list of FairTuneSearchCV
        Only with ``return_searches=True``.

    Notes
    -----
    When ``search.baselines`` names exactly the compared ``methods``, FairTune's
    study starts from the baselines' tuning trials (the same training on the
    same folds, copied instead of run twice), so FairTune's choice includes
    every tuned baseline at no extra cost. When FairTune re-picks a preset,
    its difference to that baseline is exactly 0: the comparison is then
    between choosing rules, which the ``"FairTune (searched)"`` row (the
    searched masks alone) and the ``"validation-selected baseline"`` row (the
    same choice without the searched masks) make explicit.

    The column ``within_noise`` of earlier versions is now
    ``ci_contains_zero``: the interval is a paired bootstrap over held-out
    images (or patients), not a statement about every source of noise (the
    outer split and the training seeds are not resampled).

    Examples
    --------
    >>> from skfairtune import FairTuneClassifier, FairTuneSearchCV, compare_methods
    >>> from skfairtune.datasets import make_biased_images
    >>> data = make_biased_images(240, image_size=16, random_state=0)
    >>> clf = FairTuneClassifier(
    ...     "vit_tiny_patch16_224", pretrained=False, max_epochs=2, batch_size=64,
    ...     model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2))
    >>> search = FairTuneSearchCV(clf, n_trials=2, baselines=None, baseline_lrs=(1e-3,),
    ...                           random_state=0)
    >>> table = compare_methods(search, data.images, data.target,
    ...                         sensitive_features=data.sensitive_features,
    ...                         methods=("linear",), n_boot=50, random_state=0)
    >>> list(table.index)
    ['linear', 'validation-selected baseline', 'FairTune (searched)', 'FairTune']
    >>> table.loc["validation-selected baseline", "chosen"]
    'linear'
    >>> float(table.loc["FairTune", "min_group_auc_diff"])
    0.0
    """
    _check_arguments(search, test_size, n_boot, methods)
    classes, y_codes = encode_targets(y, owner="compare_methods")
    if len(classes) != 2:
        raise ValueError(f"compare_methods needs binary labels; y has {len(classes)} classes.")
    y = np.asarray(y).ravel()
    g_codes, _ = group_codes(sensitive_features, len(y))
    groups_array = None if groups is None else np.asarray(groups)
    outer = make_splits(cv, y_codes=y_codes, g_codes=g_codes, groups=groups_array, validation_fraction=test_size,
                        random_state=random_state, fraction_name="test_size")
    searches = _method_searches(search, methods)
    collected = _Collected([*methods, *([VALIDATION_SELECTED] if methods else []), FAIRTUNE_SEARCHED, FAIRTUNE])
    held_out = []
    for train, test in outer:
        held_out.append(test)
        _fit_outer_fold(collected, searches, search, methods, X, y, sensitive_features, groups_array, train, test,
                        positive=classes[1])
    test_index = np.concatenate(held_out)
    strata = label_group_strata(y_codes[test_index], g_codes[test_index])
    seed = 0 if random_state is None else random_state
    # Images of one patient are not independent: with groups, whole patients are resampled.
    resamples = (stratified_bootstrap_indices(strata, n_boot, seed) if groups_array is None else
                 cluster_bootstrap_indices(groups_array[test_index], n_boot, seed, strata=strata))
    # Each needs what it chooses from: every tuned baseline; FairTune's whole search.
    if methods:
        collected.rows[VALIDATION_SELECTED]["fit_time_s"] = sum(collected.rows[m]["fit_time_s"] for m in methods)
    collected.rows[FAIRTUNE_SEARCHED]["fit_time_s"] += collected.rows[FAIRTUNE]["fit_time_s"]
    frame = _table(collected, y[test_index], _safe_indexing(sensitive_features, test_index), classes, threshold,
                   resamples)
    return (frame, collected.fitted) if return_searches else frame


def _check_arguments(search, test_size, n_boot, methods) -> None:
    if not isinstance(search, FairTuneSearchCV):
        raise TypeError(f"`search` must be a FairTuneSearchCV; got {type(search).__name__}.")
    if not 0 < test_size < 1:
        raise ValueError(f"`test_size` must be in (0, 1); got {test_size!r}.")
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 10):
        raise ValueError(f"`n_boot` must be an int >= 10; got {n_boot!r}.")
    unknown = [m for m in methods if m not in PRESETS]
    if unknown:
        raise ValueError(f"`methods` contains {unknown}; choose among the presets {list(PRESETS)}.")


class _Collected:
    """Per method: held-out probabilities per outer fold, what was chosen, its costs, the fitted searches."""

    def __init__(self, names):
        self.scores: dict[str, list] = {name: [] for name in names}
        self.rows = {name: {"fit_time_s": 0.0, "validation_score": [], "chosen": []} for name in names}
        self.fitted: dict[str, list] = {}

    def record(self, name, proba, validation, params, estimator, chosen):
        self.scores[name].append(proba)
        self.rows[name]["validation_score"].append(validation)
        self.rows[name]["chosen"].append(chosen)
        self.rows[name].update(lr=params.get("lr", np.nan), mask=params.get("mask", chosen),
                               n_trainable_params=_n_trainable(estimator))


def _fit_outer_fold(collected, searches, search, methods, X, y, sensitive_features, groups_array, train, test, *,
                    positive) -> None:
    """Tune and refit every method on the outer training part; keep their held-out probabilities."""
    X_train, X_test = _safe_indexing(X, train), _safe_indexing(X, test)
    s_train = _safe_indexing(sensitive_features, train)
    g_train = None if groups_array is None else groups_array[train]
    fold_fits = {}
    for name, method_search in searches.items():
        started = time.perf_counter()
        if name == FAIRTUNE:
            method_search = _start_from_baselines(method_search, fold_fits, _int_seed(search.random_state))
        fitted = clone(method_search).fit(X_train, y[train], sensitive_features=s_train, groups=g_train)
        fold_fits[name] = fitted
        collected.fitted.setdefault(name, []).append(fitted)
        collected.rows[name]["fit_time_s"] += time.perf_counter() - started
        logger.info("compare_methods: %s tuned and refit in %.0f s (validation %.3f, lr %.2g, mask %s)",
                    name, time.perf_counter() - started, fitted.best_score_,
                    fitted.best_params_.get("lr", float("nan")), fitted.best_params_.get("mask", name))
        kept = fitted.cv_results_["baseline"][fitted.best_index_] if name == FAIRTUNE else name
        collected.record(name, _positive_proba(fitted, X_test, positive), fitted.best_score_, fitted.best_params_,
                         fitted.best_estimator_, kept if isinstance(kept, str) else SEARCHED)
    if methods:  # without FairTune, one tunes the baselines and keeps the best on validation
        pick = max(methods, key=lambda m: np.nan_to_num(fold_fits[m].best_score_, nan=-np.inf))
        collected.record(VALIDATION_SELECTED, collected.scores[pick][-1], fold_fits[pick].best_score_,
                         fold_fits[pick].best_params_, fold_fits[pick].best_estimator_, pick)
    fairtune = fold_fits[FAIRTUNE]
    row = _best_searched_row(fairtune)
    started = time.perf_counter()
    if row is None:
        logger.warning("compare_methods: FairTune's search completed no trial of a searched (non-preset) "
                       "mask in this outer fold; the %r row is NaN.", FAIRTUNE_SEARCHED)
        collected.scores[FAIRTUNE_SEARCHED].append(None)
        return
    if row == fairtune.best_index_:  # FairTune already chose it: the same refit, not trained twice
        estimator, proba = fairtune.best_estimator_, collected.scores[FAIRTUNE][-1]
    else:
        estimator = _refit_row(fairtune, row, X_train, y[train])
        proba = _positive_proba(estimator, X_test, positive)
    collected.rows[FAIRTUNE_SEARCHED]["fit_time_s"] += time.perf_counter() - started  # its own refit only, so far
    collected.record(FAIRTUNE_SEARCHED, proba, float(fairtune.cv_results_["mean_test_score"][row]),
                     fairtune.cv_results_["params"][row], estimator, SEARCHED)


def _table(collected, y_test, s_test, classes, threshold, resamples) -> pd.DataFrame:
    """The comparison table on the pooled held-out predictions, with paired-bootstrap intervals."""
    positive = classes[1]
    pos_label = positive.item() if isinstance(positive, np.generic) else positive
    pooled = {name: None if any(v is None for v in values) else np.concatenate(values)
              for name, values in collected.scores.items()}

    def replicate(score, r):
        try:
            return min_group_auc(y_test[r], score[r], sensitive_features=_safe_indexing(s_test, r),
                                 pos_label=pos_label)
        except ValueError:
            # A cluster resample (groups spanning label x group cells) can leave a group with one class.
            # It depends only on the labels and groups, so it drops out of every method's replicates alike.
            return np.nan

    def boot_min_group_auc(score):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.array([replicate(score, r) for r in resamples])

    reference = boot_min_group_auc(pooled[FAIRTUNE])
    reference_value = min_group_auc(y_test, pooled[FAIRTUNE], sensitive_features=s_test, pos_label=pos_label)
    table = []
    for name, score in pooled.items():
        rows = collected.rows[name]
        row = dict.fromkeys(COMPARISON_COLUMNS, np.nan)
        row["fit_time_s"] = rows["fit_time_s"]
        if score is not None:
            row["chosen"] = ",".join(rows["chosen"])
            y_pred = np.where(score >= threshold, classes[1], classes[0])
            row.update(_held_out_metrics(y_test, score, y_pred, s_test, pos_label))
            row.update(n_trainable_params=rows["n_trainable_params"], lr=rows["lr"], mask=rows["mask"],
                       validation_score=float(np.mean(rows["validation_score"])))
            diff = (reference if name == FAIRTUNE else boot_min_group_auc(score)) - reference
            row["min_group_auc_diff"] = row["min_group_auc"] - reference_value
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN only if no resample had both classes
                low, high = np.nanpercentile(diff, [2.5, 97.5])
            row["min_group_auc_diff_ci_low"], row["min_group_auc_diff_ci_high"] = low, high
            row["ci_contains_zero"] = bool(low <= 0 <= high) if np.isfinite([low, high]).all() else np.nan
        table.append(pd.Series(row, name=name))
    return pd.DataFrame(table)[list(COMPARISON_COLUMNS)]
