"""Local worker processes: the same trial budget with ``n_jobs=2`` against ``n_jobs=1``.

Both runs search the same synthetic task with the same seed and no pruning, so
they train the same trials (draws depend on the trial's slot, not on the
worker): the ratio is pure scheduling. On a 2-core machine expect about 1x:
one process already uses both cores through torch's threads, and each worker
process pays its start-up (importing torch and timm) once.

Usage::

    python benchmarks/bench_workers.py            # 8 trials x 3 epochs, 400 images
    python benchmarks/bench_workers.py --smoke    # seconds: checks that it runs
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def run(n_jobs: int, *, n_trials: int, epochs: int, n_samples: int, width: int, depth: int,
        threads: int | None = None) -> tuple[float, dict]:
    import torch

    from skfairtune import FairTuneClassifier, FairTuneSearchCV
    from skfairtune.distributed._run import counted_trials
    from skfairtune.datasets import make_biased_images

    data = make_biased_images(n_samples, image_size=32, random_state=0)
    clf = FairTuneClassifier("vit_tiny_patch16_224", pretrained=False, max_epochs=epochs, batch_size=64,
                             model_kwargs=dict(img_size=32, patch_size=4, embed_dim=width, depth=depth,
                                               num_heads=2))
    search = FairTuneSearchCV(clf, n_trials=n_trials, baselines=None, pruner="none", refit=False,
                              n_jobs=n_jobs, random_state=0)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        started = time.perf_counter()
        search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)
    trials = counted_trials(search.study_)
    return seconds, {t.params["lr"]: t.value for t in trials}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny budget, to check that it runs")
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-samples", type=int, default=400)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each setting (median reported)")
    parser.add_argument("--one-thread", action="store_true",
                        help="also time n_jobs=1 with a single torch thread (is it threads or processes?)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n_trials, args.epochs, args.n_samples, args.width, args.depth, args.repeat = 2, 1, 120, 16, 1, 1
    budget = dict(n_trials=args.n_trials, epochs=args.epochs, n_samples=args.n_samples,
                  width=args.width, depth=args.depth)
    import skfairtune.search  # noqa: F401 - this process's imports are not part of either time
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    import torch

    print(f"{platform.processor() or platform.machine()}, {cores} cores{load}, torch threads "
          f"{torch.get_num_threads()} (n_jobs=1) / {max(1, cores // 2)} per worker (n_jobs=2); budget {budget}")
    # Alternate the settings (1, 2, 2, 1, ...) so that a change in machine load hits them alike.
    # "1/1t": one process with one torch thread, to tell scheduling from thread contention.
    settings = ["1", "2", "1/1t"] if args.one_thread else ["1", "2"]
    order = (settings + settings[::-1]) * (args.repeat // 2) + settings * (args.repeat % 2)
    times: dict[str, list[float]] = {name: [] for name in settings}
    trials: dict[str, dict] = {}
    for name in order:
        n_jobs, threads = (1, 1) if name == "1/1t" else (int(name), None)
        seconds, trials[name] = run(n_jobs, threads=threads, **budget)
        times[name].append(seconds)
        print(f"n_jobs={n_jobs}{' (1 torch thread)' if threads else ''}: {seconds:7.1f} s", flush=True)
    one, two = statistics.median(times["1"]), statistics.median(times["2"])
    same = sorted(trials["1"]) == sorted(trials["2"])
    print(f"2 local workers vs 1: {one / two:.2f}x the speed ({one:.1f} s vs {two:.1f} s, median of "
          f"{args.repeat}, for {args.n_trials} trials x {args.epochs} epochs; same trials: {same})")
    if args.one_thread:
        alone = statistics.median(times["1/1t"])
        print(f"1 process with 1 torch thread: {alone:.1f} s ({one / alone:.2f}x the speed of n_jobs=1)")


if __name__ == "__main__":
    main()
