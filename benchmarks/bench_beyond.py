"""Beyond one objective: multi-objective search, Pareto pruning and LoRA units, measured.

Usage::

    python benchmarks/bench_beyond.py                      # HAM10000 at 32 px, 12-block ViT, seeds 3 4 5
    python benchmarks/bench_beyond.py --smoke              # synthetic images, seconds (the tests run this)
    python benchmarks/bench_beyond.py --seeds 0 --jobs 1   # a dev seed, to choose settings

The set-up is the performance benchmark's (``_common.py``): the same HAM10000
images, split, UTKFace-pretrained checkpoint and training recipe. Per seed,
in one process and one after the other, on the same data, split, checkpoint
and trial budget, it runs:

- ``single``: ``FairTuneSearchCV(scoring="min_group_auc")`` (TPE, successive
  halving): the binary-mask search of the paper;
- ``mo_tpe``: ``scoring=["min_group_auc", "overall_auc"]`` (multi-objective
  TPE, Pareto successive halving);
- ``mo_random``: the same with ``sampler=optuna.samplers.RandomSampler(seed)``;
- ``mo_unpruned``: the same as ``mo_tpe`` with ``pruner="none"``;
- ``lora``: the single-objective search with ``lora_ranks`` (ternary units).

Then it retrains the single search's pick on the training split to read its
validation overall AUC (a single-objective search records only its own
objective; the trial's seed is the search's, so the retrained model is the
trial's), and refits the single search's pick and the multi-objective
search's ``refit="utopia"`` pick on training + validation to score them on
the held-out test split.

What it reports, per seed and over seeds (the four targets of issue 17):

1. whether the multi-objective front holds a trial at least as good as the
   single search's pick on validation worst-group AUC and better on overall
   AUC; both refits' test AUCs;
2. hypervolume over trials of ``mo_tpe`` and ``mo_random`` from the fixed
   reference point (0.5, 0.5) (chance on both AUCs): final value and the area
   under the curve (the mean over trials);
3. epochs trained by ``mo_tpe`` against ``mo_unpruned`` and their final
   hypervolumes;
4. whether the LoRA search found a trial with fewer trainable parameters than
   the single search's pick at equal or better validation worst-group AUC.

The seeds run in worker processes (``--jobs`` at a time); ``--smoke`` runs one
seed in this process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    CACHE_DIR,
    MODEL,
    SHARED_DATA,
    BenchConfig,
    Workload,
    baseline_masks,
    emit,
    finish_report,
    group_aucs,
    ham_available,
    ham_workload,
    pretrain_backbone,
    set_threads,
    synthetic_workload,
)

OBJECTIVES = ["min_group_auc", "overall_auc"]
#: Chance on both AUCs: a fixed hypervolume reference point shared by every search and seed.
REFERENCE_POINT = (0.5, 0.5)
# In this order: item 1 (single, mo_tpe) is complete first, the costliest search (no pruning) comes late.
SEARCHES = ("single", "mo_tpe", "mo_unpruned", "mo_random", "lora")
REPORT_SEEDS = (3, 4, 5)
#: Values closer than this count as equal (float noise between two trainings of one trial).
TOLERANCE = 1e-9


# --------------------------------------------------------------------------- one seed
def make_classifier(cfg: BenchConfig, checkpoint: str, seed: int, **overrides):
    from skfairtune import FairTuneClassifier

    params = dict(model_kwargs=cfg.model_kwargs, checkpoint_path=checkpoint, max_epochs=cfg.max_epochs,
                  batch_size=cfg.batch_size, weight_decay=cfg.weight_decay,
                  warmup_fraction=cfg.warmup_fraction, class_weight="balanced", device="cpu",
                  random_state=seed)
    params.update(overrides)
    return FairTuneClassifier(MODEL, **params)


def _search(cfg, checkpoint, seed, work, images, kind: str) -> dict:
    """Run one search of ``kind`` on the train / validation split; its trials and picks as plain data."""
    import numpy as np
    import optuna

    from skfairtune import FairTuneSearchCV
    from skfairtune.search._pareto import hypervolume_history

    multi = kind.startswith("mo_")
    params = dict(n_trials=cfg.n_trials, lr_range=cfg.lr_range, cv=work.cv(),
                  # The performance benchmark's baselines: its four bit masks, one sampled lr each.
                  baselines=tuple(baseline_masks(cfg.depth).values()), baseline_lrs=None,
                  n_bootstrap=0, random_state=seed, refit=False, progress_bar=False,
                  scoring=list(OBJECTIVES) if multi else "min_group_auc")
    if kind == "mo_random":
        params["sampler"] = optuna.samplers.RandomSampler(seed=seed)
    if kind == "mo_unpruned":
        params["pruner"] = "none"
    if kind == "lora":
        params["lora_ranks"] = tuple(cfg.extra.get("lora_ranks", (4, 8)))
    search = FairTuneSearchCV(make_classifier(cfg, checkpoint, seed), **params)
    idx = work.search
    started = time.perf_counter()
    search.fit(images[idx], work.y[idx], sensitive_features=work.groups[idx])
    elapsed = time.perf_counter() - started
    res = search.cv_results_
    order = np.argsort(np.asarray(res["trial_number"]), kind="stable")
    states = [str(res["state"][i]) for i in order]
    trials = []
    for i in order:
        p = dict(res["params"][i])
        row = {"number": int(res["trial_number"][i]), "state": str(res["state"][i]),
               "n_epochs": int(res["n_epochs"][i]), "mask": p["mask"], "lr": float(p["lr"]),
               "lora_rank": p.get("lora_rank"),
               "n_trainable": (None if not np.isfinite(res["n_trainable_params"][i])
                               else int(res["n_trainable_params"][i]))}
        names = OBJECTIVES if multi else ["min_group_auc"]
        column = (lambda n: f"mean_test_{n}") if multi else (lambda n: "mean_test_score")
        for name in names:
            value = float(res[column(name)][i])
            row[name] = value if np.isfinite(value) else None
        if multi:
            row["pareto_rank"] = int(res["pareto_rank"][i])
        trials.append(row)
    out = {"kind": kind, "search_s": elapsed, "epochs": int(np.sum(res["n_epochs"])),
           "n_pruned": states.count("pruned"), "n_complete": states.count("complete"),
           "n_failed": states.count("fail"), "trials": trials,
           "pick": trials[int(np.flatnonzero(order == search.best_index_)[0])]}
    if multi:
        matrix = np.array([[t[n] if t["state"] == "complete" and t[n] is not None else np.nan
                            for n in OBJECTIVES] for t in trials], dtype=float)
        history = _history(matrix, hypervolume_history)
        out.update(hypervolume_history=history.tolist(), final_hypervolume=float(history[-1]),
                   hypervolume_auc=float(history.mean()),
                   front=[t["number"] for t in trials if t.get("pareto_rank") == 0])
    return out


def _history(matrix, hypervolume_history):
    """Hypervolume after each trial from REFERENCE_POINT; 0 before the first complete trial."""
    import numpy as np

    history = np.zeros(len(matrix))
    complete = np.flatnonzero(np.isfinite(matrix).all(axis=1))
    if complete.size:
        history[complete[0]:] = hypervolume_history(matrix[complete[0]:], ["maximize", "maximize"],
                                                    reference_point=REFERENCE_POINT)
    return history


def _fit_and_score(cfg, checkpoint, seed, images, work, train_idx, eval_idx, pick: dict) -> dict:
    """Train the pick's (mask, lr, rank) on ``train_idx`` with the search's seed; AUCs on ``eval_idx``."""
    extra = {"lora_rank": pick["lora_rank"]} if pick.get("lora_rank") else {}
    clf = make_classifier(cfg, checkpoint, seed, mask=pick["mask"], lr=pick["lr"], **extra)
    started = time.perf_counter()
    clf.fit(images[train_idx], work.y[train_idx])
    score = clf.predict_proba(images[eval_idx])[:, 1]
    aucs = group_aucs(work.y[eval_idx], score, work.groups[eval_idx])
    return {"overall_auc": aucs["overall"], "min_group_auc": min(v for k, v in aucs.items() if k != "overall"),
            "fit_s": time.perf_counter() - started}


def run_seed(cfg: BenchConfig, work: Workload, checkpoint: str, seed: int, searches=SEARCHES, log=print,
             save=None) -> dict:
    """Every search of one seed, one after the other, then the retrain and the two refits.

    ``save(result)`` (if given) is called after each step, so a long run that
    is stopped keeps what it finished.
    """
    from skfairtune._images._decode import decode_images

    set_threads(cfg.resolved_threads())
    started = time.perf_counter()
    # Decoded once for all searches (each search would decode the same files again).
    images = decode_images(list(work.paths), size=cfg.image_size)
    result = {"seed": seed, "decode_s": time.perf_counter() - started, "searches": {}, "test": {}}
    found = result["searches"]
    save = save or (lambda r: None)

    def item_one():
        # The single search records only its objective: retrain its pick on the training split
        # (same seed, so the same model) to read its validation overall AUC; refit both picks.
        if "single_pick_val" not in result and "single" in found:
            result["single_pick_val"] = _fit_and_score(cfg, checkpoint, seed, images, work, work.train,
                                                       work.val, found["single"]["pick"])
        for kind in ("single", "mo_tpe"):
            if kind in found and kind not in result["test"]:
                result["test"][kind] = _fit_and_score(cfg, checkpoint, seed, images, work, work.search,
                                                      work.test, found[kind]["pick"])
        save(result)

    for kind in searches:
        found[kind] = _search(cfg, checkpoint, seed, work, images, kind)
        r = found[kind]
        log(f"  seed {seed} {kind}: {r['search_s']:.0f} s, {r['epochs']} epochs, "
            f"{r['n_pruned']} pruned", flush=True)
        result["verdicts"] = verdicts(result)
        save(result)
        if kind == "mo_tpe":
            item_one()
    item_one()
    result["total_s"] = time.perf_counter() - started
    result["verdicts"] = verdicts(result)
    save(result)
    return result


# --------------------------------------------------------------------------- verdicts
def verdicts(result: dict) -> dict:
    """The four targets, answered from one seed's results."""
    s = result["searches"]
    out = {}
    if "single" in s and "mo_tpe" in s and "single_pick_val" in result:
        best = s["single"]["pick"]
        overall = result["single_pick_val"]["overall_auc"]
        front = [t for t in s["mo_tpe"]["trials"] if t.get("pareto_rank") == 0 and t["state"] == "complete"]
        # A tolerance: the same trial trained twice differs in the last digits of its AUCs.
        better = [t for t in front if t["min_group_auc"] >= best["min_group_auc"] - TOLERANCE
                  and t["overall_auc"] > overall + TOLERANCE]
        out["front_beats_single"] = {
            "met": bool(better), "single_val_min_group_auc": best["min_group_auc"],
            "single_val_overall_auc": overall,
            "single_val_min_group_auc_retrained": result["single_pick_val"]["min_group_auc"],
            "mo_best_val_min_group_auc": max(t["min_group_auc"] for t in front),
            "front": [[t["number"], t["min_group_auc"], t["overall_auc"]] for t in front],
            "dominating_trials": [t["number"] for t in better]}
    if "mo_tpe" in s and "mo_random" in s:
        tpe, rnd = s["mo_tpe"], s["mo_random"]
        out["tpe_vs_random"] = {"final_tpe": tpe["final_hypervolume"], "final_random": rnd["final_hypervolume"],
                                "auc_tpe": tpe["hypervolume_auc"], "auc_random": rnd["hypervolume_auc"],
                                "met": tpe["hypervolume_auc"] > rnd["hypervolume_auc"]}
    if "mo_tpe" in s and "mo_unpruned" in s:
        pruned, full = s["mo_tpe"], s["mo_unpruned"]
        out["pruner"] = {"epochs_pruned": pruned["epochs"], "epochs_unpruned": full["epochs"],
                         "epoch_ratio": pruned["epochs"] / full["epochs"],
                         "hv_pruned": pruned["final_hypervolume"], "hv_unpruned": full["final_hypervolume"],
                         "epochs_met": pruned["epochs"] <= 0.6 * full["epochs"]}
    if "single" in s and "lora" in s:
        binary = s["single"]["pick"]
        lora = s["lora"]
        fewer = [t for t in lora["trials"] if t["state"] == "complete" and t["n_trainable"] is not None
                 and t["n_trainable"] < binary["n_trainable"]
                 and t["min_group_auc"] >= binary["min_group_auc"] - TOLERANCE]
        best_fewer = max(fewer, key=lambda t: (t["min_group_auc"], -t["n_trainable"]), default=None)
        out["lora"] = {"met": best_fewer is not None,
                       "binary_pick": _brief(binary), "lora_pick": _brief(lora["pick"]),
                       "best_with_fewer_params": _brief(best_fewer) if best_fewer else None,
                       "n_qualifying": len(fewer),
                       "n_qualifying_with_lora_units": sum("2" in t["mask"] for t in fewer)}
    return out


def _brief(trial: dict) -> dict:
    return {"number": trial["number"], "mask": trial["mask"], "lr": trial["lr"], "lora_rank": trial["lora_rank"],
            "n_trainable": trial["n_trainable"], "val_min_group_auc": trial["min_group_auc"],
            "n_lora_units": trial["mask"].count("2")}


# --------------------------------------------------------------------------- report
def _mean_sd(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {sd:.4f}"


def print_report(results: list[dict]) -> dict:
    seeds = [r["seed"] for r in results]
    print("\n== Searches (per seed) ==")
    print(f"{'seed':>4} {'search':<12}{'wall s':>8}{'epochs':>8}{'pruned':>8}{'pick val mgAUC':>16}"
          f"{'pick n_train':>14}{'final HV':>10}{'HV AUC':>9}")
    for r in results:
        for kind, s in r["searches"].items():
            pick = s["pick"]
            print(f"{r['seed']:>4} {kind:<12}{s['search_s']:>8.0f}{s['epochs']:>8}"
                  f"{s['n_pruned']:>5}/{len(s['trials']):<3}{pick['min_group_auc']:>16.4f}"
                  f"{pick['n_trainable'] or 0:>14}"
                  + (f"{s['final_hypervolume']:>10.4f}{s['hypervolume_auc']:>9.4f}" if "final_hypervolume" in s else ""))
    summary = {}
    print("\n   sampled (mask, lr) sequences identical to the single search's (same seed, trial slots reseeded):")
    for r in results:
        searches = r["searches"]
        if "single" not in searches:
            continue
        reference = [(t["mask"], round(t["lr"], 12)) for t in searches["single"]["trials"]]
        same = {kind: [(t["mask"], round(t["lr"], 12)) for t in s["trials"]] == reference
                for kind, s in searches.items() if kind != "single"}
        print(f"   seed {r['seed']}: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in same.items()))

    results_all = results

    def having(key):
        chosen = [r for r in results_all if key in r.get("verdicts", {})]
        return chosen, [r["verdicts"] for r in chosen]

    results, v = having("front_beats_single")
    if v:
        print("\n== 1. Does the multi-objective front beat the single search's pick? (validation) ==")
        print(f"{'seed':>4}{'single mgAUC':>14}{'single overall':>16}{'MO best mgAUC':>15}{'front size':>12}"
              f"{'dominating':>12}{'met':>6}")
        for r, x in zip(results, v):
            f = x["front_beats_single"]
            print(f"{r['seed']:>4}{f['single_val_min_group_auc']:>14.4f}{f['single_val_overall_auc']:>16.4f}"
                  f"{f['mo_best_val_min_group_auc']:>15.4f}{len(f['front']):>12}{len(f['dominating_trials']):>12}"
                  f"{'yes' if f['met'] else 'no':>6}")
            print(f"      (single pick retrained to read its overall AUC scored mgAUC "
                  f"{f['single_val_min_group_auc_retrained']:.4f}; the search recorded {f['single_val_min_group_auc']:.4f})")
        summary["front_beats_single"] = sum(x["front_beats_single"]["met"] for x in v)
        print(f"  met on {summary['front_beats_single']}/{len(v)} seeds")
        print("\n   held-out test (refit on train + validation):")
        print(f"{'seed':>4}{'single overall':>16}{'single mgAUC':>14}{'MO utopia overall':>19}{'MO utopia mgAUC':>17}")
        tested = [r for r in results if "single" in r["test"] and "mo_tpe" in r["test"]]
        for r in tested:
            t = r["test"]
            print(f"{r['seed']:>4}{t['single']['overall_auc']:>16.4f}{t['single']['min_group_auc']:>14.4f}"
                  f"{t['mo_tpe']['overall_auc']:>19.4f}{t['mo_tpe']['min_group_auc']:>17.4f}")
        for key in ("overall_auc", "min_group_auc"):
            print(f"  mean over seeds, test {key}: single {_mean_sd([r['test']['single'][key] for r in tested])}, "
                  f"MO utopia {_mean_sd([r['test']['mo_tpe'][key] for r in tested])}")
    results, v = having("tpe_vs_random")
    if v:
        print(f"\n== 2. Hypervolume, reference point {REFERENCE_POINT}: multi-objective TPE vs random ==")
        print(f"{'seed':>4}{'final TPE':>11}{'final random':>14}{'area TPE':>10}{'area random':>13}{'met':>6}")
        for r, x in zip(results, v):
            h = x["tpe_vs_random"]
            print(f"{r['seed']:>4}{h['final_tpe']:>11.4f}{h['final_random']:>14.4f}{h['auc_tpe']:>10.4f}"
                  f"{h['auc_random']:>13.4f}{'yes' if h['met'] else 'no':>6}")
        summary["tpe_vs_random"] = sum(x["tpe_vs_random"]["met"] for x in v)
        print(f"  final: TPE {_mean_sd([x['tpe_vs_random']['final_tpe'] for x in v])}, random "
              f"{_mean_sd([x['tpe_vs_random']['final_random'] for x in v])}; area (mean over trials) better on "
              f"{summary['tpe_vs_random']}/{len(v)} seeds")
    results, v = having("pruner")
    if v:
        print("\n== 3. Pareto successive halving vs no pruning (multi-objective TPE, same budget and seed) ==")
        print(f"{'seed':>4}{'epochs pruned':>15}{'unpruned':>10}{'ratio':>8}{'HV pruned':>11}{'HV unpruned':>13}")
        for r, x in zip(results, v):
            p = x["pruner"]
            print(f"{r['seed']:>4}{p['epochs_pruned']:>15}{p['epochs_unpruned']:>10}{p['epoch_ratio']:>8.2f}"
                  f"{p['hv_pruned']:>11.4f}{p['hv_unpruned']:>13.4f}")
        for r in results:
            pruned, full = r["searches"]["mo_tpe"], r["searches"]["mo_unpruned"]
            same = [t["mask"] for t in pruned["trials"]] == [t["mask"] for t in full["trials"]]
            kept = [n for n in full["front"] if n in pruned["front"]]
            print(f"   seed {r['seed']}: unpruned front trials {full['front']}, of which on the pruned front "
                  f"{kept}" + ("" if same else " (the two searches sampled different trials)")
                  + f"; best val mgAUC pruned {max(t['min_group_auc'] for t in pruned['trials'] if t['state'] == 'complete'):.4f}"
                  f", unpruned {max(t['min_group_auc'] for t in full['trials'] if t['state'] == 'complete'):.4f}")
        ratio = sum(x["pruner"]["epochs_pruned"] for x in v) / sum(x["pruner"]["epochs_unpruned"] for x in v)
        diffs = [x["pruner"]["hv_pruned"] - x["pruner"]["hv_unpruned"] for x in v]
        summary["pruner"] = {"epoch_ratio": ratio, "hv_diff": diffs}
        print(f"  epochs pruned / unpruned over all seeds: {ratio:.2f} (target <= 0.60); HV pruned - unpruned "
              f"per seed: {', '.join(f'{d:+.4f}' for d in diffs)}; sd of unpruned HV over seeds "
              f"{_mean_sd([x['pruner']['hv_unpruned'] for x in v]).split('+- ')[-1]}")
    results, v = having("lora")
    if v:
        print("\n== 4. LoRA units: fewer trainable parameters at equal or better validation mgAUC? ==")
        print(f"{'seed':>4} {'which':<26}{'trial':>6}{'n_trainable':>13}{'val mgAUC':>11}{'LoRA units':>12}{'rank':>6}")
        for r, x in zip(results, v):
            lo = x["lora"]
            for label, t in (("binary pick", lo["binary_pick"]), ("LoRA search pick", lo["lora_pick"]),
                             ("best with fewer params", lo["best_with_fewer_params"])):
                if t is None:
                    print(f"{r['seed']:>4} {label:<26}{'none':>6}")
                    continue
                print(f"{r['seed']:>4} {label:<26}{t['number']:>6}{t['n_trainable']:>13}{t['val_min_group_auc']:>11.4f}"
                      f"{t['n_lora_units']:>12}{t['lora_rank'] or '-':>6}")
            print(f"      qualifying trials: {lo['n_qualifying']} ({lo['n_qualifying_with_lora_units']} with LoRA units)")
        summary["lora"] = sum(x["lora"]["met"] for x in v)
        print(f"  met on {summary['lora']}/{len(v)} seeds")
    print(f"\n# seeds {seeds}" + ("" if all("total_s" in r for r in results_all) else
                                   " (some seeds unfinished: their finished parts are shown)"))
    return summary


# --------------------------------------------------------------------------- driver
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="synthetic data, tiny sizes, one seed, seconds")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"default {list(REPORT_SEEDS)} (smoke: 3)")
    parser.add_argument("--jobs", type=int, default=2, help="seeds run at once, one process each")
    parser.add_argument("--searches", nargs="+", choices=SEARCHES, default=list(SEARCHES))
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--n-train", type=int)
    parser.add_argument("--n-val", type=int)
    parser.add_argument("--n-test", type=int)
    parser.add_argument("--lora-ranks", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR,
                        help="where the pre-trained checkpoint is cached (e.g. another checkout's benchmarks/.cache)")
    parser.add_argument("--json", type=Path, help="also write all results to this JSON file")
    parser.add_argument("--out-dir", type=Path,
                        help="each seed writes seed<N>.json here after every step (a stopped run keeps them)")
    parser.add_argument("--report-from", type=Path, help="print the report from the seed<N>.json files of a folder")
    parser.add_argument("--worker-seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build_config(args) -> BenchConfig:
    overrides = {k: v for k, v in dict(n_train=args.n_train, n_val=args.n_val, n_test=args.n_test).items()
                 if v is not None}
    extra = {"lora_ranks": list(args.lora_ranks), "searches": list(args.searches)}
    if args.smoke:
        return BenchConfig.smoke_config(n_trials=min(args.n_trials, 6), max_epochs=min(args.max_epochs, 2),
                                        extra=extra, **overrides)
    return BenchConfig(n_trials=args.n_trials, max_epochs=args.max_epochs, threads=1, extra=extra, **overrides)


def _spawn(args, cfg: BenchConfig, work_path: Path, checkpoint: str, seed: int) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, str(Path(__file__).resolve()), "--worker-seed", str(seed),
               "--config-json", cfg.to_json(), "--workload", str(work_path), "--checkpoint", checkpoint]
    if args.out_dir is not None:
        command += ["--out-dir", str(args.out_dir)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _collect(proc: subprocess.Popen, seed: int) -> dict:
    out, err = proc.communicate()
    for line in out.splitlines():
        if line.startswith("  seed "):
            print(line)
    for line in out.splitlines():
        if line.startswith("@@RESULT "):
            return json.loads(line[len("@@RESULT "):])
    sys.stderr.write(out[-4000:] + err[-6000:])
    raise SystemExit(f"seed {seed} failed with exit code {proc.returncode}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker_seed is not None:
        cfg = BenchConfig.from_json(args.config_json)
        work = Workload.load(Path(args.workload))
        save = None
        if args.out_dir is not None:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            target = args.out_dir / f"seed{args.worker_seed}.json"
            save = lambda r: target.write_text(json.dumps(r, indent=1))  # noqa: E731
        emit(run_seed(cfg, work, args.checkpoint, args.worker_seed, searches=cfg.extra["searches"], save=save))
        return 0
    if args.report_from is not None:
        files = sorted(args.report_from.glob("seed*.json"), key=lambda f: int(f.stem[4:]))
        results = [json.loads(f.read_text()) for f in files]
        for r in results:
            r["verdicts"] = verdicts(r)
        summary = print_report(results)
        if args.json:
            args.json.write_text(json.dumps({"seeds": [r["seed"] for r in results], "results": results,
                                             "reference_point": list(REFERENCE_POINT), "summary": summary},
                                            indent=1))
        return 0
    cfg = build_config(args)
    seeds = args.seeds or ([3] if args.smoke else list(REPORT_SEEDS))
    if not cfg.smoke and not ham_available():
        print(f"HAM10000 is not at {SHARED_DATA / 'ham10000'}: the full benchmark needs it. "
              "Run with --smoke for the synthetic version.", file=sys.stderr)
        return 2
    started = time.perf_counter()
    from bench_search import _machine

    print(f"# bench_beyond  {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"# command: python benchmarks/bench_beyond.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"# machine: {_machine()}; load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"# model: {MODEL} {cfg.model_kwargs}; recipe: AdamW wd {cfg.weight_decay}, warm-up "
          f"{cfg.warmup_fraction:.2f} + cosine, batch {cfg.batch_size}, {cfg.max_epochs} epochs, balanced CE, "
          f"lr log-uniform {cfg.lr_range}; 1 torch thread per process")
    print(f"# every search: {cfg.n_trials} trials, the 4 baseline bit masks (full, linear, attention, layernorm) "
          f"first with a sampled lr, n_bootstrap=0; searches {list(cfg.extra['searches'])}; "
          f"lora_ranks {tuple(cfg.extra['lora_ranks'])}; seeds {seeds}")
    sys.stdout.flush()
    scratch = tempfile.TemporaryDirectory(prefix="bench_beyond_")
    cache_dir = Path(scratch.name) / "cache" if cfg.smoke else args.cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = synthetic_workload(cfg, Path(scratch.name) / "images") if cfg.smoke else ham_workload(cfg)
    print(f"# data: {work.source}; train {len(work.train)}, validation {len(work.val)}, test {len(work.test)}")
    set_threads(1)
    checkpoint, seconds = pretrain_backbone(cfg, cache_dir, log=lambda m: print(f"# {m}"))
    print(f"# backbone: {Path(checkpoint).name}" + (f" (pre-trained now in {seconds:.0f} s)" if seconds else " (cached)"))
    sys.stdout.flush()
    if cfg.smoke:
        results = []
        for seed in seeds:
            target = None if args.out_dir is None else args.out_dir / f"seed{seed}.json"
            if target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
            save = None if target is None else (lambda r, t=target: t.write_text(json.dumps(r, indent=1)))
            results.append(run_seed(cfg, work, str(checkpoint), seed, searches=cfg.extra["searches"], save=save))
    else:
        work_path = Path(scratch.name) / "workload.npz"
        work.save(work_path)
        results, running, queue = {}, {}, list(seeds)
        while queue or running:
            while queue and len(running) < max(1, args.jobs):
                seed = queue.pop(0)
                running[seed] = _spawn(args, cfg, work_path, str(checkpoint), seed)
            done = next((s for s, p in running.items() if p.poll() is not None), None)
            if done is None:
                time.sleep(2)
                continue
            results[done] = _collect(running.pop(done), done)
        results = [results[s] for s in seeds]
    report = {"config": json.loads(cfg.to_json()), "seeds": seeds, "reference_point": list(REFERENCE_POINT),
              "machine": _machine(), "results": results}
    report["summary"] = print_report(results)
    finish_report(report, started, args.json)
    scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
