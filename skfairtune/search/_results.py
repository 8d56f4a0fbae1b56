"""``cv_results_`` of a search, read from its Optuna trials, in scikit-learn's layout.

The columns a scikit-learn user reads keep their meaning (``mean_fit_time``,
``std_fit_time``, ``mean_score_time``, ``std_score_time``, ``split<k>_test_score``,
``mean_test_score``, ``std_test_score``: the spread over the splits, and
``rank_test_score``: ties share the smallest rank, as ``scipy.stats.rankdata``'s
``"min"`` method); what Optuna and the bootstrap add has its own columns
(``state``, ``n_epochs``, ``bootstrap_std_test_score``, ``ci_low_test_score``...).
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import optuna
from sklearn.exceptions import FitFailedWarning

from ..distributed._trial_record import TrialRecord
from ._pareto import non_dominated_sort

__all__ = ["results_table", "rank_min", "warn_about_fit_failures"]

_COMPLETE, _PRUNED, _FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                             optuna.trial.TrialState.FAIL)


def _trial_params(trial, space) -> dict:
    """The estimator parameters a trial trained with (a baseline keeps its preset name)."""
    return TrialRecord.of(trial).params or space.from_trial(trial.params) or {}


def _trial_score(trial) -> float:
    """The objective of a complete trial, the last value a pruned one reported, a failed one's ``error_score``."""
    if trial.state == _COMPLETE:
        return np.nan if not trial.values else float(trial.values[0])
    if trial.state == _PRUNED and trial.intermediate_values:
        return float(trial.intermediate_values[max(trial.intermediate_values)])
    return _error_score(trial)


def _error_score(trial) -> float:
    """The ``error_score`` a failed fit was given (NaN for any other failure: killed, interrupted, not run)."""
    score = TrialRecord.of(trial).error_score if trial.state == _FAIL else None
    return np.nan if score is None else float(score)


def rank_min(scores, states, *, maximize: bool = True) -> np.ndarray:
    """Ranks of ``cv_results_`` rows, 1 the best; ties share the smallest rank (``"min"``), as in scikit-learn.

    As scikit-learn ranks a finished fit, complete trials and failed ones with
    a numeric ``error_score`` rank by their score; pruned trials (their score is
    from an earlier epoch, so not comparable) come after them, by that score;
    rows without a score come last, tied.

    Examples
    --------
    >>> import numpy as np
    >>> states = np.array(["complete", "complete", "pruned", "complete", "fail"], dtype=object)
    >>> rank_min(np.array([0.8, 0.9, 0.95, 0.8, np.nan]), states).tolist()
    [2, 1, 4, 2, 5]
    """
    scores = np.asarray(scores, dtype=float)
    states = np.asarray(states, dtype=object)
    finite = np.isfinite(scores)
    tier = np.where(~finite, 2, np.where(states == "pruned", 1, 0))
    key = np.where(finite, -scores if maximize else scores, 0.0)
    order = np.lexsort((key, tier))
    new = np.r_[True, (tier[order][1:] != tier[order][:-1]) | (key[order][1:] != key[order][:-1])]
    ranks = np.empty(len(scores), dtype=np.int32)
    ranks[order] = np.maximum.accumulate(np.where(new, np.arange(1, len(scores) + 1), 0))
    return ranks


def _spread(values: np.ndarray) -> float:
    """scikit-learn's std over splits (``ddof=0``), over the splits that have a score."""
    values = values[np.isfinite(values)]
    return float(values.std()) if len(values) else np.nan


def _time_columns(table: dict, i: int, record: TrialRecord, n_splits: int) -> None:
    fit, score = (np.asarray(t, dtype=float) for t in (record.split_fit_times, record.split_score_times))
    if len(fit) == n_splits:
        table["mean_fit_time"][i], table["std_fit_time"][i] = fit.mean(), fit.std()
    else:  # a trial stored before per-split times (or one that failed): its seconds shared by the splits
        table["mean_fit_time"][i] = record.fit_time / n_splits
    if len(score) == n_splits:
        table["mean_score_time"][i], table["std_score_time"][i] = score.mean(), score.std()


def _common_table(trials, space, n_splits: int) -> dict:
    """The columns every layout shares: times, parameters, Optuna's state and the trial's record."""
    n = len(trials)
    table: dict = {name: np.full(n, np.nan) for name in
                   ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time")}
    table.update({"params": [], "state": np.empty(n, dtype=object), "n_epochs": np.zeros(n, dtype=int),
                  "trial_number": np.zeros(n, dtype=int), "baseline": np.empty(n, dtype=object),
                  "fail_reason": np.empty(n, dtype=object), "n_trainable_params": np.full(n, np.nan)})
    for i, trial in enumerate(trials):
        record = TrialRecord.of(trial)
        params = _trial_params(trial, space)
        table["params"].append(params)
        for key in params:
            table.setdefault(f"param_{key}", np.ma.masked_all(n, dtype=object))[i] = params[key]
        _time_columns(table, i, record, n_splits)
        table["state"][i] = trial.state.name.lower()
        table["n_epochs"][i] = record.n_epochs
        table["trial_number"][i] = trial.number
        table["baseline"][i] = record.baseline
        table["fail_reason"][i] = record.fail_reason
        table["n_trainable_params"][i] = np.nan if record.n_trainable_params is None else record.n_trainable_params
    return table


def results_table(trials, space, n_splits: int, *, names=None, directions=None) -> dict:
    """scikit-learn's ``cv_results_`` layout, plus Optuna's state, epochs and bootstrap intervals.

    ``mean_test_score`` is the trial's objective (pooled over folds when the
    search pools them; for a pruned trial the value it stopped with; for a
    failed fit the search's ``error_score``); ``std_test_score`` the standard
    deviation of the split scores, as in scikit-learn (0 with one split);
    ``bootstrap_std_test_score`` that of its paired bootstrap replicates, whose
    2.5/97.5 percentiles are ``ci_low_test_score`` / ``ci_high_test_score``.

    With several objective ``names`` the layout is scikit-learn's multi-metric
    one: ``split<k>_test_<name>``, ``mean_test_<name>``, ``std_test_<name>``
    and ``rank_test_<name>`` per objective, plus ``pareto_rank`` (0: on the
    front of the complete trials, -1: not complete).
    """
    if names is not None:
        return _multi_objective_table(trials, space, n_splits, list(names), list(directions))
    n = len(trials)
    table = _common_table(trials, space, n_splits)
    split_scores = np.full((n, n_splits), np.nan)
    mean, std, boot_std = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    ci = np.full((n, 2), np.nan)
    for i, trial in enumerate(trials):
        record = TrialRecord.of(trial)
        mean[i] = _trial_score(trial)
        if trial.state == _FAIL:
            split_scores[i] = mean[i]  # as scikit-learn: a failed fit scores error_score on every split
        elif record.epoch_split_scores:
            split_scores[i] = record.epoch_split_scores[-1]  # for a pruned trial, the scores it stopped with
        std[i] = _spread(split_scores[i])
        replicates = np.asarray(record.bootstrap_scores, dtype=float)
        replicates = replicates[np.isfinite(replicates)]
        if len(replicates) > 1:
            boot_std[i] = replicates.std(ddof=1)
            ci[i] = np.percentile(replicates, [2.5, 97.5])
    for k in range(n_splits):
        table[f"split{k}_test_score"] = split_scores[:, k]
    table["mean_test_score"] = mean
    table["std_test_score"] = std
    table["rank_test_score"] = rank_min(mean, table["state"])
    table["bootstrap_std_test_score"] = boot_std
    table["ci_low_test_score"] = ci[:, 0]
    table["ci_high_test_score"] = ci[:, 1]
    return table


def _objective_values(trial, n_objectives: int) -> np.ndarray:
    if trial.state == _COMPLETE and trial.values is not None:
        return np.asarray(trial.values, dtype=float)
    if trial.state == _PRUNED:
        curve = TrialRecord.of(trial).epoch_objective_values or {}
        if curve:
            return np.asarray(curve[max(curve, key=int)], dtype=float)
    return np.full(n_objectives, _error_score(trial))


def _multi_objective_table(trials, space, n_splits: int, names: list, directions: list) -> dict:
    table = _common_table(trials, space, n_splits)
    n = len(trials)
    values = np.full((n, len(names)), np.nan)
    splits = np.full((n, len(names), n_splits), np.nan)
    for i, trial in enumerate(trials):
        values[i] = _objective_values(trial, len(names))
        stored = TrialRecord.of(trial).split_objective_scores
        if trial.state == _FAIL:
            splits[i] = values[i][:, None]
        elif len(stored) == len(names) and all(len(s) == n_splits for s in stored):
            splits[i] = np.asarray(stored, dtype=float)
    for k, (name, direction) in enumerate(zip(names, directions)):
        for split in range(n_splits):
            table[f"split{split}_test_{name}"] = splits[:, k, split]
        table[f"mean_test_{name}"] = values[:, k]
        table[f"std_test_{name}"] = np.array([_spread(row) for row in splits[:, k]])
        table[f"rank_test_{name}"] = rank_min(values[:, k], table["state"], maximize=direction == "maximize")
    complete = table["state"] == "complete"
    pareto = np.full(n, -1)
    if complete.any():
        pareto[complete] = non_dominated_sort(values[complete], directions)
    table["pareto_rank"] = pareto
    return table


def warn_about_fit_failures(trials, error_score) -> None:
    """scikit-learn's report of failed fits: an error when every trial's fit failed, else a ``FitFailedWarning``.

    Only fits that failed count (the trials given ``error_score``), not trials
    killed with their worker or interrupted.
    """
    failed = [TrialRecord.of(t) for t in trials if t.state == _FAIL and TrialRecord.of(t).error_score is not None]
    if not failed:
        return
    summary = "\n".join(f"{count} trial(s) failed with:\n{reason}"
                        for reason, count in Counter(r.fail_reason for r in failed).most_common())
    if len(failed) == len(trials):
        raise ValueError(
            f"All the {len(trials)} trials' fits failed. It is very likely that your model is misconfigured. You "
            f"can try to debug the error by setting error_score='raise'.\n\nBelow are more details about the "
            f"failures:\n{summary}")
    warnings.warn(
        f"\n{len(failed)} trials' fits failed out of a total of {len(trials)}.\nThe score of these trials is set to "
        f"{error_score} in cv_results_ (the sampler is told they failed, so it does not learn from that "
        "score).\nIf these failures are not expected, you can try to debug them by setting error_score='raise'."
        f"\n\nBelow are more details about the failures:\n{summary}", FitFailedWarning, stacklevel=3)
