"""Does a searched mask beat the best baseline on patients it has not seen? Outer cross-validation.

FairTune against the paper's baselines on HAM10000 (malignant vs benign; age
<= 60 / > 60, and sex), with a ViT pre-trained on the shared UTKFace faces at
this benchmark's own input size (16 px, patch 4: 16 tokens, no resampled
position embedding).

Protocol (``docs/science.md``):

* **Outer folds.** Repeated stratified 5-fold cross-validation on label x age x
  sex (rows missing either attribute dropped), so the test parts of one repeat
  are disjoint. Repeat 0 is **development** (every choice is made there);
  repeats 1 and 2 are **report** folds (10 per attribute), never used to choose.
* **One run = one (phase, variant, attribute, repeat, fold)**, one process. Inside
  the outer training part, one inner split (80/20, stratified the same way) is
  the search's validation. One ``FairTuneSearchCV`` holds every method: the four
  baselines (ERM, linear readout, attention and LayerNorm tuning, public-code
  definitions) at four learning rates each (``prune_baselines=False``: every
  baseline is trained to the end), then 44 new masks. Each complete trial's
  model is scored on the outer test part (recorded on the trial, never read by
  the search).
* **Methods, all chosen on validation only:** each baseline at its best
  learning rate; the validation-selected baseline (best of those four);
  FairTune (the search's choice, baselines included, as the paper does); and
  FairTune restricted to its searched, non-preset masks. All models are those
  the trials trained on the inner training part (no refit), so every
  comparison is paired on the same training data and test images.
* The study lives in a journal file next to the results, so an interrupted
  run resumes where it stopped; a finished run appends one JSON line to
  ``benchmarks/results/science/runs.jsonl``. ``report`` rebuilds every table
  from whatever runs exist, saying how many.

Development variants share their baseline trials (copied into the second
variant's study with their rung records, not retrained).

    python benchmarks/bench_science.py run --phase dev --variant tpe --attribute age --fold 0
    python benchmarks/bench_science.py run --phase report --attribute sex --repeat 1 --fold 3
    python benchmarks/bench_science.py report            # tables from benchmarks/results/science/
    python benchmarks/bench_science.py docs --as-of "HH:MM UTC on DATE"   # rewrite those tables into the docs
    python benchmarks/bench_science.py run --smoke --out DIR   # synthetic data, tiny ViT, seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    CACHE_DIR,
    MODEL,
    SHARED_DATA,
    BenchConfig,
    corrected_cv_interval,
    paired_t_interval,
    pretrain_backbone,
    set_threads,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "science"
ATTRIBUTES = ("age", "sex")
PRESETS = ("full", "linear", "attention", "layernorm")
N_FOLDS = 5
#: Development variants: the sampler compared, every trial trained to the end (pruning is replayed).
VARIANTS = {
    "tpe": dict(sampler="tpe", pruner="none"),
    "independent_tpe": dict(sampler="independent_tpe", pruner="none"),
    # Report runs use the library's defaults as they stand when the run starts (recorded per run).
    "default": dict(sampler=None, pruner=None),
}
METRICS = ("overall_auc", "min_group_auc", "auc_gap", "equalized_odds_difference", "demographic_parity_difference")


# --------------------------------------------------------------------------- data and folds
def load_data(smoke: bool):
    """(uint8 images, labels, {attribute: groups}) with every row having both attributes."""
    if smoke:
        from skfairtune.datasets import make_biased_images

        data = make_biased_images(480, image_size=16, random_state=0)
        rng = np.random.default_rng(1)
        groups = {"age": data.sensitive_features["group"].astype(str).to_numpy(),
                  "sex": np.where(rng.random(480) < 0.5, "female", "male")}
        return data.images, np.asarray(data.target), groups
    from skfairtune.datasets import load_ham10000

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rows missing age or sex are dropped, as documented
        data = load_ham10000(SHARED_DATA / "ham10000", image_size=16, sensitive=list(ATTRIBUTES))
    groups = {a: data.sensitive_features[a].astype(str).to_numpy() for a in ATTRIBUTES}
    return data.images, np.asarray(data.target), groups


def _strata(y, groups, index=None):
    index = np.arange(len(y)) if index is None else index
    parts = [y[index].astype(str)] + [groups[a][index] for a in ATTRIBUTES]
    return np.array(["|".join(p) for p in zip(*parts)])


def outer_fold(y, groups, repeat: int, fold: int):
    """(train, test) of outer fold ``fold`` of repeat ``repeat`` (test parts disjoint within a repeat)."""
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(N_FOLDS, shuffle=True, random_state=1000 + repeat).split(y, _strata(y, groups))
    return list(folds)[fold]


def inner_split(y, groups, train, seed: int):
    """One 80/20 validation split of the outer training part, stratified on label x age x sex."""
    from sklearn.model_selection import train_test_split

    inner_train, inner_valid = train_test_split(np.arange(len(train)), test_size=0.2, random_state=seed,
                                                stratify=_strata(y, groups, train))
    return np.sort(inner_train), np.sort(inner_valid)


# --------------------------------------------------------------------------- the search
def backbone(args) -> Path:
    if args.smoke:
        cfg = BenchConfig.smoke_config(image_size=16, depth=4)
    else:
        cfg = BenchConfig(image_size=16, patch_size=4, pretrain_samples=10_000, pretrain_epochs=12)
    path, seconds = pretrain_backbone(cfg, CACHE_DIR, log=lambda m: print(m, flush=True))
    return path, cfg


def _classifier(args, checkpoint, cfg, seed):
    from skfairtune import FairTuneClassifier

    return FairTuneClassifier(MODEL, pretrained=False, checkpoint_path=str(checkpoint),
                              model_kwargs=cfg.model_kwargs, max_epochs=args.epochs, batch_size=64,
                              class_weight="balanced", device="cpu", random_state=seed,
                              # Images are decoded at the model's size: used as they are (no timm
                              # resize-and-crop), as every run of this benchmark so far.
                              timm_transform={"crop_pct": 1.0})


def _record_test_scores(X_test, y_test, groups_test):
    """Score every complete trial's model on the outer test part, for both attributes.

    Written on the trial as ``bench_test``; nothing in the search reads it.
    """
    from skfairtune.search._objective import Objective
    from skfairtune.compare import _held_out_metrics

    original = Objective._run_epochs

    def run_epochs(self, folds, trial=None):
        out = original(self, folds, trial)  # raises TrialPruned for a pruned trial: nothing recorded
        if trial is not None:
            trainer = folds[0].trainer
            proba = trainer.predict_proba(trainer.model_inputs(X_test))[:, 1]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores = {a: _held_out_metrics(y_test, proba, (proba >= 0.5).astype(int), groups_test[a], 1)
                          for a in ATTRIBUTES}
            trial.set_user_attr("bench_test", scores)
        return out

    Objective._run_epochs = run_epochs
    return lambda: setattr(Objective, "_run_epochs", original)


def _study_name(phase, variant, attribute, repeat, fold):
    return f"{phase}-{variant}-{attribute}-r{repeat}-f{fold}"


def _copy_baselines(source_storage, source_name, storage, target_name, sampler, pruner, epochs):
    """A new study holding the complete baseline trials of ``source_name`` (with rung records)."""
    import optuna

    from skfairtune.search._baselines import copy_baseline_trial

    source = optuna.load_study(study_name=source_name, storage=source_storage)
    baselines = [t for t in source.trials if t.user_attrs.get("baseline") and t.state.name == "COMPLETE"]
    target = optuna.create_study(study_name=target_name, storage=storage, sampler=sampler, pruner=pruner,
                                 direction="maximize")
    for trial in baselines:
        copy_baseline_trial(target, trial, baseline=trial.user_attrs["baseline"], source_study=source_name,
                            presets=PRESETS, pruner=pruner, max_epochs=epochs,
                            extra_user_attrs={"bench_test": trial.user_attrs.get("bench_test")})
    return target, len(baselines)


def run(args) -> dict:
    import optuna

    from skfairtune import FairTuneSearchCV
    from skfairtune.search._pruners import make_pruner, make_sampler

    set_threads(args.threads)
    X, y, groups = load_data(args.smoke)
    train, test = outer_fold(y, groups, args.repeat, args.fold)
    seed = 100 * args.repeat + args.fold
    inner = inner_split(y, groups, train, seed)
    checkpoint, cfg = backbone(args)
    clf = _classifier(args, checkpoint, cfg, seed)
    variant = dict(VARIANTS[args.variant])
    if variant["pruner"] is None:
        import inspect

        variant["pruner"] = inspect.signature(FairTuneSearchCV).parameters["pruner"].default
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(out / f"{_study_name(args.phase, args.variant, args.attribute, args.repeat, args.fold)}.journal")))
    name = _study_name(args.phase, args.variant, args.attribute, args.repeat, args.fold)
    n_baselines = len(PRESETS) * len(args.baseline_lrs)
    search = FairTuneSearchCV(
        clf, n_trials=n_baselines + args.new_masks, cv=[inner], scoring="min_group_auc",
        baseline_lrs=tuple(args.baseline_lrs), lr_range=(min(args.baseline_lrs), max(args.baseline_lrs)),
        prune_baselines=False, sampler=variant["sampler"], pruner=variant["pruner"], refit=False,
        n_bootstrap=args.n_bootstrap, random_state=seed, progress_bar=False, verbose=1)
    first = next(iter(VARIANTS))
    if args.phase == "dev" and args.variant != first and name not in optuna.get_all_study_names(storage):
        # The baselines do not depend on the sampler: copy the first variant's instead of retraining.
        source_storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
            str(out / f"{_study_name('dev', first, args.attribute, args.repeat, args.fold)}.journal")))
        pruner = make_pruner(variant["pruner"], args.epochs, clf.warmup_fraction)
        sampler = make_sampler(variant["sampler"], seed, n_baseline_trials=n_baselines)
        source_name = _study_name("dev", first, args.attribute, args.repeat, args.fold)
        _copied, n_copied = _copy_baselines(source_storage, source_name, storage, name, sampler, pruner, args.epochs)
        if n_copied < n_baselines:
            raise SystemExit(f"the first variant's study has {n_copied} of {n_baselines} complete baselines: "
                             f"run --variant {first} for this fold first.")
    if name in optuna.get_all_study_names(storage) and args.phase == "dev" and args.variant != first:
        study = optuna.load_study(study_name=name, storage=storage,
                                  sampler=make_sampler(variant["sampler"], seed, n_baseline_trials=n_baselines),
                                  pruner=make_pruner(variant["pruner"], args.epochs, clf.warmup_fraction))
        search.set_params(study=study)
    else:
        search.set_params(storage=storage, study_name=name)
    restore = _record_test_scores(X[test], y[test], {a: g[test] for a, g in groups.items()})
    started = time.perf_counter()
    try:
        search.fit(X[train], y[train], sensitive_features=groups[args.attribute][train])
    finally:
        restore()
    result = summarise(search.study_, attribute=args.attribute, epochs=args.epochs)
    result.update(phase=args.phase, variant=args.variant, attribute=args.attribute, repeat=args.repeat,
                  fold=args.fold, seed=seed, n_train=int(len(inner[0])), n_valid=int(len(inner[1])),
                  n_test=int(len(test)), sampler=repr(search.study_.sampler.__class__.__name__),
                  pruner=variant["pruner"], wall_s=time.perf_counter() - started, smoke=args.smoke)
    with open(out / "runs.jsonl", "a") as fh:
        fh.write(json.dumps(result, default=float) + "\n")
    return result


# --------------------------------------------------------------------------- summaries
def _complete(study):
    return [t for t in study.trials if t.state.name == "COMPLETE" and "bench_test" in t.user_attrs]


def _pick(trials):
    """The best validation score, earliest on ties (the search's ``selection="best"``)."""
    return max(trials, key=lambda t: (t.value, -t.number)) if trials else None


def _row(trial, attribute):
    if trial is None:
        return None
    return {"trial": trial.number, "val": trial.value, "baseline": trial.user_attrs.get("baseline"),
            "lr": trial.params.get("lr"), "mask": (trial.user_attrs.get("params") or {}).get("mask"),
            "n_trainable_params": trial.user_attrs.get("n_trainable_params"),
            **trial.user_attrs["bench_test"][attribute]}


def replay_pruning(trials, rule_first_rung, epochs, reduction_factor=4):
    """(trials still complete, epochs trained) had successive halving judged these unpruned trials.

    Optuna's rule, replayed in trial order on the recorded validation curves;
    baselines compete at every rung but are never pruned (prune_baselines=False).
    The sampler's proposals are those of the unpruned run: how TPE would have
    reacted to pruned trials is not replayed.
    """
    rungs = {}
    survivors, spent = [], 0
    for trial in sorted(trials, key=lambda t: t.number):
        curve = trial.intermediate_values
        alive, rung, trained = True, 0, epochs
        step = rule_first_rung
        while rule_first_rung and step < epochs:
            value = curve[step]
            competing = rungs.setdefault(rung, [])
            competing.append(value)
            index = max(len(competing) // reduction_factor - 1, 0)
            if value < sorted(competing, reverse=True)[index] and not trial.user_attrs.get("baseline"):
                alive, trained = False, step
                break
            rung += 1
            step = rule_first_rung * reduction_factor ** rung
        spent += trained
        if alive:
            survivors.append(trial)
    return survivors, spent


def summarise(study, *, attribute, epochs) -> dict:
    import math

    trials = _complete(study)
    base = {p: _pick([t for t in trials if t.user_attrs.get("baseline") == p]) for p in PRESETS}
    chosen_baseline = _pick([t for t in base.values() if t is not None])
    searched = [t for t in trials if not t.user_attrs.get("baseline")]
    methods = {p: _row(t, attribute) for p, t in base.items()}
    methods["val_selected_baseline"] = _row(chosen_baseline, attribute)
    methods["fairtune"] = _row(_pick(trials), attribute)
    methods["fairtune_searched"] = _row(_pick(searched), attribute)
    rules = {"none": 0, "successive_halving": math.ceil(epochs / 3), "late_successive_halving": math.ceil(epochs / 2)}
    pruning = {}
    for rule, first_rung in rules.items():
        survivors, spent = replay_pruning(trials, first_rung, epochs)
        pruning[rule] = {"epochs": spent, "fairtune": _row(_pick(survivors), attribute),
                         "fairtune_searched": _row(_pick([t for t in survivors if not t.user_attrs.get("baseline")]),
                                                   attribute)}
    full_curves = {str(t.params.get("lr")): [s[0] for s in t.user_attrs.get("epoch_split_scores", [])]
                   for t in trials if t.user_attrs.get("baseline") == "full"}
    return {"methods": methods, "pruning_replay": pruning, "full_val_curves": full_curves,
            "n_complete": len(trials), "n_searched": len(searched),
            "cpu_s": float(sum(t.user_attrs.get("fit_time", 0.0) for t in trials))}


# --------------------------------------------------------------------------- tables
def _load_runs(folder: Path):
    runs = []
    path = folder / "runs.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                runs.append(json.loads(line))
    latest = {}
    for run_ in runs:  # a run repeated (resumed, re-summarised) counts once: its last line
        latest[(run_["phase"], run_["variant"], run_["attribute"], run_["repeat"], run_["fold"])] = run_
    return list(latest.values())


COMPARISONS = (
    ("FairTune - ERM", "fairtune", "full"),
    ("FairTune - linear readout", "fairtune", "linear"),
    ("FairTune - attention tuning", "fairtune", "attention"),
    ("FairTune - LayerNorm tuning", "fairtune", "layernorm"),
    ("FairTune - validation-selected baseline", "fairtune", "val_selected_baseline"),
    ("FairTune searched-only - validation-selected baseline", "fairtune_searched", "val_selected_baseline"),
)


def report(folder: Path, *, out=print) -> dict:
    """Markdown tables of every phase, variant and attribute found in ``folder``."""
    runs = _load_runs(folder)
    tables = {}
    for key in sorted({(r["phase"], r["variant"], r["attribute"]) for r in runs}):
        tables[key] = report_block(runs_of(runs, *key), *key, out=out)
    if not runs:
        out("no finished runs yet")
    return tables


def runs_of(runs, phase: str, variant: str, attribute: str) -> list:
    """The runs of one (phase, variant, attribute), in (repeat, fold) order."""
    return sorted((r for r in runs if (r["phase"], r["variant"], r["attribute"]) == (phase, variant, attribute)),
                  key=lambda r: (r["repeat"], r["fold"]))


def report_block(group, phase: str, variant: str, attribute: str, *, out=print) -> dict:
    """One (phase, variant, attribute)'s tables; returns each comparison's paired interval."""
    out(f"\n### {phase} / {variant} / {attribute}: {len(group)} outer folds "
        "(" + ", ".join(f"r{r['repeat']}f{r['fold']}" for r in group) + ")\n")
    out("| method | " + " | ".join(METRICS) + " | chosen |")
    out("|---|" + "---|" * (len(METRICS) + 1))
    for method in (*PRESETS, "val_selected_baseline", "fairtune", "fairtune_searched"):
        rows = [r["methods"].get(method) for r in group]
        rows = [row for row in rows if row]
        if not rows:
            continue
        means = [np.mean([row[m] for row in rows if row[m] is not None and np.isfinite(row[m])]) for m in METRICS]
        chosen = ", ".join(sorted({str(row.get("baseline") or "searched") for row in rows}))
        out(f"| {method} | " + " | ".join(f"{v:.3f}" for v in means) + f" | {chosen} |")
    out("\nPaired differences of held-out worst-group AUC over folds (mean, 95 % t-interval, power for +0.02; "
        "the corrected interval allows for the training data the folds share):\n")
    out("| comparison | mean | 95 % CI | corrected 95 % CI | folds | power (+0.02) |")
    out("|---|---|---|---|---|---|")
    # Each run trains on its outer training part (inner training + validation) and tests on the rest.
    test_to_train = float(np.mean([r["n_test"] / (r["n_train"] + r["n_valid"]) for r in group]))
    entry = {}
    for label, a, b in COMPARISONS:
        diffs = [(r["methods"][a] or {}).get("min_group_auc", np.nan) - (r["methods"][b] or {}).get("min_group_auc", np.nan)
                 if r["methods"].get(a) and r["methods"].get(b) else None for r in group]
        mean, low, high, power, n = paired_t_interval(diffs)
        corrected = corrected_cv_interval(diffs, test_to_train)
        entry[label] = dict(mean=mean, low=low, high=high, power=power, n=n, corrected=corrected)
        out(f"| {label} | {mean:+.3f} | [{low:+.3f}, {high:+.3f}] | [{corrected[0]:+.3f}, {corrected[1]:+.3f}] "
            f"| {n} | {power:.2f} |")
    if phase == "dev":
        out("\nPruning rules replayed on the unpruned trials (mean over folds):\n")
        out("| rule | epochs trained | FairTune worst-group AUC | searched-only worst-group AUC |")
        out("|---|---|---|---|")
        for rule in ("successive_halving", "late_successive_halving", "none"):
            rows = [r["pruning_replay"][rule] for r in group]
            ft = [x["fairtune"]["min_group_auc"] for x in rows if x["fairtune"]]
            fs = [x["fairtune_searched"]["min_group_auc"] for x in rows if x["fairtune_searched"]]
            out(f"| {rule} | {np.mean([x['epochs'] for x in rows]):.0f} | {np.mean(ft):.3f} | {np.mean(fs):.3f} |")
        _development_evidence(group, out)
    else:
        _per_fold(group, attribute, out)
    return entry


BASELINE_NAMES = {"full": "ERM", "linear": "linear readout", "attention": "attention tuning",
                  "layernorm": "LayerNorm tuning"}


def _per_fold(group, attribute, out) -> None:
    """Per report fold: FairTune against the validation-selected baseline, on held-out worst-group AUC.

    The last column is FairTune's lead on the validation split it was chosen on: set beside the test
    difference, it shows how much of that lead the selection itself produced.
    """
    out("\nPer fold, held-out worst-group AUC (the baseline is the one with the best validation score):\n")
    out("| fold | FairTune (what it chose) | validation-selected baseline | FairTune - baseline "
        "| searched-only - baseline | the same difference on validation |")
    out("|---|---|---|---|---|---|")
    for row in per_fold_rows(group, attribute):
        out(row)


def per_fold_rows(group, attribute) -> list[str]:
    """The Markdown rows of :func:`_per_fold`'s table, one per report fold."""
    rows = []
    for run_ in group:
        methods = run_["methods"]
        ft, base, searched = methods["fairtune"], methods["val_selected_baseline"], methods.get("fairtune_searched")
        chose = BASELINE_NAMES.get(ft.get("baseline"), ft.get("baseline")) if ft.get("baseline") else "searched mask"
        searched_diff = f"{searched['min_group_auc'] - base['min_group_auc']:+.3f}" if searched else "none finished"
        rows.append(f"| {attribute} r{run_['repeat']}f{run_['fold']} | {ft['min_group_auc']:.3f} ({chose}) | "
                    f"{base['min_group_auc']:.3f} ({BASELINE_NAMES[base['baseline']]}) | "
                    f"{ft['min_group_auc'] - base['min_group_auc']:+.3f} | {searched_diff} | "
                    f"{ft['val'] - base['val']:+.3f} |")
    return rows


def _development_evidence(group, out) -> None:
    """Per development fold: does ERM over-fit by the last epoch, and which learning rates win on validation."""
    out("\nPer fold: ERM's validation worst-group AUC at its chosen rate (peak, its epoch, last epoch) and the "
        "validation-chosen learning rate of every method:\n")
    out("| fold | ERM peak (epoch) | ERM last | over-fits (peak - last >= 0.005) | "
        + " | ".join(f"lr {m}" for m in (*PRESETS, "fairtune_searched")) + " |")
    out("|---|---|---|---|" + "---|" * (len(PRESETS) + 1))
    for run_ in group:
        erm = run_["methods"]["full"]
        curve = run_["full_val_curves"].get(str(erm["lr"]), []) if erm else []
        peak = max(curve) if curve else float("nan")
        epoch = curve.index(peak) + 1 if curve else 0
        last = curve[-1] if curve else float("nan")
        rates = [f"{(run_['methods'][m] or {}).get('lr') or float('nan'):.1e}" for m in (*PRESETS, "fairtune_searched")]
        out(f"| r{run_['repeat']}f{run_['fold']} | {peak:.3f} ({epoch}) | {last:.3f} | {peak - last >= 0.005} | "
            + " | ".join(rates) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("run", "report", "docs"))
    parser.add_argument("--phase", choices=("dev", "report"), default="dev")
    parser.add_argument("--variant", choices=tuple(VARIANTS), default=None,
                        help="dev: the sampler compared (default: tpe); report: always 'default'")
    parser.add_argument("--attribute", choices=ATTRIBUTES, default="age")
    parser.add_argument("--repeat", type=int, default=None, help="dev: 0 (always); report: 1 or 2")
    parser.add_argument("--fold", type=int, default=0, choices=range(N_FOLDS))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--new-masks", type=int, default=44)
    parser.add_argument("--baseline-lrs", type=float, nargs="+", default=[1e-5, 1e-4, 1e-3, 1e-2])
    parser.add_argument("--n-bootstrap", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--smoke", action="store_true", help="synthetic data, a tiny ViT, 2 epochs, a few trials")
    docs = parser.add_argument_group("docs", "rewrite docs/science.md's report section and README's status")
    docs.add_argument("--as-of", help="when the results were taken, e.g. '22:40 UTC on 7 December 2026'")
    docs.add_argument("--resumed", nargs="*", default=[], help="report runs resumed from a journal, e.g. 'sex r2f1'")
    docs.add_argument("--remaining", default="The remaining report folds were still running when this was written.",
                      help="a sentence on what has not run")
    docs.add_argument("--docs", default=str(REPO / "docs" / "science.md"))
    docs.add_argument("--readme", default=str(REPO / "README.md"))
    args = parser.parse_args(argv)
    if args.command == "report":
        report(Path(args.out))
        return 0
    if args.command == "docs":
        if not args.as_of:
            parser.error("docs needs --as-of, the time the results were taken (e.g. '22:40 UTC on 7 December 2026').")
        import _science_docs

        _science_docs.write(Path(args.out), docs=Path(args.docs), readme=Path(args.readme), as_of=args.as_of,
                            resumed=args.resumed, remaining=args.remaining)
        return 0
    if args.variant is None:
        args.variant = "tpe" if args.phase == "dev" else "default"
    if args.repeat is None:
        args.repeat = 0 if args.phase == "dev" else 1
    if (args.phase == "dev") != (args.repeat == 0) or (args.phase == "report") != (args.variant == "default"):
        parser.error("development runs use repeat 0 and a dev variant; report runs use repeats >= 1 and "
                     "--variant default")
    if args.smoke:
        args.epochs, args.new_masks, args.baseline_lrs, args.n_bootstrap = 2, 3, [1e-3, 1e-2], 20
    print(f"bench_science: {vars(args)}", flush=True)
    result = run(args)
    report(Path(args.out))
    return 0 if result["n_complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
