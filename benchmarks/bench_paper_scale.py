"""Paper scale: what one FairTune search on HAM10000 costs in GPU-hours (the paper: 48).

The workload of the FairTune paper's HAM10000 search: ViT-B/16 at 224 px, the
36-bit LayerNorm / attention / MLP mask space, 40 trials of up to 30 epochs,
successive halving, all through the public ``FairTuneSearchCV`` /
``FairTuneClassifier`` API with their defaults (``precision="auto"``: bf16
autocast where the hardware has it natively). Random weights: the timing does not depend on them.

In one run, within ``--time-budget`` seconds (default 420, so that a lent GPU
machine finishes it in one 8-minute call), it measures:

1. **plain loop**: training images/s of a plain PyTorch loop for full
   fine-tuning, as a careful user writes it for a GPU: the training set on the
   device as uint8, normalised per batch, bf16 autocast and fused AdamW on CUDA
   (float32 and the default AdamW on the CPU);
2. **one trial**: training images/s of ``FairTuneClassifier(mask="full")``
   (the best epoch after the first), and its time to predict the validation
   split; the ratio to (1) is the library's overhead on this device;
3. **the search**: ``FairTuneSearchCV`` for whatever time is left (Optuna's
   ``timeout``, minus one worst-case trial so that the budget holds), giving
   trials/hour and seconds per trained epoch as the search really runs them
   (every mask it samples, validation after every epoch, pruning);
4. **the extrapolation**: the number of epochs the whole 40-trial search
   trains under successive halving, simulated with Optuna's own pruner on
   random learning curves, times the measured seconds per epoch of (3) (of (2)
   plus validation when (3) trained none). It is an extrapolation and is
   printed as one; when the whole search fits in the budget (``--smoke``, or a
   large ``--time-budget``) the measured GPU-hours are printed too.

Usage::

    python benchmarks/bench_paper_scale.py                       # a GPU: ~7 min
    python benchmarks/bench_paper_scale.py --time-budget 3600    # measure more of the search
    python benchmarks/bench_paper_scale.py --smoke               # CPU, tiny ViT, seconds

Results go to stdout and, as JSON with machine, date and command, to ``--json``
(default ``bench_paper_scale.json`` in the current folder), or to
``<--out>/bench_paper_scale.json`` with ``--out DIR``. Without HAM10000 the full
mode exits with status 2; ``--smoke`` then uses synthetic images.

**A fresh GPU machine holding only the repository, without network.** The
data (``../shared/data/ham10000``) is outside the repository, and its licence
keeps it out of git. Write a stratified subset small enough to carry into the
git-ignored ``benchmarks/.cache/`` once, on a machine that has the data::

    python benchmarks/bench_paper_scale.py --write-subset benchmarks/.cache/ham10000_subset --n-images 2000

(about 32 MB of 224 px JPEGs); the benchmark reads it by default when
``../shared/data/ham10000`` is absent. Copy that folder along with the
repository (e.g. as an ignored path the job carries), then::

    python benchmarks/bench_paper_scale.py --out "$OUT"

Nothing is downloaded at run time: the weights are random (``pretrained=False``),
the Hugging Face hub is switched offline (``HF_HUB_OFFLINE=1``) and every
package is the environment's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: A HAM10000 subset written by ``--write-subset`` inside the (git-ignored) benchmark cache.
CARRIED_DATA = Path(__file__).resolve().parent / ".cache" / "ham10000_subset"


def default_data() -> Path:
    """The shared HAM10000 folder when present, else the carried subset."""
    shared = SHARED_DATA / "ham10000"
    return shared if (shared / "HAM10000_metadata.csv").is_file() or not CARRIED_DATA.is_dir() else CARRIED_DATA
#: The paper's search (appendix A.5): 40 trials of up to 30 epochs, reduction factor 4.
PAPER = dict(model="vit_base_patch16_224", image_size=224, n_trials=40, max_epochs=30)
#: Smoke: a 12-block ViT (so the 36-bit space applies) narrow enough for seconds on a CPU.
SMOKE_MODEL_KWARGS = dict(img_size=32, patch_size=8, embed_dim=16, depth=12, num_heads=2)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny ViT, a handful of images: seconds")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds for the whole measurement (default 420; --smoke 120)")
    parser.add_argument("--n-trials", type=int, default=None, help="default 40 (--smoke 4)")
    parser.add_argument("--max-epochs", type=int, default=None, help="default 30 (--smoke 3)")
    parser.add_argument("--n-images", type=int, default=None,
                        help="images used, train + validation (default all of HAM10000; --smoke 96)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 128 (--smoke 16)")
    parser.add_argument("--validation-fraction", type=float, default=None,
                        help="default 0.2 (--smoke 0.3: both classes in both age groups)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cpu")
    parser.add_argument("--data", type=Path, default=None,
                        help=f"HAM10000 folder (default {SHARED_DATA / 'ham10000'}, else {CARRIED_DATA})")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the results (bench_paper_scale.json); overrides --json")
    parser.add_argument("--write-subset", type=Path, default=None, metavar="DIR",
                        help="write a stratified subset of --data (--n-images images, default 2000) to DIR and exit")
    parser.add_argument("--n-simulations", type=int, default=None,
                        help="simulated searches for the expected number of epochs (default 50; --smoke 10)")
    parser.add_argument("--json", type=Path, default=Path("bench_paper_scale.json"))
    args = parser.parse_args(argv)
    if args.data is None:
        args.data = default_data()
    if args.out is not None:
        args.json = args.out / "bench_paper_scale.json"
    smoke = args.smoke
    defaults = dict(time_budget=(120.0, 420.0), n_trials=(4, PAPER["n_trials"]),
                    max_epochs=(3, PAPER["max_epochs"]), batch_size=(16, 128), n_images=(96, None),
                    validation_fraction=(0.3, 0.2), n_simulations=(10, 50))
    for name, (small, full) in defaults.items():  # None: not given (0 is given, and refused below)
        if getattr(args, name) is None:
            setattr(args, name, small if smoke else full)
    for name in ("time_budget", "n_trials", "max_epochs", "batch_size", "n_simulations"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive; got {getattr(args, name)}")
    if args.n_images is not None and args.n_images < 16:
        parser.error(f"--n-images must be at least 16 (both classes in both splits); got {args.n_images}")
    if not 0 < args.validation_fraction < 1:
        parser.error(f"--validation-fraction must be in (0, 1); got {args.validation_fraction}")
    return args


# --------------------------------------------------------------------------- set-up
def machine(device) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f"{torch.cuda.get_device_name(device)}, " if device.type == "cuda" else "no GPU, "
    import importlib.metadata as md

    versions = ", ".join(f"{p} {md.version(p)}" for p in ("torch", "timm", "skorch", "optuna"))
    return (f"{gpu}{cpu}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}, "
            f"{versions}")


def load_data(args, image_size: int):
    """(uint8 images (N, H, W, 3), labels, age groups, source)."""
    if (args.data / "HAM10000_metadata.csv").is_file():
        from skfairtune.datasets import load_ham10000

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # rows without an age are dropped
            data = load_ham10000(args.data, image_size=image_size, sensitive="age",
                                 n_samples=args.n_images, random_state=0)
        groups = data.sensitive_features["age"].astype(str).to_numpy()
        return data.images, np.asarray(data.target), groups, f"HAM10000 ({args.data})"
    if not args.smoke:
        raise FileNotFoundError(args.data)
    from skfairtune.datasets import make_biased_images

    data = make_biased_images(args.n_images, image_size=image_size, random_state=0)
    groups = data.sensitive_features["group"].astype(str).to_numpy()
    return data.images, np.asarray(data.target), groups, "synthetic make_biased_images (data absent)"


def write_subset(source: Path, target: Path, n_images: int) -> int:
    """Copy ``n_images`` of HAM10000 (stratified by label and age group) into ``target``, same layout."""
    import shutil

    import pandas as pd
    from sklearn.model_selection import train_test_split

    from skfairtune.datasets import load_ham10000

    meta = pd.read_csv(source / "HAM10000_metadata.csv")
    paths = load_ham10000(source, load_images=False, sensitive="age").paths  # rows the loader keeps
    keep = {Path(p).stem: Path(p) for p in paths}
    meta = meta[meta["image_id"].isin(keep)].reset_index(drop=True)
    if n_images < len(meta):
        strata = meta["dx"].isin(["akiec", "mel"]).astype(str) + (meta["age"] > 60).astype(str)
        meta, _ = train_test_split(meta, train_size=n_images, stratify=strata, random_state=0)
    (target / "HAM10000_images").mkdir(parents=True, exist_ok=True)
    for image_id in meta["image_id"]:
        shutil.copy2(keep[image_id], target / "HAM10000_images" / keep[image_id].name)
    meta.sort_values("image_id").to_csv(target / "HAM10000_metadata.csv", index=False)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    print(f"wrote {len(meta)} images ({size / 2**20:.1f} MiB) of {source} to {target}")
    return 0


def split(y, groups, fraction: float):
    """One stratified (label x group) train / validation split, as the search's ``cv``."""
    from sklearn.model_selection import train_test_split

    strata = np.char.add(y.astype(str), groups.astype(str))
    train, val = train_test_split(np.arange(len(y)), test_size=fraction, stratify=strata, random_state=0)
    return np.sort(train), np.sort(val)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- 1. plain loop
def plain_loop(args, model_kwargs, images, y, device, seconds: float) -> dict:
    """Images/s of full fine-tuning in plain PyTorch: data on the device, fused AdamW on CUDA.

    In the precision ``FairTuneClassifier(precision="auto")`` picks for this device and model
    (bf16 autocast on a GPU from compute capability 8.0, and on a CPU with native bf16 for wide
    models), so the ratio of the two compares like with like.
    """
    import torch

    from skfairtune._training._precision import model_width, resolve_precision
    from skfairtune.backbone import build_backbone
    from skfairtune.masks import MaskSpace, apply_mask

    torch.manual_seed(0)
    model = build_backbone(args.model, model_kwargs=model_kwargs, num_classes=2, pretrained=False)
    apply_mask(model, MaskSpace.from_model("ln-attn-mlp", model).resolve("full"))  # what the trial trains
    model = model.to(device).train()
    cuda = device.type == "cuda"
    bf16 = resolve_precision("auto", device, model_width(model)) == "bf16"
    X = torch.from_numpy(images).to(device)  # uint8 (N, H, W, 3): 4x smaller than float32
    labels = torch.as_tensor(y).to(device)
    counts = torch.bincount(labels, minlength=2).float()
    weight = (len(labels) / (2 * counts)).to(device)
    mean = torch.tensor((0.5, 0.5, 0.5), device=device).view(1, 3, 1, 1)  # timm's ViT-B/16 config
    std = torch.tensor((0.5, 0.5, 0.5), device=device).view(1, 3, 1, 1)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05, **({"fused": True} if cuda else {}))

    def step(index):
        x = (X[index].permute(0, 3, 1, 2).float().div_(255) - mean) / std
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), labels[index], weight=weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    order = torch.randperm(len(X), device=device)
    batches = [order[i:i + args.batch_size] for i in range(0, len(X), args.batch_size)]
    for index in batches[:3]:  # warm-up: kernel selection, allocator
        step(index)
    sync(device)
    started = time.perf_counter()
    n_images = 0
    for epoch_batches in (batches, batches):  # at most two epochs
        for index in epoch_batches:
            step(index)
            n_images += len(index)
            if n_images % (8 * args.batch_size) == 0:
                sync(device)
                if time.perf_counter() - started > seconds:
                    break
        else:
            continue
        break
    sync(device)
    elapsed = time.perf_counter() - started
    precision = ("bf16 autocast" if bf16 else "float32") + (", fused AdamW" if cuda else ", AdamW")
    return {"img_per_s": n_images / elapsed, "images_timed": n_images, "seconds": elapsed, "setting": precision}


# --------------------------------------------------------------------------- 2. one trial
def make_classifier(args, model_kwargs, **params):
    from skfairtune import FairTuneClassifier

    defaults = dict(model_kwargs=model_kwargs, pretrained=False, max_epochs=args.max_epochs,
                    batch_size=args.batch_size, class_weight="balanced", device=args.device, random_state=0)
    defaults.update(params)
    return FairTuneClassifier(args.model, **defaults)


def one_trial(args, model_kwargs, X_train, y_train, X_val) -> dict:
    """Images/s of one FairTuneClassifier fit (full fine-tuning), best epoch after the first."""
    clf = make_classifier(args, model_kwargs, mask="full", lr=1e-4, max_epochs=2)
    started = time.perf_counter()
    clf.fit(X_train, y_train)
    fit_s = time.perf_counter() - started
    durations = [float(row["dur"]) for row in clf.history_]
    started = time.perf_counter()
    clf.predict_proba(X_val)
    sync(clf.device_)
    predict_s = time.perf_counter() - started
    return {"img_per_s": len(X_train) / min(durations[1:] or durations), "epoch_s": durations,
            "fit_s": fit_s, "predict_val_s": predict_s, "n_train": int(len(X_train)),
            "device": str(clf.device_),
            # precision="auto" (the default used here), as it resolved on this device and model.
            "precision": f"auto ({'bf16 autocast' if clf.precision_ == 'bf16' else 'float32'})"}


# --------------------------------------------------------------------------- 3. the search
def run_search(args, model_kwargs, X, y, groups, cv, timeout: float) -> dict:
    from skfairtune import FairTuneSearchCV

    search = FairTuneSearchCV(make_classifier(args, model_kwargs), n_trials=args.n_trials, cv=cv,
                              pruner="successive_halving", refit=False, timeout=timeout, random_state=0,
                              progress_bar=False)
    started = time.perf_counter()
    search.fit(X, y, sensitive_features=groups)
    elapsed = time.perf_counter() - started
    states = list(search.cv_results_["state"])
    epochs = int(np.nansum(search.cv_results_["n_epochs"]))
    return {"search_s": elapsed, "timeout_s": timeout, "n_trials_run": len(states),
            "n_complete": states.count("complete"), "n_pruned": states.count("pruned"), "epochs": epochs,
            "s_per_epoch": elapsed / epochs if epochs else None,
            "trials_per_hour": 3600 * len(states) / elapsed if states else None,
            "best_score": float(search.best_score_) if states.count("complete") else None,
            "epochs_per_trial": [int(e) for e in search.cv_results_["n_epochs"]],
            "finished": len(states) >= args.n_trials}


# --------------------------------------------------------------------------- 4. extrapolation
def simulated_epochs(n_trials: int, max_epochs: int, n_simulations: int) -> dict:
    """Epochs a whole search trains under the search's successive halving, on random curves.

    The pruner is the one ``FairTuneSearchCV(pruner="successive_halving")``
    builds (first rung at the end of the warm-up, reduction factor 4); each
    simulated trial has a random final quality and a saturating, noisy curve.
    """
    import optuna

    from skfairtune.search._pruners import make_pruner  # the search's own pruner settings, not a copy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(0)
    totals = []
    for sim in range(n_simulations):
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=sim),
                                    pruner=make_pruner("successive_halving", max_epochs, 1 / 3))
        count = 0

        def objective(trial):
            nonlocal count
            quality, speed = rng.uniform(0.55, 0.85), rng.uniform(2, 10)
            value = 0.5
            for epoch in range(max_epochs):
                count += 1
                value = 0.5 + (quality - 0.5) * (1 - math.exp(-(epoch + 1) / speed)) + rng.normal(0, 0.02)
                trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return value

        study.optimize(objective, n_trials=n_trials)
        totals.append(count)
    return {"mean": statistics.mean(totals), "min": min(totals), "max": max(totals),
            "no_pruning": n_trials * max_epochs, "n_simulations": n_simulations}


# --------------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a network the machine may not have
    if args.write_subset is not None:
        return write_subset(args.data, args.write_subset, args.n_images or 2000)
    started = time.perf_counter()
    deadline = started + args.time_budget
    import torch

    if args.smoke:
        torch.set_num_threads(min(torch.get_num_threads(), 2))
    if not args.smoke and not (args.data / "HAM10000_metadata.csv").is_file():
        print(f"HAM10000 is not at {args.data}: the full benchmark needs it (see ../shared/data/README.md), "
              f"or a subset written with --write-subset {CARRIED_DATA}. "
              "Run with --smoke for the synthetic version.", file=sys.stderr)
        return 2
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    args.device = str(device)
    args.model = "vit_tiny_patch16_224" if args.smoke else PAPER["model"]
    model_kwargs = dict(SMOKE_MODEL_KWARGS) if args.smoke else {}
    image_size = model_kwargs.get("img_size", PAPER["image_size"])
    command = "python benchmarks/bench_paper_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": command.strip(), "machine": machine(device), "device": str(device),
              "config": {"model": args.model, "model_kwargs": model_kwargs, "image_size": image_size,
                         "n_trials": args.n_trials, "max_epochs": args.max_epochs,
                         "batch_size": args.batch_size, "time_budget_s": args.time_budget,
                         "space": "ln-attn-mlp (36 bits)", "pruner": "successive_halving"}}
    print(f"# bench_paper_scale  {report['date']}")
    print(f"# command: {report['command']}")
    print(f"# machine: {report['machine']}")
    print(f"# model: {args.model} {model_kwargs or ''} at {image_size} px, random weights; 36-bit ln-attn-mlp "
          f"space; {args.n_trials} trials x up to {args.max_epochs} epochs, successive halving; "
          f"batch {args.batch_size}; budget {args.time_budget:.0f} s")

    loading = time.perf_counter()
    images, y, groups, source = load_data(args, image_size)
    train, val = split(y, groups, args.validation_fraction)
    report["data"] = {"source": source, "n_train": int(len(train)), "n_val": int(len(val)),
                      "load_s": time.perf_counter() - loading}
    print(f"# data: {source}; {len(train)} training, {len(val)} validation images "
          f"(decoded in {report['data']['load_s']:.0f} s)", flush=True)

    # 1. The plain loop gets at most an eighth of the budget.
    plain = plain_loop(args, model_kwargs, images[train], y[train], device, seconds=args.time_budget / 8)
    report["plain"] = plain
    print(f"plain PyTorch loop ({plain['setting']}), full fine-tuning: {plain['img_per_s']:.0f} img/s "
          f"({plain['images_timed']} images in {plain['seconds']:.1f} s)", flush=True)

    # 2. One trial: two epochs of a subset small enough for a quarter of the budget.
    per_epoch = int(plain["img_per_s"] * args.time_budget / 12)
    subset = train if len(train) <= per_epoch else np.sort(np.random.default_rng(0).choice(train, per_epoch, False))
    trial = one_trial(args, model_kwargs, images[subset], y[subset], images[val])
    report["trial"] = trial
    ratio = trial["img_per_s"] / plain["img_per_s"]
    report["trial_vs_plain"] = ratio
    print(f"one trial, FairTuneClassifier(mask='full', precision={trial['precision']}) on {trial['device']}: "
          f"{trial['img_per_s']:.0f} img/s = {ratio:.2f}x the plain loop "
          f"(epochs {', '.join(f'{d:.1f}' for d in trial['epoch_s'])} s on {trial['n_train']} images; "
          f"predicting {len(val)} validation images {trial['predict_val_s']:.1f} s)", flush=True)
    # A full-fine-tuning epoch on the whole training split plus one validation pass: about the
    # most expensive epoch a trial trains (frozen parts only make it cheaper).
    epoch_full_s = len(train) / trial["img_per_s"] + trial["predict_val_s"]

    # 3. The search, for the rest of the budget minus one worst-case trial (Optuna's timeout
    # only stops new trials from starting).
    worst_trial_s = args.max_epochs * epoch_full_s * 1.2 + 5
    timeout = deadline - time.perf_counter() - worst_trial_s
    if timeout > 0:
        search = run_search(args, model_kwargs, images[np.concatenate([train, val])],
                            y[np.concatenate([train, val])], groups[np.concatenate([train, val])],
                            [(np.arange(len(train)), np.arange(len(train), len(train) + len(val)))], timeout)
        report["search"] = search
        print(f"search (measured): {search['n_trials_run']} of {args.n_trials} trials "
              f"({search['n_complete']} complete, {search['n_pruned']} pruned), {search['epochs']} epochs in "
              f"{search['search_s']:.0f} s: {search['trials_per_hour']:.1f} trials/hour, "
              + (f"{search['s_per_epoch']:.2f} s per trained epoch" if search["epochs"] else "no epoch trained"),
              flush=True)
    else:
        search = None
        report["search"] = None
        print(f"search (measured): not run; the {args.time_budget:.0f} s budget leaves no room for one "
              f"worst-case trial ({worst_trial_s:.0f} s)", flush=True)

    # 4. Extrapolation to the whole search.
    sim = simulated_epochs(args.n_trials, args.max_epochs, args.n_simulations)
    if search and search["epochs"]:
        s_per_epoch, basis = search["s_per_epoch"], "seconds per epoch measured in the search above"
    else:
        s_per_epoch, basis = epoch_full_s, "one full-fine-tuning epoch + one validation pass (upper bound)"
    hours = sim["mean"] * s_per_epoch / 3600
    report["extrapolation"] = {"epochs": sim, "s_per_epoch": s_per_epoch, "basis": basis,
                               "gpu_hours" if device.type == "cuda" else "hours": hours,
                               "hours": hours, "hours_no_pruning": sim["no_pruning"] * s_per_epoch / 3600,
                               "trials_per_hour": args.n_trials / hours}
    unit = "GPU-hours" if device.type == "cuda" else "hours (CPU)"
    print(f"whole search (EXTRAPOLATED): {sim['mean']:.0f} epochs expected under successive halving "
          f"(simulated {sim['n_simulations']} searches on random learning curves: {sim['min']}-{sim['max']}; "
          f"{sim['no_pruning']} without pruning) x {s_per_epoch:.2f} s ({basis}) = {hours:.3f} {unit} "
          f"({hours * 3600:.0f} s), "
          f"{args.n_trials / hours:.1f} trials/hour; without pruning "
          f"{report['extrapolation']['hours_no_pruning']:.3f} {unit}")
    if search and search["finished"]:
        measured = search["search_s"] / 3600
        report["measured_hours"] = measured
        print(f"whole search (MEASURED): {measured:.3f} {unit} ({search['search_s']:.0f} s)")
    else:
        print("whole search (MEASURED): not within this budget; the figure above is an extrapolation")
    if device.type == "cuda":
        report["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        print(f"# peak GPU memory: {report['peak_gpu_memory_mib']:.0f} MiB")
    report["total_s"] = time.perf_counter() - started
    print(f"# total: {report['total_s']:.0f} s of a {args.time_budget:.0f} s budget")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"# results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
