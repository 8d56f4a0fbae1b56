"""``cv_results_`` of a search, read from its Optuna trials."""

from __future__ import annotations

import numpy as np
import optuna

from ..distributed._trial_record import TrialRecord
from ._pareto import non_dominated_sort

__all__ = ["results_table"]


def _trial_params(trial, space) -> dict:
    """The estimator parameters a trial trained with (a baseline keeps its preset name)."""
    return TrialRecord.of(trial).params or space.from_trial(trial.params) or {}


def _trial_score(trial) -> float:
    """The objective of a complete trial, or the last value a pruned one reported."""
    if trial.state == optuna.trial.TrialState.COMPLETE:
        return np.nan if not trial.values else float(trial.values[0])
    if trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
        return float(trial.intermediate_values[max(trial.intermediate_values)])
    return np.nan


def results_table(trials, space, n_splits: int, *, names=None, directions=None) -> dict:
    """sklearn's ``cv_results_`` layout, plus Optuna's state, epochs and bootstrap intervals.

    ``mean_test_score`` is the trial's objective (pooled over folds when the
    search pools them); ``std_test_score`` the standard deviation of its
    paired bootstrap replicates when there are any, else over folds.

    With several objective ``names`` the layout is scikit-learn's multi-metric
    one: ``mean_test_<name>`` and ``rank_test_<name>`` per objective (a pruned
    trial shows the values it stopped with), plus ``pareto_rank`` (0: on the
    front of the complete trials, -1: not complete).
    """
    if names is not None:
        return _multi_objective_table(trials, space, n_splits, list(names), list(directions))
    n = len(trials)
    table: dict = {"params": [], "state": np.empty(n, dtype=object), "n_epochs": np.zeros(n, dtype=int),
                   "mean_fit_time": np.full(n, np.nan), "trial_number": np.zeros(n, dtype=int),
                   "baseline": np.empty(n, dtype=object), "fail_reason": np.empty(n, dtype=object),
                   "n_trainable_params": np.full(n, np.nan)}
    split_scores = np.full((n, n_splits), np.nan)
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    ci = np.full((n, 2), np.nan)
    for i, trial in enumerate(trials):
        record = TrialRecord.of(trial)
        params = _trial_params(trial, space)
        table["params"].append(params)
        for key in params:
            table.setdefault(f"param_{key}", np.ma.masked_all(n, dtype=object))[i] = params[key]
        table["state"][i] = trial.state.name.lower()
        table["n_epochs"][i] = record.n_epochs
        # As in scikit-learn: the mean time to fit one split (the trial trains them all).
        table["mean_fit_time"][i] = record.fit_time / n_splits
        table["trial_number"][i] = trial.number
        table["baseline"][i] = record.baseline
        table["fail_reason"][i] = record.fail_reason
        table["n_trainable_params"][i] = np.nan if record.n_trainable_params is None else record.n_trainable_params
        if trial.state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            continue
        epochs = record.epoch_split_scores
        if epochs:
            split_scores[i] = epochs[-1]  # for a pruned trial, the scores it was pruned with
        mean[i] = _trial_score(trial)
        replicates = np.asarray(record.bootstrap_scores, dtype=float)
        replicates = replicates[np.isfinite(replicates)]
        if len(replicates) > 1:
            std[i] = replicates.std(ddof=1)
            ci[i] = np.percentile(replicates, [2.5, 97.5])
        elif np.isfinite(split_scores[i]).any():
            std[i] = np.nanstd(split_scores[i])
    for k in range(n_splits):
        table[f"split{k}_test_score"] = split_scores[:, k]
    table["mean_test_score"] = mean
    table["std_test_score"] = std
    table["ci_low_test_score"] = ci[:, 0]
    table["ci_high_test_score"] = ci[:, 1]
    # Complete trials rank first by score; pruned and failed ones after (scores at different epochs
    # are not comparable with finished ones).
    complete = table["state"] == "complete"
    order_key = np.where(complete, -np.nan_to_num(mean, nan=-np.inf), np.inf)
    ranks = np.empty(n, dtype=np.int32)
    ranks[np.argsort(order_key, kind="stable")] = np.arange(1, n + 1)
    table["rank_test_score"] = ranks
    return table


def _multi_objective_table(trials, space, n_splits: int, names: list, directions: list) -> dict:

    table = results_table(trials, space, n_splits)
    for key in ("mean_test_score", "std_test_score", "ci_low_test_score", "ci_high_test_score",
                "rank_test_score", *(f"split{k}_test_score" for k in range(n_splits))):
        table.pop(key)
    values = np.full((len(trials), len(names)), np.nan)
    for i, trial in enumerate(trials):
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.values is not None:
            values[i] = trial.values
        elif trial.state == optuna.trial.TrialState.PRUNED:
            curve = TrialRecord.of(trial).epoch_objective_values or {}
            if curve:
                values[i] = curve[max(curve, key=int)]
    complete = table["state"] == "complete"
    for k, (name, direction) in enumerate(zip(names, directions)):
        table[f"mean_test_{name}"] = values[:, k]
        better = -values[:, k] if direction == "maximize" else values[:, k]
        order_key = np.where(complete, np.nan_to_num(better, nan=np.inf), np.inf)
        ranks = np.empty(len(trials), dtype=np.int32)
        ranks[np.argsort(order_key, kind="stable")] = np.arange(1, len(trials) + 1)
        table[f"rank_test_{name}"] = ranks
    pareto = np.full(len(trials), -1)
    if complete.any():
        pareto[complete] = non_dominated_sort(values[complete], directions)
    table["pareto_rank"] = pareto
    return table
