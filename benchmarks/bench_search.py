"""How fast is a FairTune search? Side by side with the usual ways, and against its floor.

Usage::

    python benchmarks/bench_search.py              # HAM10000 at 32 px, 12-block ViT, 3 seeds, ~65 min
    python benchmarks/bench_search.py --smoke      # synthetic images, < 60 s (the tests run this)
    python benchmarks/bench_search.py --seeds 1 --only search

Five contestants run the same search (same data, split, checkpoint, recipe,
trial budget, seeds, pruner, baselines enqueued first) in one invocation, each
in its own process so its peak memory is its own:

1. ``reference``: structured like the public FairTune code (``_reference_style.py``);
2. ``hand_written``: a competent user's Optuna + skorch script (``_hand_written.py``);
3. ``hand_written_jobs2``: the same script with ``study.optimize(n_jobs=2)`` and
   one torch thread per trial thread, as a competent user parallelises it;
4. ``skfairtune``: ``FairTuneSearchCV`` (``precision="auto"``: bf16 autocast from width 64 on a CPU
   with native bf16);
5. ``skfairtune_jobs2``: ``FairTuneSearchCV(n_jobs=2)``, trials in two
   single-threaded worker processes.

A sixth, ``hand_written_bf16``, runs when ``--contestants`` names it: the
hand-written script with its forward under ``torch.autocast("cpu", torch.bfloat16)``,
as a user who knows bf16 would write it, so that the library's edge over a
float32 script can be split into what bf16 itself gives and the rest.

The ratios are printed at equal resources first (``FairTuneSearchCV(n_jobs=2)``
against the hand-written script with ``n_jobs=2``: two trials at a time, one
thread each, on both), then one process each (``FairTuneSearchCV`` against the
hand-written script with its default threads), each with the per-seed best
validation objectives beside it. ``--smoke`` runs the three single-process
contestants unless ``--contestants`` names others (process start-up dominates a
smoke run of ``skfairtune_jobs2``).

Each contestant's chosen (mask, lr) is then refit on train + validation with the
same code (``FairTuneClassifier``) and scored on the held-out test split, so the
test AUCs compare the choices, not the training code; refit time is printed but
is not part of the speed-ups, which compare the searches.

Then the floor: per-epoch time of ``FairTuneClassifier`` against a minimal
PyTorch loop that trains only the trainable part from precomputed frozen
activations, for masks with 0, 6, 10 and 12 frozen leading blocks and full
fine-tuning, with and without the frozen-prefix cache. And scaling: time per
trial at 1/4, 1/2 and all of the samples, with the cross-trial activation cache
under a bound that the full size must evict to respect.

Full mode needs ``../shared/data/ham10000`` (and ``utkface64`` to pre-train the
backbone); the pre-trained checkpoint is cached in ``benchmarks/.cache/``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    BASELINE_NAMES,
    CACHE_DIR,
    MODEL,
    SHARED_DATA,
    BenchConfig,
    baseline_masks,
    Timer,
    Workload,
    emit,
    finish_report,
    group_aucs,
    ham_available,
    ham_workload,
    paired_t_interval,
    peak_rss_mb,
    pretrain_backbone,
    set_threads,
    synthetic_workload,
)

CONTESTANTS = {"reference": "reference-style", "hand_written": "hand-written",
               "hand_written_jobs2": "hand-written n_jobs=2", "skfairtune": "FairTuneSearchCV",
               "skfairtune_jobs2": "FairTune n_jobs=2", "hand_written_bf16": "hand-written bf16"}
#: (ours, theirs, heading): equal resources first, then one process each.
COMPARISONS = (
    ("skfairtune_jobs2", "hand_written_jobs2", "equal resources (both n_jobs=2, one torch thread per trial)"),
    ("skfairtune", "hand_written", "one process each"),
    ("skfairtune", "hand_written_bf16", "one process each, against the script with bf16 autocast"),
    ("skfairtune_jobs2", "hand_written", "n_jobs=2 against one process (unequal resources)"),
    ("skfairtune_jobs2", "reference", "n_jobs=2 against reference-style in one process (unequal resources)"),
    ("skfairtune", "reference", "one process each"),
)
SECTIONS = ("search", "floor", "scaling")


def floor_masks(depth: int) -> list[tuple[str, str]]:
    """(label, bits): 0, 6, 10, 12 frozen leading blocks, then full fine-tuning."""
    half, tenth = depth // 2, depth - 2
    return [
        ("0 frozen (attention)", "010" * depth),
        (f"{half} frozen + rest full", "000" * half + "111" * (depth - half)),
        (f"{tenth} frozen + rest full", "000" * tenth + "111" * (depth - tenth)),
        (f"{depth} frozen (linear)", "000" * depth),
        ("full fine-tuning", "111" * depth),
    ]


# --------------------------------------------------------------------------- contestants
def make_classifier(cfg: BenchConfig, checkpoint: str, seed: int, **overrides):
    from skfairtune import FairTuneClassifier

    params = dict(model_kwargs=cfg.model_kwargs, checkpoint_path=checkpoint, max_epochs=cfg.max_epochs,
                  batch_size=cfg.batch_size, weight_decay=cfg.weight_decay,
                  warmup_fraction=cfg.warmup_fraction, class_weight="balanced", device="cpu",
                  random_state=seed)
    params.update(overrides)
    return FairTuneClassifier(MODEL, **params)


def run_skfairtune(cfg: BenchConfig, work: Workload, checkpoint: str, seed: int, n_jobs: int = 1) -> dict:
    from skfairtune import FairTuneSearchCV

    import optuna

    # Identical work for every contestant: the same enqueued bit masks (not the presets,
    # whose ERM also trains the embeddings), Optuna's own successive-halving settings, and
    # no bootstrap (the others compute none).
    search = FairTuneSearchCV(
        make_classifier(cfg, checkpoint, seed), n_trials=cfg.n_trials, lr_range=cfg.lr_range,
        cv=work.cv(), baselines=tuple(baseline_masks(cfg.depth).values()), baseline_lrs=None,
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource="auto", reduction_factor=4),
        n_bootstrap=0, random_state=seed, refit=False, n_jobs=n_jobs,
    )
    idx = work.search
    started = time.perf_counter()
    search.fit(work.paths[idx], work.y[idx], sensitive_features=work.groups[idx])
    elapsed = time.perf_counter() - started
    states = list(search.cv_results_["state"])
    caches = [t.user_attrs["activation_cache"] for t in search.study_.trials
              if "activation_cache" in t.user_attrs]
    return {
        "search_s": elapsed,
        "epochs": int(search.cv_results_["n_epochs"].sum()),
        "n_pruned": states.count("pruned"),
        "n_complete": states.count("complete"),
        "best_mask": search.best_params_["mask"],
        "best_lr": float(search.best_params_["lr"]),
        "best_val_own": float(search.best_score_),
        "best_val_min_group_auc": float(search.best_score_),
        "own_objective": "whole-set min-group AUC",
        "cache": caches[-1] if caches else None,
        "sampled": [[p["mask"], float(p["lr"])] for p in search.cv_results_["params"]],
    }


def refit_and_test(cfg: BenchConfig, work: Workload, checkpoint: str, seed: int, mask: str, lr: float) -> dict:
    """Same code for every contestant: fit the chosen (mask, lr) on train + validation, score test."""
    clf = make_classifier(cfg, checkpoint, seed, mask=mask, lr=lr)
    with Timer() as timer:
        clf.fit(work.paths[work.search], work.y[work.search])
    score = clf.predict_proba(work.paths[work.test])[:, 1]
    aucs = group_aucs(work.y[work.test], score, work.groups[work.test])
    return {"refit_s": timer.seconds, "test_overall_auc": aucs["overall"],
            "test_min_group_auc": min(v for k, v in aucs.items() if k != "overall")}


def _cpu_seconds() -> float:
    # Children count too: FairTuneSearchCV(n_jobs=2) trains in worker processes.
    return sum(usage.ru_utime + usage.ru_stime
               for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


def contestant_worker(name: str, cfg: BenchConfig, work: Workload, checkpoint: str, seed: int) -> dict:
    # CPU seconds of the whole search (all threads): far less sensitive than wall time to
    # other processes competing for a shared machine's cores.
    cpu_start = _cpu_seconds()
    if name == "reference":
        import _reference_style as module

        result = module.run(cfg, work, checkpoint, seed)
    elif name in ("hand_written", "hand_written_jobs2", "hand_written_bf16"):
        import torch

        import _hand_written as module

        threads = torch.get_num_threads()
        try:
            result = module.run(cfg, work, checkpoint, seed, n_jobs=2 if name == "hand_written_jobs2" else 1,
                                bf16=name == "hand_written_bf16")
        finally:  # n_jobs=2 sets one thread per trial; an in-process run goes on with the old count
            torch.set_num_threads(threads)
    else:
        result = run_skfairtune(cfg, work, checkpoint, seed, n_jobs=2 if name == "skfairtune_jobs2" else 1)
    result.update(search_cpu_s=_cpu_seconds() - cpu_start, peak_rss_mb=peak_rss_mb(), contestant=name, seed=seed)
    return result


# --------------------------------------------------------------------------- floor
def _minimal_loop(cfg: BenchConfig, checkpoint: str, bits: str, images, y, weights):
    """The floor: plain PyTorch, trainable part only, from precomputed frozen activations."""
    import timm
    import torch

    from _common import normalize_images, trainable

    torch.manual_seed(0)
    model = timm.create_model(MODEL, pretrained=True, num_classes=2,
                              pretrained_cfg_overlay=dict(file=checkpoint, custom_load=False),
                              **cfg.model_kwargs)
    for name, param in model.named_parameters():
        param.requires_grad_(trainable(name, bits))
    frozen_blocks = next((b for b in range(cfg.depth) if bits[3 * b:3 * b + 3] != "000"), cfg.depth)
    x = normalize_images(torch.from_numpy(images).permute(0, 3, 1, 2))
    with torch.no_grad():
        if frozen_blocks:
            model.eval()
            x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
            x = model.blocks[:frozen_blocks](x)
            model.train()

    def suffix(inputs):
        if not frozen_blocks:
            return model(inputs)
        return model.forward_head(model.norm(model.blocks[frozen_blocks:](inputs)))

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=cfg.weight_decay)
    y_t = torch.as_tensor(y)
    w = torch.as_tensor(weights, dtype=torch.float32)

    def epoch():
        order = torch.randperm(len(x))
        for first in range(0, len(x), cfg.batch_size):
            index = order[first:first + cfg.batch_size]
            loss = torch.nn.functional.cross_entropy(suffix(x[index]), y_t[index], weight=w)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return epoch


def floor_worker(cfg: BenchConfig, work: Workload, checkpoint: str) -> dict:
    from _common import balanced_class_weights
    from skfairtune._images._decode import decode_images
    from skfairtune._training._trainer import Trainer

    index = work.train[:cfg.floor_samples]
    images = decode_images(list(work.paths[index]), size=cfg.image_size)
    y = work.y[index]
    weights = balanced_class_weights(y)
    # Pay one-time costs (imports, first model build, reading the checkpoint) before timing.
    Trainer.for_estimator(make_classifier(cfg, checkpoint, 0)).prepare(images[:8], np.arange(8) % 2)
    rows = []
    for label, bits in floor_masks(cfg.depth):
        variants = {}
        setup = {}
        for variant, cache in (("cache", True), ("no_cache", False)):
            clf = make_classifier(cfg, checkpoint, 0, mask=bits, lr=1e-4, frozen_cache=cache,
                                  max_epochs=cfg.floor_epochs + 1)
            with Timer() as timer:
                trainer = Trainer.for_estimator(clf).prepare(images, y)
            setup[variant] = timer.seconds
            variants[variant] = (lambda t=trainer: t.step(1))
            variants[variant + "_start"] = trainer.frozen_prefix
        variants["floor"] = _minimal_loop(cfg, checkpoint, bits, images, y, weights)
        times = {name: [] for name in ("cache", "no_cache", "floor")}
        for name in times:  # warm-up epoch, untimed
            variants[name]()
        for _ in range(cfg.floor_epochs):
            for name in times:  # interleaved, so load from other processes hits all alike
                with Timer() as timer:
                    variants[name]()
                times[name].append(timer.seconds)
        best = {name: min(values) for name, values in times.items()}
        rows.append({"mask": label, "bits": bits, "frozen_half_blocks": variants["cache_start"],
                     "ours_s": best["cache"], "ours_no_cache_s": best["no_cache"], "floor_s": best["floor"],
                     "prepare_s": setup["cache"], "prepare_no_cache_s": setup["no_cache"],
                     "img_per_s": len(images) / best["cache"]})
    return {"n_images": int(len(images)), "rows": rows, "epochs_timed": cfg.floor_epochs,
            "threads": int(__import__("torch").get_num_threads())}


# --------------------------------------------------------------------------- scaling
def scaling_worker(cfg: BenchConfig, work: Workload, checkpoint: str) -> dict:
    import optuna

    from skfairtune import FairTuneSearchCV

    masks = [bits for _, bits in floor_masks(cfg.depth)[1:4]] + ["010" * cfg.depth]
    bit_names = [f"mask__blocks.{b}.{u}" for b in range(cfg.depth) for u in ("ln", "attn", "mlp")]
    rng = np.random.default_rng(cfg.split_seed)
    train_order, val_order = rng.permutation(work.train), rng.permutation(work.val)
    tokens = (cfg.image_size // cfg.patch_size) ** 2 + 1
    per_sample = tokens * cfg.embed_dim * 4
    # A bound the full size cannot meet with every prefix cached: it must evict to stay under.
    bound_mb = 2.2 * per_sample * (len(work.train) + len(work.val)) / 2**20
    rows = []
    for fraction in cfg.scaling_fractions:
        train = train_order[:max(8, int(round(fraction * len(work.train))))]
        val = val_order[:max(8, int(round(fraction * len(work.val))))]
        idx = np.concatenate([train, val])
        cv = [(np.arange(len(train)), np.arange(len(train), len(idx)))]
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize")
        for bits in masks:
            study.enqueue_trial({**{n: int(b) for n, b in zip(bit_names, bits)}, "lr": 3e-4})
        clf = make_classifier(cfg, checkpoint, 0, max_epochs=cfg.scaling_epochs, frozen_cache_max_mb=bound_mb)
        search = FairTuneSearchCV(clf, n_trials=len(masks), cv=cv, baselines=None, pruner="none",
                                  scoring="roc_auc", study=study, random_state=0, refit=False)
        with Timer() as timer:
            search.fit(work.paths[idx], work.y[idx])
        caches = [t.user_attrs.get("activation_cache") for t in search.study_.trials]
        cache = caches[-1] or {}
        rows.append({"fraction": fraction, "n_samples": int(len(idx)),
                     "trial_s": float(np.mean(search.cv_results_["mean_fit_time"])),
                     "trial_times": [float(t) for t in search.cv_results_["mean_fit_time"]],
                     "fit_s": timer.seconds, "cache": cache,
                     "cache_peak_mb": cache.get("peak_bytes", 0) / 2**20, "bound_mb": bound_mb})
    return {"rows": rows, "masks": masks}


# --------------------------------------------------------------------------- driver
def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import importlib.metadata as md

    versions = ", ".join(f"{p} {md.version(p)}" for p in ("torch", "timm", "skorch", "optuna", "scikit-learn"))
    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}, "
            f"{versions}")


def _run_worker(args, kind: str, *, in_process: bool, cfg: BenchConfig, work_path: Path,
                checkpoint: str | None, seed: int = 0, pick: tuple | None = None) -> dict:
    if in_process:
        return _dispatch(kind, cfg, Workload.load(work_path), checkpoint, seed, pick)
    env = dict(os.environ)
    threads = str(cfg.resolved_threads())
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    if args.omp_passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--config-json", cfg.to_json(),
               "--workload", str(work_path), "--checkpoint", str(checkpoint or ""), "--seed", str(seed)]
    if pick is not None:
        command += ["--pick", json.dumps(pick)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in proc.stderr.splitlines():
        if line.startswith("backbone:"):
            print(f"# {line}")
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT "):
            return json.loads(line[len("@@RESULT "):])
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-6000:])
    raise SystemExit(f"worker {kind} (seed {seed}) failed with exit code {proc.returncode}")


def _dispatch(kind: str, cfg: BenchConfig, work: Workload, checkpoint: str | None, seed: int,
              pick: tuple | None = None) -> dict:
    set_threads(cfg.resolved_threads())
    if kind == "pretrain":
        path, seconds = pretrain_backbone(cfg, Path(checkpoint), log=lambda m: print(m, file=sys.stderr))
        return {"checkpoint": str(path), "seconds": seconds}
    if kind in CONTESTANTS:
        return contestant_worker(kind, cfg, work, checkpoint, seed)
    if kind == "refit":
        return refit_and_test(cfg, work, checkpoint, seed, *pick)
    if kind == "floor":
        return floor_worker(cfg, work, checkpoint)
    if kind == "scaling":
        return scaling_worker(cfg, work, checkpoint)
    raise SystemExit(f"unknown worker {kind!r}")


def _fmt(value, spec=".3f"):
    return "-" if value is None else format(value, spec)


def _print_search(results: list[dict], seeds) -> dict:
    print("\n== Search: same data, split, checkpoint, recipe, trial budget and seeds ==")
    header = (f"{'contestant':<22}{'seed':>5}{'search s':>10}{'cpu s':>8}{'epochs':>8}{'pruned':>8}"
              f"{'best val':>10}{'test AUC':>10}{'test min':>10}{'peak MB':>9}{'refit s':>9}")
    print(header)
    totals = {}
    for name, label in CONTESTANTS.items():
        rows = [r for r in results if r["contestant"] == name]
        if not rows:
            continue
        for r in rows:
            print(f"{label:<22}{r['seed']:>5}{r['search_s']:>10.1f}{r.get('search_cpu_s', float('nan')):>8.0f}"
                  f"{r['epochs']:>8}"
                  f"{r['n_pruned']:>5}/{r['n_pruned'] + r['n_complete']:<2}{r['best_val_min_group_auc']:>10.3f}"
                  f"{r['test_overall_auc']:>10.3f}{r['test_min_group_auc']:>10.3f}{r['peak_rss_mb']:>9.0f}"
                  f"{r['refit_s']:>9.1f}")
        mean = lambda key: statistics.mean(r[key] for r in rows)  # noqa: E731
        sd = lambda key: statistics.stdev(r[key] for r in rows) if len(rows) > 1 else 0.0  # noqa: E731
        totals[name] = (sum(r["search_s"] for r in rows), sum(r["search_cpu_s"] for r in rows))
        print(f"{label + ' mean':<27}{mean('search_s'):>10.1f}{mean('search_cpu_s'):>8.0f}{mean('epochs'):>8.1f}{'':>8}"
              f"{mean('best_val_min_group_auc'):>10.3f}{mean('test_overall_auc'):>10.3f}"
              f"{mean('test_min_group_auc'):>10.3f}{max(r['peak_rss_mb'] for r in rows):>9.0f}"
              f"{mean('refit_s'):>9.1f}")
        if len(rows) > 1:
            print(f"{'  (sd over seeds)':<45}{'':>16}{sd('best_val_min_group_auc'):>10.3f}"
                  f"{sd('test_overall_auc'):>10.3f}{sd('test_min_group_auc'):>10.3f}")
    for r in results:
        if r["contestant"] == "reference":
            print(f"  reference-style seed {r['seed']}: its own objective ({r['own_objective']}) "
                  f"picked a trial scoring {r['best_val_own']:.3f}; whole-set value shown above")
    for seed in seeds:
        sampled = [r["sampled"] for r in results if r["seed"] == seed]
        same = all(len(s) == len(sampled[0]) and all(a[0] == b[0] and abs(a[1] - b[1]) < 1e-12
                                                     for a, b in zip(s, sampled[0])) for s in sampled)
        print(f"  seed {seed}: the contestants sampled {'identical' if same else 'DIFFERENT'} "
              "(mask, lr) sequences")
    print("  search s = wall time of the search; cpu s = CPU seconds of its process and its worker processes "
          "(all threads), which other processes on a shared machine disturb much less")
    print("  best val = whole-validation-set min-group AUC of the trial each contestant picked; "
          "test = held-out split after the same refit for all")
    def pick(who, seed, key):
        return next(r[key] for r in results if r["contestant"] == who and r["seed"] == seed)

    def per_seed(key, theirs, ours):
        return ", ".join(f"{pick(theirs, s, key) / pick(ours, s, key):.2f}x" for s in seeds)

    ratios = {}
    print("\n== Ratios (theirs / ours; above 1: FairTuneSearchCV is faster), equal resources first ==")
    for ours, theirs, heading in COMPARISONS:
        if ours not in totals or theirs not in totals:
            continue
        wall = totals[theirs][0] / totals[ours][0]
        cpu = totals[theirs][1] / totals[ours][1]
        key = f"{ours} vs {theirs}"
        ratios[key] = {"wall": wall, "cpu": cpu, "heading": heading,
                       "wall_per_seed": [pick(theirs, s, "search_s") / pick(ours, s, "search_s") for s in seeds],
                       "best_val_ours": [pick(ours, s, "best_val_min_group_auc") for s in seeds],
                       "best_val_theirs": [pick(theirs, s, "best_val_min_group_auc") for s in seeds]}
        print(f"{heading}: {CONTESTANTS[ours]} vs {CONTESTANTS[theirs]}: speedup {wall:.2f}x  "
              f"(in CPU time: {cpu:.2f}x; per seed, wall: {per_seed('search_s', theirs, ours)}; "
              f"CPU: {per_seed('search_cpu_s', theirs, ours)})")
        if len(seeds) > 1:
            # Seeds are the unit of replication: a t-interval on the log of the per-seed ratios.
            mean, low, high, _, n = paired_t_interval(np.log(ratios[key]["wall_per_seed"]))
            ratios[key]["wall_geomean"] = float(np.exp(mean))
            ratios[key]["wall_geomean_ci"] = [float(np.exp(low)), float(np.exp(high))]
            print(f"    per-seed wall ratio: geometric mean {np.exp(mean):.2f}x, "
                  f"95% t-interval over {n} seeds [{np.exp(low):.2f}x, {np.exp(high):.2f}x]")
        vals = lambda who: ", ".join(f"{pick(who, s, 'best_val_min_group_auc'):.3f}" for s in seeds)  # noqa: E731
        print(f"    best val per seed {list(seeds)}: {CONTESTANTS[ours]} {vals(ours)}; "
              f"{CONTESTANTS[theirs]} {vals(theirs)}")
        # Kept for the old readers of this output (tests, docs): the same numbers, old wording.
        prefix = "n_jobs=2 " if ours == "skfairtune_jobs2" else ""
        if theirs in ("reference", "hand_written"):
            label = CONTESTANTS[theirs]
            print(f"    {prefix}speedup vs {label}: {wall:.2f}x")
    return ratios


def _print_floor(floor: dict) -> None:
    print(f"\n== Floor: seconds per training epoch, {floor['n_images']} images, best of "
          f"{floor['epochs_timed']} (interleaved) ==")
    print(f"{'mask':<24}{'cut':>5}{'ours':>9}{'no cache':>10}{'floor':>9}{'ours/floor':>12}"
          f"{'cache speed-up':>16}{'prepare':>9}{'(no cache)':>11}")
    for r in floor["rows"]:
        print(f"{r['mask']:<24}{r['frozen_half_blocks']:>5}{r['ours_s']:>9.3f}{r['ours_no_cache_s']:>10.3f}"
              f"{r['floor_s']:>9.3f}{r['ours_s'] / r['floor_s']:>11.2f}x"
              f"{r['ours_no_cache_s'] / r['ours_s']:>15.2f}x{r['prepare_s']:>8.2f}s{r['prepare_no_cache_s']:>10.2f}s")
    print("  cut = frozen half-blocks served from the cache; floor = plain PyTorch loop over the trainable "
          "part from precomputed activations (images for cut 0); prepare = building the model and, with "
          "the cache, computing it (once per fit)")


def _print_scaling(scaling: dict) -> None:
    print("\n== Scaling: time per trial (4 fixed masks, no pruning) and the cross-trial cache ==")
    print(f"{'fraction':>9}{'samples':>9}{'s/trial':>9}{'ms/trial/sample':>17}{'cache peak MB':>15}"
          f"{'bound MB':>10}{'evictions':>11}{'hits':>6}{'partial':>9}{'misses':>8}")
    full = scaling["rows"][-1]
    for r in scaling["rows"]:
        c = r["cache"]
        print(f"{r['fraction']:>9.2f}{r['n_samples']:>9}{r['trial_s']:>9.2f}"
              f"{1000 * r['trial_s'] / r['n_samples']:>17.3f}{r['cache_peak_mb']:>15.1f}{r['bound_mb']:>10.1f}"
              f"{c.get('evictions', 0):>11}{c.get('hits', 0):>6}{c.get('partial_hits', 0):>9}"
              f"{c.get('misses', 0):>8}")
        assert r["cache_peak_mb"] <= r["bound_mb"] + 1e-9, "activation cache exceeded its bound"
    first = scaling["rows"][0]
    relative = (first["trial_s"] / first["n_samples"]) / (full["trial_s"] / full["n_samples"])
    print(f"  per-sample cost at 1/4 relative to full: {relative:.2f} (1.00 = linear); "
          "cache peak never above its bound")


def merge_reports(paths: list[Path], *, json_path: Path | None = None) -> int:
    """Search tables and ratios over the union of the seeds of several reports of one configuration."""
    reports = [json.loads(path.read_text()) for path in paths]
    configs = [{k: v for k, v in report["config"].items() if k != "seeds"} for report in reports]
    for path, config in zip(paths[1:], configs[1:]):
        if config != configs[0]:
            differing = sorted(k for k in config.keys() | configs[0].keys() if config.get(k) != configs[0].get(k))
            print(f"--merge: {path} has another configuration than {paths[0]} (differs in {differing}); "
                  "merge only runs of one configuration, split with --first-seed.", file=sys.stderr)
            return 2
    results = [row for rep in reports for row in rep.get("search", [])]
    runs = [(row["contestant"], row["seed"]) for row in results]
    if len(set(runs)) != len(runs):
        print(f"--merge: the files repeat a seed ({[r['seed'] for r in results]}); merge each seed once.",
              file=sys.stderr)
        return 2
    seeds = sorted({row["seed"] for row in results})
    print(f"# bench_search --merge of {len(paths)} reports: {', '.join(str(p) for p in paths)}; seeds {seeds}")
    for path, rep in zip(paths, reports):
        print(f"#   {path}: machine {rep.get('machine')}, seeds {rep['config']['seeds']}")
    merged = {"config": dict(reports[0]["config"], seeds=seeds), "machine": reports[0].get("machine"),
              "merged_from": [str(p) for p in paths], "search": results}
    merged["speedups"] = _print_search(results, seeds)
    if json_path:
        json_path.write_text(json.dumps(merged, indent=1))
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="synthetic data, tiny sizes, < 60 s")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (0..n-1); default 3, smoke 1")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds run are first-seed .. first-seed + seeds - 1 (split one run over invocations)")
    parser.add_argument("--n-trials", type=int)
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--n-train", type=int)
    parser.add_argument("--n-val", type=int)
    parser.add_argument("--n-test", type=int)
    parser.add_argument("--embed-dim", type=int, help="model width (default 64; ViT-Tiny: 192)")
    parser.add_argument("--num-heads", type=int, help="attention heads (default 2; ViT-Tiny: 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0: one per core)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--contestants", nargs="+", choices=list(CONTESTANTS),
                        help="default: the five of the docstring (hand_written_bf16 runs when named); with --smoke the three single-process ones "
                             "(skfairtune_jobs2 spends most of a smoke run starting processes)")
    parser.add_argument("--no-omp-passive", dest="omp_passive", action="store_false",
                        help="do not set OMP_WAIT_POLICY=PASSIVE in the worker processes")
    parser.add_argument("--in-process", action="store_true",
                        help="run everything in this process (default for --smoke); peak memory is then shared")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--json", type=Path, help="also write all results to this JSON file")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                        help="print the search tables and ratios over the seeds of several --json files of one "
                             "configuration (runs split with --first-seed); runs nothing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--pick", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build_config(args) -> BenchConfig:
    overrides = {k: v for k, v in dict(n_trials=args.n_trials, max_epochs=args.max_epochs, n_train=args.n_train,
                                        n_val=args.n_val, n_test=args.n_test, embed_dim=args.embed_dim,
                                        num_heads=args.num_heads).items() if v is not None}
    if args.threads or not args.smoke:
        overrides["threads"] = args.threads
    if args.contestants:
        overrides["contestants"] = tuple(args.contestants)
    if args.seeds is not None or args.first_seed:
        n_seeds = args.seeds if args.seeds is not None else len(BenchConfig.seeds)
        overrides["seeds"] = tuple(range(args.first_seed, args.first_seed + n_seeds))
    return BenchConfig.smoke_config(**overrides) if args.smoke else BenchConfig(**overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        cfg = BenchConfig.from_json(args.config_json)
        work = Workload.load(Path(args.workload)) if args.workload else None
        pick = tuple(json.loads(args.pick)) if args.pick else None
        emit(_dispatch(args.worker, cfg, work, args.checkpoint or None, args.seed, pick))
        return 0

    if args.merge:
        return merge_reports(args.merge, json_path=args.json)
    cfg = build_config(args)
    if not cfg.smoke and not ham_available():
        print(f"HAM10000 is not at {SHARED_DATA / 'ham10000'}: the full benchmark needs it "
              "(see ../shared/data/README.md). Run with --smoke for the synthetic version.", file=sys.stderr)
        return 2
    in_process = args.in_process or cfg.smoke
    started = time.perf_counter()
    print(f"# bench_search  {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"# command: python benchmarks/bench_search.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"# machine: {_machine()}")
    print(f"# load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())} "
          "(other processes on this machine)")
    print(f"# torch threads per process: {cfg.resolved_threads()}"
          + ("" if in_process or not args.omp_passive else ", OMP_WAIT_POLICY=PASSIVE")
          + (", all in one process" if in_process else ", one process per contestant / section"))
    print(f"# model: {MODEL} {cfg.model_kwargs}, 36-bit ln-attn-mlp mask space")
    print(f"# recipe: AdamW wd {cfg.weight_decay}, warm-up {cfg.warmup_fraction:.2f} + cosine per step, "
          f"batch {cfg.batch_size}, {cfg.max_epochs} epochs, class-weighted CE, lr log-uniform {cfg.lr_range}")
    print(f"# search: {cfg.n_trials} trials (baselines {', '.join(BASELINE_NAMES)} first), TPE seeded, "
          f"successive halving (reduction 4); seeds {list(cfg.seeds)}")

    scratch = tempfile.TemporaryDirectory(prefix="bench_search_")
    cache_dir = Path(scratch.name) / "cache" if cfg.smoke else args.cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    gitignore = cache_dir / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("*\n")
    work = synthetic_workload(cfg, Path(scratch.name) / "images") if cfg.smoke else ham_workload(cfg)
    key = hashlib.sha1(cfg.to_json().encode()).hexdigest()[:10]
    work_path = Path(scratch.name) / f"workload-{key}.npz"
    work.save(work_path)
    print(f"# data: {work.source}; train {len(work.train)}, validation {len(work.val)}, test {len(work.test)}; "
          f"positives {int(work.y[work.train].sum())}/{int(work.y[work.val].sum())}/{int(work.y[work.test].sum())}; "
          f"groups {sorted(set(work.groups.tolist()))}")

    run = dict(args=args, in_process=in_process, cfg=cfg, work_path=work_path)
    pre = _run_worker(kind="pretrain", checkpoint=str(cache_dir), **run)
    checkpoint = pre["checkpoint"]
    print(f"# backbone: {Path(checkpoint).name} "
          + (f"(pre-trained now in {pre['seconds']:.0f} s)" if pre["seconds"] else "(cached)")
          + ", loaded through checkpoint_path / timm pretrained_cfg_overlay")
    report: dict = {"config": json.loads(cfg.to_json()), "machine": _machine(), "pretrain_s": pre["seconds"]}
    sys.stdout.flush()

    if "search" in args.only:
        results = []
        names = list(cfg.contestants)
        for seed in cfg.seeds:
            # Rotate the order per seed (by the seed, so runs split with --first-seed rotate too)
            # so that slow drifts in machine load hit every contestant.
            for name in names[seed % len(names):] + names[:seed % len(names)]:
                result = _run_worker(kind=name, checkpoint=checkpoint, seed=seed, **run)
                results.append(result)
                print(f"  done: {CONTESTANTS[name]:<21} seed {seed}: search {result['search_s']:.1f} s, "
                      f"{result['epochs']} epochs, best val {result['best_val_min_group_auc']:.3f}", flush=True)
            # The picks are refit with the same code for all; identical picks are refit once.
            refits = {}
            for result in results[-len(names):]:
                pick = (result["best_mask"], result["best_lr"])
                if pick not in refits:
                    refits[pick] = _run_worker(kind="refit", checkpoint=checkpoint, seed=seed, pick=pick, **run)
                result.update(refits[pick])
        report["search"] = results
        report["speedups"] = _print_search(results, cfg.seeds)
    if "floor" in args.only:
        report["floor"] = _run_worker(kind="floor", checkpoint=checkpoint, **run)
        _print_floor(report["floor"])
    if "scaling" in args.only:
        report["scaling"] = _run_worker(kind="scaling", checkpoint=checkpoint, **run)
        _print_scaling(report["scaling"])
    finish_report(report, started, args.json, blank_line=True)
    scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
