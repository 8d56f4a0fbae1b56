"""Label x group strata: what splits, subsets and bootstrap resamples stratify on, in one place."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.utils import check_random_state

__all__ = ["label_group_strata", "proportional_subset", "strata_labels", "stratified_subsample"]


def label_group_strata(y_codes: np.ndarray, g_codes: np.ndarray) -> np.ndarray:
    """One integer per label x group cell: what splits and bootstrap resamples stratify on."""
    return y_codes * (int(g_codes.max()) + 1) + g_codes


def strata_labels(y, columns) -> np.ndarray:
    """One string per sample, ``"label|group|..."``, from labels and any number of group columns.

    Examples
    --------
    >>> strata_labels([0, 1], [["a", "b"], ["x", "x"]]).tolist()
    ['0|a|x', '1|b|x']
    """
    strata = np.asarray(y).astype(str).astype(object)
    for column in columns:
        strata = strata + "|" + np.asarray(column).astype(str)
    return strata.astype(str)


def proportional_subset(strata: np.ndarray, n_samples: int, random_state) -> np.ndarray:
    """Sorted indices of a random subset with the strata's proportions.

    Each stratum gets its proportional share, rounded by largest remainder, so
    that, unlike ``train_test_split(stratify=...)``, strata with a single
    member are allowed.
    """
    rng = check_random_state(random_state)
    _, codes, counts = np.unique(strata, return_inverse=True, return_counts=True)
    quota = n_samples * counts / counts.sum()
    take = np.floor(quota).astype(int)
    # Ties in the remainders are broken at random, not by stratum order.
    tie_break = rng.permutation(len(counts))
    order = np.lexsort((tie_break, -(quota - take)))
    take[order[: n_samples - take.sum()]] += 1
    chosen = [
        rng.choice(np.flatnonzero(codes == k), size=k_take, replace=False)
        for k, k_take in enumerate(take)
        if k_take
    ]
    return np.sort(np.concatenate(chosen))


def stratified_subsample(fraction, *, y_codes, g_codes, random_state=None) -> np.ndarray:
    """Indices of a label- and group-stratified fraction of the data (sorted)."""
    if not (isinstance(fraction, numbers.Real) and 0 < fraction <= 1):
        raise ValueError(f"`subsample` must be a float in (0, 1]; got {fraction!r}.")
    if fraction == 1:
        return np.arange(len(y_codes))
    splitter = StratifiedShuffleSplit(n_splits=1, train_size=fraction, random_state=random_state)
    strata = label_group_strata(y_codes, g_codes)
    try:
        subset, _ = next(splitter.split(np.zeros((len(y_codes), 1)), strata))
    except ValueError as exc:
        raise ValueError(
            f"`subsample={fraction}` is too small to keep every label x group cell ({exc}); "
            "use a larger fraction."
        ) from exc
    return np.sort(subset)
