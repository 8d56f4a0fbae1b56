"""Choosing a trial that generalises: validation uncertainty and selection rules.

The trial with the best validation score is the maximum of many noisy
estimates, so its score is biased up and the choice is partly noise (the
winner's curse). This module holds the defences the search offers:

- a paired, stratified bootstrap of each trial's validation score: the same
  resamples for every trial, drawn within each label x group cell so every
  group keeps both classes and its size; and a cluster bootstrap that
  resamples whole patients (``compare_methods`` with ``groups``);
- selection rules over ``cv_results_``: ``"best"`` (the paper),
  ``"one_se"`` (the sparsest trial within one standard error of its paired
  difference to the best) and the ranking used by ``"reeval"`` (the top
  trials retrained on fresh splits and seeds, chosen by their fresh scores
  only: the search score is the very maximum the winner's curse inflates).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SELECTIONS",
    "stratified_bootstrap_indices",
    "cluster_bootstrap_indices",
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
    >>> from skfairtune.search._selection import stratified_bootstrap_indices
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


def cluster_bootstrap_indices(clusters: np.ndarray, n_boot: int, random_state: int, *,
                              strata: np.ndarray | None = None) -> list[np.ndarray]:
    """Bootstrap resamples of whole clusters (patients, lesions), not of single samples.

    Images of one patient are correlated: resampling them one by one treats
    them as independent and makes intervals too narrow. Here cluster ids are
    drawn with replacement and every drawn cluster brings all its samples.

    Parameters
    ----------
    clusters : array-like of shape (n_samples,)
        Cluster id of every sample.
    n_boot : int
        Number of resamples.
    random_state : int
        Seed; the same seed gives the same resamples (paired across methods
        scored on the same samples).
    strata : array-like of shape (n_samples,), default=None
        Stratum of every sample (label x group code). When every cluster lies
        in one stratum, clusters are drawn within each stratum (each keeps its
        number of clusters, so no group loses a class); otherwise, or when
        None, clusters are drawn from all of them.

    Returns
    -------
    list of ndarray
        ``n_boot`` arrays of positions into the samples; their lengths vary
        with the sizes of the drawn clusters.

    Examples
    --------
    >>> import numpy as np
    >>> from skfairtune.search._selection import cluster_bootstrap_indices
    >>> clusters = np.array(["p1", "p1", "p2", "p3", "p3", "p3"])
    >>> index = cluster_bootstrap_indices(clusters, 3, random_state=0)
    >>> len(index)
    3
    >>> size = {c: int((clusters == c).sum()) for c in set(clusters)}
    >>> all((clusters[r] == c).sum() % size[c] == 0 for r in index for c in size)  # whole clusters
    True
    """
    _, codes = np.unique(np.asarray(clusters), return_inverse=True)
    codes = codes.reshape(-1)
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pools = [np.arange(len(sizes))]
    if strata is not None:
        strata = np.asarray(strata).reshape(-1)
        first = strata[order[starts]]
        if (strata == first[codes]).all():  # every cluster pure: draw within strata
            pools = [np.flatnonzero(first == stratum) for stratum in np.unique(first)]
    rng = np.random.default_rng(random_state)
    draws = np.concatenate([pool[rng.integers(0, len(pool), size=(n_boot, len(pool)))] for pool in pools], axis=1)
    resamples = []
    for drawn in draws:
        lengths = sizes[drawn]
        # The members of each drawn cluster, contiguous in `order`: start + 0..size-1.
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        resamples.append(order[np.repeat(starts[drawn], lengths) + within])
    return resamples


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


def select_trial(results: dict, selection: str, *, reeval_scores: dict | None = None,
                 bootstrap_scores=None) -> int:
    """Row of ``cv_results_`` that ``selection`` picks.

    Parameters
    ----------
    results : dict
        The search's ``cv_results_`` (``mean_test_score``, ``state`` and
        ``n_trainable_params`` are read).
    selection : {"best", "one_se", "reeval"}
        ``"best"``: the highest validation score (earliest on ties), as in
        the paper. ``"one_se"``: among complete trials within one standard
        error of the best, ``score_best - score_i <= sd(b_best - b_i)`` over
        the paired bootstrap replicates ``b`` (the standard error of the
        *difference*: trials scored on the same resamples share most of their
        noise, which the marginal standard error ignores), the one with the
        fewest trainable parameters (then the higher score, then the earlier
        row): the classical one-standard-error rule, with sparsity as the
        simplicity measure. ``"reeval"``: the highest mean of the *fresh*
        evaluations in ``reeval_scores`` (ties: the higher search score, then
        the earlier row).
    reeval_scores : dict of int to list of float, default=None
        For ``"reeval"``: every evaluation of each re-evaluated row, the
        search's own score first (it is not used to rank: it is the
        selection-biased maximum the re-evaluation corrects), then the fresh
        ones.
    bootstrap_scores : sequence of sequence of float, default=None
        For ``"one_se"``: per row of ``results``, the trial's paired bootstrap
        replicates (``TrialRecord.bootstrap_scores``; empty for a trial
        without). Every complete trial needs them, all of one length.

    Returns
    -------
    int
        The chosen row.

    Raises
    ------
    ValueError
        When the rule cannot apply (``"one_se"`` without replicates,
        ``"reeval"`` without re-evaluations), rather than quietly applying
        another rule.

    Examples
    --------
    >>> import numpy as np
    >>> from skfairtune.search._selection import select_trial
    >>> results = {"mean_test_score": np.array([0.80, 0.82, 0.79]),
    ...            "state": np.array(["complete"] * 3, dtype=object),
    ...            "n_trainable_params": np.array([900, 1000, 100])}
    >>> select_trial(results, "best")
    1
    >>> replicates = [[0.80, 0.78, 0.82], [0.82, 0.80, 0.84], [0.74, 0.80, 0.81]]
    >>> # row 2: 0.82 - 0.79 = 0.03 <= sd(0.08, 0.00, 0.03) = 0.04; row 0 always trails by 0.02 (sd 0)
    >>> select_trial(results, "one_se", bootstrap_scores=replicates)
    2
    >>> select_trial(results, "reeval", reeval_scores={1: [0.82, 0.75, 0.77], 0: [0.80, 0.79, 0.78]})
    0
    """
    rows = _complete_rows(results)
    if not len(rows):
        raise ValueError("no complete trial with a finite score to select from.")
    scores = np.asarray(results["mean_test_score"], dtype=float)
    best = top_trials(results, 1)[0]
    if selection == "best":
        return best
    if selection == "one_se":
        se = paired_difference_se(bootstrap_scores, rows, best)
        params = np.asarray(results["n_trainable_params"], dtype=float)
        within = [i for i in rows if scores[best] - scores[i] <= se[i]]
        return int(min(within, key=lambda i: (np.nan_to_num(params[i], nan=np.inf), -scores[i], i)))
    if selection == "reeval":
        if not reeval_scores:
            raise ValueError("selection='reeval' needs the re-evaluation scores of the top trials.")
        fresh = {row: fresh_mean(values) for row, values in reeval_scores.items()}
        return int(max(fresh, key=lambda row: (np.nan_to_num(fresh[row], nan=-np.inf), scores[row], -row)))
    raise ValueError(f"`selection` must be one of {SELECTIONS}; got {selection!r}.")


def fresh_mean(values) -> float:
    """Mean of a re-evaluated row's fresh scores (its search score, first, left out); NaN if none finished."""
    fresh = np.asarray(values[1:], dtype=float)
    fresh = fresh[np.isfinite(fresh)]
    return float(fresh.mean()) if len(fresh) else float("nan")


def paired_difference_se(bootstrap_scores, rows, best: int) -> dict[int, float]:
    """Row -> standard deviation of the paired bootstrap difference ``b_best - b_row``.

    Raises a ``ValueError`` naming the fix when the replicates are missing or
    not paired (of different lengths, e.g. a stored study resumed with another
    ``n_bootstrap``).
    """
    fix = "set n_bootstrap >= 2 or choose selection='best'."
    if bootstrap_scores is None:
        raise ValueError(f"selection='one_se' needs the paired bootstrap replicates; {fix}")
    replicates = {int(i): np.asarray(bootstrap_scores[i], dtype=float).reshape(-1) for i in rows}
    lengths = {len(r) for r in replicates.values()}
    if min(lengths) < 2:
        raise ValueError(f"selection='one_se' needs the paired bootstrap replicates; a complete trial has "
                         f"{min(lengths)}: {fix}")
    if len(lengths) > 1:
        raise ValueError(f"selection='one_se' needs paired bootstrap replicates, but the complete trials hold "
                         f"{sorted(lengths)} replicates (a stored study resumed with another n_bootstrap?); "
                         "resume with the n_bootstrap the study was run with, or choose selection='best'.")
    se = {}
    for i, values in replicates.items():
        diff = replicates[best] - values
        diff = diff[np.isfinite(diff)]
        # A difference no finite replicate measures admits only ties.
        se[i] = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    return se


def reeval_split_seed(seed: int, repeat: int) -> int:
    """Seed of the splits of re-evaluation ``repeat`` (1, 2...): far from the search's own ``seed``."""
    return seed + 7919 * repeat


def reevaluate_top(evaluate, cv_results: dict, splits_for, *, top_k: int, repeats: int, seed: int) -> dict:
    """Every evaluation of the ``top_k`` complete trials: their own score, then ``repeats`` fresh retrainings.

    Each repeat draws a fresh partition (``splits_for(seed)``) and a fresh
    training seed, so the chosen trial no longer rides on the luck of one
    split or one initialisation.

    Returns
    -------
    dict
        ``cv_results_`` row -> list of scores: the search's own first, then the
        ``repeats`` fresh ones (only those rank the rows, see :func:`select_trial`).
    """
    rows = top_trials(cv_results, top_k)
    scores = {row: [float(cv_results["mean_test_score"][row])] for row in rows}
    for repeat in range(1, repeats + 1):
        splits = splits_for(reeval_split_seed(seed, repeat))
        for row in rows:
            params = dict(cv_results["params"][row])
            params["random_state"] = seed + repeat
            scores[row].append(evaluate(params, splits))
    return scores
