"""Fused multi-trial training against one trial at a time: trials/hour, same trials, same run.

The same trials (random 36-bit ln-attn-mlp masks, log-uniform learning rates,
one seed for all as ``FairTuneSearchCV`` clones one estimator) train for the
same epochs, with a validation prediction after every epoch (what a search
scores and prunes on), three ways:

- ``plain``: a plain PyTorch loop per trial on a timm ViT (``requires_grad``
  mask, frozen-prefix cache, ``torch.optim.AdamW``, the library's warm-up +
  cosine schedule and batch order): the floor the library's one-trial path
  runs at (docs/benchmarks.md: per-epoch time 1.00-1.11x a minimal loop);
- ``engine K=1``: ``_fused.FusedTrainer (benchmarks/_fused.py)`` with one member per trial;
- ``fused``: ``choose_group_size`` probes K (its time is counted), then the
  trials train in groups of K.

The three run interleaved group by group, and trials/hour is given by this
process's CPU time (what one dedicated core would do; the machine is shared)
and by wall time. The ratio is fused trials/hour over the faster
one-at-a-time path. The final
validation probabilities of fused and plain are compared for every trial
(they must agree to float rounding). Weights are random (timing does not
depend on them); the images are synthetic ``make_biased_images``.

Usage::

    python benchmarks/bench_fused.py            # 12 blocks, width 64, 32 px
    python benchmarks/bench_fused.py --smoke    # seconds
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from _common import MODEL, BenchConfig, lr_factor, normalize_images, trainable  # noqa: E402


def make_trials(n_trials: int, depth: int, lr_range, seed: int = 0):
    rng = np.random.default_rng(seed)
    bits = ["".join(rng.choice(["0", "1"], size=3 * depth)) for _ in range(n_trials)]
    low, high = np.log(lr_range[0]), np.log(lr_range[1])
    lrs = [float(np.exp(rng.uniform(low, high))) for _ in range(n_trials)]
    return bits, lrs


def plain_trial(template, bits, lr, seed, X, y, X_val, cfg, epochs):
    """One trial alone, as a competent PyTorch loop with the frozen-prefix cache."""
    import torch

    from skfairtune.backbone import ViTSuffix, forward_prefix
    from _fused import _prefix_length

    model = copy.deepcopy(template)
    names = {n for n, _ in model.named_parameters() if trainable(n, bits)}
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    start = _prefix_length(frozenset(names), len(model.blocks))
    with torch.no_grad():
        data = forward_prefix(model, X, start) if start else X
        val = forward_prefix(model, X_val, start) if start else X_val
    suffix = ViTSuffix(model, start)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                            weight_decay=cfg.weight_decay)
    total = math.ceil(len(X) / cfg.batch_size) * cfg.max_epochs
    warmup = round(cfg.warmup_fraction * total)
    step = 0
    for epoch in range(epochs):
        torch.manual_seed(seed * 100_003 + epoch + 1)
        order = torch.randperm(len(X))
        for first in range(0, len(X), cfg.batch_size):
            index = order[first:first + cfg.batch_size]
            for group in opt.param_groups:
                group["lr"] = lr * lr_factor(step, total, warmup)
            loss = torch.nn.functional.cross_entropy(suffix(data[index]), y[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        with torch.no_grad():
            proba = torch.cat([torch.softmax(suffix(val[i:i + 2 * cfg.batch_size]), -1)
                               for i in range(0, len(val), 2 * cfg.batch_size)]).numpy()
    return proba


def engine_trials(template, groups, X, y, X_val, cfg, epochs, seed):
    """Train ``groups`` (lists of (bits, lr)) one group at a time; final val probabilities in order."""
    from _fused import FusedTrainer

    probas = []
    for group in groups:
        trainer = FusedTrainer(template, X, y, max_epochs=cfg.max_epochs, batch_size=cfg.batch_size,
                               weight_decay=cfg.weight_decay, warmup_fraction=cfg.warmup_fraction)
        ids = [trainer.add([n for n, _ in template.named_parameters() if trainable(n, bits)], lr, seed=seed)
               for bits, lr in group]
        for _ in range(epochs):
            trainer.step(1)
            last = trainer.predict_proba(X_val)
        probas.extend(last[i] for i in ids)
    return probas


def run(cfg: BenchConfig, *, candidates, n_val: int, log=print) -> dict:
    import timm
    import torch

    from _fused import choose_group_size
    from skfairtune.datasets import make_biased_images

    torch.set_num_threads(cfg.resolved_threads())
    epochs = cfg.max_epochs
    torch.manual_seed(0)
    template = timm.create_model(MODEL, pretrained=False, num_classes=2, **cfg.model_kwargs)
    data = make_biased_images(cfg.n_train + n_val, image_size=cfg.image_size, random_state=0)
    X_all = normalize_images(torch.from_numpy(np.asarray(data.images)).permute(0, 3, 1, 2))
    y_all = torch.as_tensor(np.asarray(data.target), dtype=torch.long)
    X, y, X_val = X_all[:cfg.n_train], y_all[:cfg.n_train], X_all[cfg.n_train:]
    bits, lrs = make_trials(cfg.n_trials, cfg.depth, cfg.lr_range)
    seed = 0
    log(f"model: {MODEL} {cfg.model_kwargs}; {cfg.n_train} train / {n_val} val images; "
        f"{cfg.n_trials} trials x {epochs} epochs, batch {cfg.batch_size}; threads {torch.get_num_threads()}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible")

    clocks = {"plain": [0.0, 0.0], "engine_k1": [0.0, 0.0], "fused": [0.0, 0.0]}  # [wall, cpu] seconds

    def timed(name, fn):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        clocks[name][0] += time.perf_counter() - wall
        clocks[name][1] += time.process_time() - cpu
        return out

    trials = list(zip(bits, lrs))
    names = [[n for n, _ in template.named_parameters() if trainable(n, b)] for b in bits]
    k, timings = timed("fused", lambda: choose_group_size(template, X, y, names, lrs, candidates=candidates,
                                                          n_batches=2, batch_size=cfg.batch_size))
    log("probe (s per trial-batch): " + ", ".join(f"K={c}: {s * 1000:.1f} ms" for c, s in timings.items())
        + f" -> K={k} ({clocks['fused'][0]:.1f} s, counted in fused)")
    # Interleaved group by group, so that load from other processes drifts over all three alike.
    plain, fused = [], []
    for first in range(0, len(trials), k):
        group = trials[first:first + k]
        plain += timed("plain", lambda: [plain_trial(template, b, lr, seed, X, y, X_val, cfg, epochs)
                                         for b, lr in group])
        timed("engine_k1", lambda: engine_trials(template, [[t] for t in group], X, y, X_val, cfg, epochs, seed))
        fused += timed("fused", lambda: engine_trials(template, [group], X, y, X_val, cfg, epochs, seed))
    for name, (wall, cpu) in clocks.items():
        log(f"{name}: {wall:.1f} s wall, {cpu:.1f} s CPU")

    forced = {}
    for c in candidates:
        if c in (1, k):
            continue
        cpu = time.process_time()
        engine_trials(template, [trials[i:i + c] for i in range(0, len(trials), c)], X, y, X_val, cfg,
                      epochs, seed)
        forced[c] = time.process_time() - cpu
        log(f"fused, K={c} forced (no probe): {forced[c]:.1f} s CPU")

    max_diff = max(float(np.abs(a - b).max()) for a, b in zip(plain, fused))
    per_hour = {name: 3600 * cfg.n_trials / cpu for name, (_, cpu) in clocks.items()}
    per_hour_wall = {name: 3600 * cfg.n_trials / wall for name, (wall, _) in clocks.items()}
    baseline = max(per_hour["plain"], per_hour["engine_k1"])
    ratio = per_hour["fused"] / baseline
    ratio_wall = per_hour_wall["fused"] / max(per_hour_wall["plain"], per_hour_wall["engine_k1"])
    log(f"trials/hour (CPU time): plain {per_hour['plain']:.0f}, engine K=1 {per_hour['engine_k1']:.0f}, "
        f"fused (K={k}) {per_hour['fused']:.0f}")
    for c, t in forced.items():
        log(f"trials/hour fused K={c} forced: {3600 * cfg.n_trials / t:.0f} "
            f"({3600 * cfg.n_trials / t / baseline:.2f}x)")
    log(f"RATIO fused / best one-at-a-time: {ratio:.2f}x by CPU time, {ratio_wall:.2f}x by wall time; "
        f"max |val proba fused - plain| = {max_diff:.2e}")
    return {"k": k, "timings": timings, "per_hour": per_hour, "per_hour_wall": per_hour_wall, "ratio": ratio,
            "ratio_wall": ratio_wall, "max_diff": max_diff, "forced": forced}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny model and data: seconds")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--n-val", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-k", type=int, default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        cfg = BenchConfig.smoke_config(depth=3, n_train=24, n_trials=4, max_epochs=1, batch_size=8)
        n_val, max_k = 16, 2
    else:
        cfg = BenchConfig(n_train=384, n_trials=8, max_epochs=3)
        n_val, max_k = 128, 8
    for key, value in (("n_train", args.n_train), ("n_trials", args.trials), ("max_epochs", args.epochs)):
        if value is not None:
            setattr(cfg, key, value)
    cfg.threads = args.threads
    max_k = args.max_k or max_k
    candidates = tuple(c for c in (1, 2, 4, 8) if c <= max_k)
    return run(cfg, candidates=candidates, n_val=args.n_val or n_val)


if __name__ == "__main__":
    main()
