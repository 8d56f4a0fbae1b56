"""Choosing a trial that generalises: validation uncertainty and selection rules.

The trial with the best validation score is the maximum of many noisy
estimates, so its score is biased up and the choice is partly noise (the
winner's curse). This module holds the defences the search offers:

- a paired, stratified bootstrap of each trial's validation score: the same
  resamples for every trial, drawn within each label x group cell so every
  group keeps both classes and its size;
- selection rules over ``cv_results_``: ``"best"`` (the paper),
  ``"one_se"`` (the sparsest trial within one standard error of the best) and
  the ranking used by ``"reeval"`` (the top trials retrained on fresh splits
  and seeds, chosen by the mean of all their evaluations).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SELECTIONS",
    "stratified_bootstrap_indices",
    "select_trial",
    "top_trials",
]

SELECTIONS = ("best", "one_se", "reeval")


def stratified_bootstrap_indices(strata: np.ndarray, n_boot: int, random_state: int) -> np.ndarray:
    """Bootstrap resamples drawn within each stratum.

    Parameters
    ----------
    strata : ndarray of shape (n_samples,)
        Integer stratum of every sample (label x group code).
    n_boot : int
        Number of resamples.
    random_state : int
        Seed; the same seed gives the same resamples, which makes the bootstrap
        *paired* across trials scored on the same samples.

    Returns
    -------
    ndarray of shape (n_boot, n_samples)
        Positions into the evaluated samples; each stratum keeps its size.

    Examples
    --------
    >>> import numpy as np
    >>> from skfairtune._selection import stratified_bootstrap_indices
    >>> strata = np.array([0, 0, 0, 1, 1])
    >>> index = stratified_bootstrap_indices(strata, 4, random_state=0)
    >>> index.shape
    (4, 5)
    >>> bool((strata[index] == strata).all())  # every resample keeps each stratum's size
    True
    """
    strata = np.asarray(strata)
    rng = np.random.default_rng(random_state)
    index = np.empty((n_boot, len(strata)), dtype=np.int64)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        index[:, members] = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
    return index


def _complete_rows(results: dict) -> np.ndarray:
    scores = np.asarray(results["mean_test_score"], dtype=float)
    complete = np.asarray(results["state"]) == "complete"
    return np.flatnonzero(complete & np.isfinite(scores))


def top_trials(results: dict, k: int) -> list[int]:
    """Rows of the ``k`` complete trials with the best validation score, best first.

    Ties keep the earlier trial first, as ``"best"`` does.
    """
    rows = _complete_rows(results)
    scores = np.asarray(results["mean_test_score"], dtype=float)
    order = sorted(rows, key=lambda i: (-scores[i], i))
    return [int(i) for i in order[:k]]


def select_trial(results: dict, selection: str, *, reeval_scores: dict | None = None) -> int:
    """Row of ``cv_results_`` that ``selection`` picks.

    Parameters
    ----------
    results : dict
        The search's ``cv_results_`` (``mean_test_score``, ``std_test_score``,
        ``state`` and ``n_trainable_params`` are read).
    selection : {"best", "one_se", "reeval"}
        ``"best"``: the highest validation score (earliest on ties), as in
        the paper. ``"one_se"``: among complete trials whose score is at least
        the best score minus the best trial's standard error, the one with the
        fewest trainable parameters (then the higher score): the classical
        one-standard-error rule, with sparsity as the simplicity measure.
        ``"reeval"``: the highest mean of the re-evaluation scores given in
        ``reeval_scores``.
    reeval_scores : dict of int to list of float, default=None
        For ``"reeval"``: every evaluation of each re-evaluated row (the
        search's own score first).

    Returns
    -------
    int
        The chosen row.

    Examples
    --------
    >>> import numpy as np
    >>> from skfairtune._selection import select_trial
    >>> results = {"mean_test_score": np.array([0.80, 0.82, 0.79]),
    ...            "std_test_score": np.array([0.02, 0.03, 0.02]),
    ...            "state": np.array(["complete"] * 3, dtype=object),
    ...            "n_trainable_params": np.array([900, 1000, 100])}
    >>> select_trial(results, "best")
    1
    >>> select_trial(results, "one_se")  # 0.79 >= 0.82 - 0.03, and the sparsest
    2
    """
    rows = _complete_rows(results)
    if not len(rows):
        raise ValueError("no complete trial with a finite score to select from.")
    scores = np.asarray(results["mean_test_score"], dtype=float)
    best = top_trials(results, 1)[0]
    if selection == "best":
        return best
    if selection == "one_se":
        se = float(np.asarray(results["std_test_score"], dtype=float)[best])
        if not np.isfinite(se):
            se = 0.0
        params = np.asarray(results["n_trainable_params"], dtype=float)
        within = [i for i in rows if scores[i] >= scores[best] - se]
        return int(min(within, key=lambda i: (np.nan_to_num(params[i], nan=np.inf), -scores[i], i)))
    if selection == "reeval":
        if not reeval_scores:
            raise ValueError("selection='reeval' needs the re-evaluation scores of the top trials.")
        means = {row: float(np.mean(values)) for row, values in reeval_scores.items()}
        return int(max(means, key=lambda row: (means[row], scores[row], -row)))
    raise ValueError(f"`selection` must be one of {SELECTIONS}; got {selection!r}.")


def reevaluate_top(evaluate, cv_results: dict, splits_for, *, top_k: int, repeats: int, seed: int) -> dict:
    """Every evaluation of the ``top_k`` complete trials: their own score, then ``repeats`` retrainings.

    Each repeat draws a fresh partition (``splits_for(seed)``) and a fresh
    training seed, so the chosen trial no longer rides on the luck of one
    split or one initialisation.

    Returns
    -------
    dict
        ``cv_results_`` row -> list of scores, the search's own first.
    """
    rows = top_trials(cv_results, top_k)
    scores = {row: [float(cv_results["mean_test_score"][row])] for row in rows}
    for repeat in range(1, repeats + 1):
        splits = splits_for(seed + 7919 * repeat)
        for row in rows:
            params = dict(cv_results["params"][row])
            params["random_state"] = seed + repeat
            scores[row].append(evaluate(params, splits))
    return scores
