"""Per-group ROC AUC in one vectorised, rank-based pass.

The Mann-Whitney U statistic with average ranks for ties: the samples are
sorted once by (group, score), so the cost is one sort of ``n`` samples
whatever the number of groups. Shared by :mod:`skfairtune.metrics` and
:mod:`skfairtune.reports`, which must agree on every group's AUC.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rank_group_auc"]


def rank_group_auc(
    y: np.ndarray, score: np.ndarray, codes: np.ndarray, n_groups: int
) -> np.ndarray:
    """Return the ROC AUC of every group, in one sorted pass.

    AUC = (R+ - n+ (n+ + 1) / 2) / (n+ n-), where R+ is the sum of the
    within-group ranks of the positives and tied scores share their average
    rank. Groups with a single class get NaN.
    """
    n = len(score)
    # Sort by score, then stably by group: every group becomes one contiguous
    # block sorted by score. A stable sort of small integers is a radix sort,
    # faster than np.lexsort on (score, codes).
    order = np.argsort(score)
    small_codes = codes.astype(np.min_scalar_type(max(n_groups - 1, 0)), copy=False)
    order = order[np.argsort(small_codes[order], kind="stable")]
    s = score[order]
    c = codes[order]
    positive = y[order]

    # A run is a maximal block of equal (group, score); it shares one rank.
    new_run = np.empty(n, dtype=bool)
    new_run[0] = True
    np.not_equal(s[1:], s[:-1], out=new_run[1:])
    new_run[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], n)
    # Average 1-based position of a run in the global order. These are
    # half-integers, so the sums below are exact in float64 while the rank sum
    # (at most n**2 / 2) stays under 2**53, i.e. for up to ~1e8 samples.
    run_rank = (starts + ends + 1) * 0.5
    pos_in_run = np.add.reduceat(positive.astype(np.int64), starts)
    rank_sum = np.bincount(c[starts], weights=pos_in_run * run_rank, minlength=n_groups)

    n_total = np.bincount(codes, minlength=n_groups)
    n_pos = np.bincount(codes[y], minlength=n_groups)
    n_neg = n_total - n_pos
    group_start = np.concatenate([[0], np.cumsum(n_total)[:-1]])
    u = rank_sum - n_pos * group_start - n_pos * (n_pos + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = u / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc
