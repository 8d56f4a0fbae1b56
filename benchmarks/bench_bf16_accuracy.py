"""bf16 autocast against float32: the same held-out answers? Paired over seeds, on HAM10000.

``precision="auto"`` trains in bf16 on a CPU with native bf16 from width 64
(``skfairtune._training._precision.BF16_MIN_WIDTH``). This benchmark asks
whether that changes what the fitted model says on unseen patients: for each
model width, mask and seed, one ``FairTuneClassifier`` is fitted with
``precision="32"`` and one with ``precision="bf16"`` (everything else equal,
the same seed), both on the benchmark's train + validation images, and both
are scored on the held-out test images (overall ROC AUC and worst age-group
ROC AUC). The table gives the per-seed values, the mean paired difference
bf16 - float32 with a 95 % t-interval over seeds, and the seed-to-seed
standard deviation of float32 itself (what "within seed noise" is measured
against). Fit CPU seconds give the speed ratio of the same fits.

The backbone is the search benchmark's (``_common.pretrain_backbone``: a ViT
pre-trained on the shared face data at the same width, cached in
``benchmarks/.cache``); data and split are the search benchmark's HAM10000
split (malignant vs benign, age <= 60 / > 60).

Usage::

    python benchmarks/bench_bf16_accuracy.py                      # width 192, 3 seeds, full + linear
    python benchmarks/bench_bf16_accuracy.py --widths 64 --seeds 5
    python benchmarks/bench_bf16_accuracy.py --smoke              # synthetic images, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    CACHE_DIR,
    MODEL,
    BenchConfig,
    group_aucs,
    ham_available,
    ham_workload,
    paired_t_interval,
    pretrain_backbone,
    synthetic_workload,
)

PRECISIONS = ("32", "bf16")
#: Learning rate per mask: the rate the science benchmark's validation chose most often for it.
DEFAULT_LRS = {"full": 1e-4, "linear": 1e-2, "attention": 1e-3, "layernorm": 1e-2}


def fit_and_score(cfg: BenchConfig, work, checkpoint: Path, *, precision: str, mask: str, lr: float,
                  seed: int, epochs: int) -> dict:
    import torch

    from skfairtune import FairTuneClassifier

    clf = FairTuneClassifier(
        MODEL, model_kwargs=cfg.model_kwargs, checkpoint_path=str(checkpoint), mask=mask, lr=lr,
        max_epochs=epochs, batch_size=cfg.batch_size, weight_decay=cfg.weight_decay,
        warmup_fraction=cfg.warmup_fraction, class_weight="balanced", precision=precision,
        device="cpu", random_state=seed)
    started = time.process_time()
    clf.fit(work.paths[work.search], work.y[work.search])
    fit_cpu_s = time.process_time() - started
    with torch.no_grad():
        score = clf.predict_proba(work.paths[work.test])[:, 1]
    aucs = group_aucs(work.y[work.test], score, work.groups[work.test])
    return {"precision": precision, "used": clf.precision_, "mask": mask, "lr": lr, "seed": seed,
            "fit_cpu_s": fit_cpu_s, "test_overall_auc": aucs["overall"],
            "test_min_group_auc": min(v for k, v in aucs.items() if k != "overall")}


def summarise(rows: list[dict]) -> list[dict]:
    summary = []
    for width, mask in dict.fromkeys((r["width"], r["mask"]) for r in rows):
        cell = [r for r in rows if (r["width"], r["mask"]) == (width, mask)]
        by_seed = {}
        for r in cell:
            by_seed.setdefault(r["seed"], {})[r["precision"]] = r
        pairs = [p for p in by_seed.values() if set(p) == set(PRECISIONS)]
        entry = {"width": width, "mask": mask, "seeds": len(pairs)}
        for metric in ("test_overall_auc", "test_min_group_auc"):
            f32 = [p["32"][metric] for p in pairs]
            b16 = [p["bf16"][metric] for p in pairs]
            mean, low, high, *_ = paired_t_interval([b - f for b, f in zip(b16, f32)])
            entry[metric] = {"float32_mean": statistics.fmean(f32), "bf16_mean": statistics.fmean(b16),
                             "float32_seed_sd": statistics.stdev(f32) if len(f32) > 1 else math.nan,
                             "diff_mean": mean, "diff_ci": [low, high]}
        entry["cpu_speedup"] = (sum(p["32"]["fit_cpu_s"] for p in pairs)
                                / sum(p["bf16"]["fit_cpu_s"] for p in pairs))
        summary.append(entry)
    return summary


def print_summary(summary: list[dict]) -> None:
    print("\n| width | mask | seeds | metric | float32 mean | bf16 mean | bf16 - float32 (95 % CI) "
          "| float32 seed SD | fit CPU time, float32 / bf16 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for entry in summary:
        for metric, label in (("test_overall_auc", "overall AUC"), ("test_min_group_auc", "worst-group AUC")):
            m = entry[metric]
            print(f"| {entry['width']} | {entry['mask']} | {entry['seeds']} | {label} | {m['float32_mean']:.3f} "
                  f"| {m['bf16_mean']:.3f} | {m['diff_mean']:+.3f} [{m['diff_ci'][0]:+.3f}, {m['diff_ci'][1]:+.3f}] "
                  f"| {m['float32_seed_sd']:.3f} | {entry['cpu_speedup']:.2f}x |")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="synthetic images, a tiny model: seconds")
    parser.add_argument("--widths", type=int, nargs="+", default=[192])
    parser.add_argument("--masks", nargs="+", default=["full", "linear"], choices=sorted(DEFAULT_LRS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every fit and the summary here")
    args = parser.parse_args(argv)
    if args.seeds < 2 and not args.smoke:
        parser.error(f"--seeds must be at least 2 for an interval; got {args.seeds}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if not args.smoke and not ham_available():
        print("HAM10000 is not in ../shared/data/ham10000: run with --smoke for the synthetic version.",
              file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for width in args.widths:
            heads = max(1, width // 64)
            if args.smoke:
                cfg = BenchConfig.smoke_config(embed_dim=width, num_heads=heads, depth=2)
                work = synthetic_workload(cfg, Path(scratch) / "images")
                epochs, seeds = 1, range(max(1, min(args.seeds, 2)))
            else:
                cfg = BenchConfig(embed_dim=width, num_heads=heads)
                work = ham_workload(cfg)
                epochs, seeds = args.epochs, range(args.seeds)
            checkpoint, _ = pretrain_backbone(cfg, Path(scratch) if args.smoke else CACHE_DIR)
            print(f"# width {width}, heads {heads}, {cfg.model_kwargs}; {work.source}; "
                  f"fit on {len(work.search)} images, test {len(work.test)}; {epochs} epochs, "
                  f"{args.threads} thread(s); seeds {list(seeds)}", flush=True)
            for mask in args.masks:
                for seed in seeds:
                    # Alternate which precision fits first, so slow drifts of the machine hit both.
                    order = PRECISIONS if seed % 2 == 0 else PRECISIONS[::-1]
                    for precision in order:
                        row = fit_and_score(cfg, work, checkpoint, precision=precision, mask=mask,
                                            lr=DEFAULT_LRS[mask], seed=seed, epochs=epochs)
                        row["width"] = width
                        rows.append(row)
                        print(f"width {width} mask {mask:9s} seed {seed} {precision:>4} (used {row['used']}): "
                              f"overall {row['test_overall_auc']:.4f}  worst group {row['test_min_group_auc']:.4f}"
                              f"  fit {row['fit_cpu_s']:.1f} CPU s", flush=True)
    summary = summarise(rows)
    print_summary(summary)
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv[1:] if argv is None else argv, "rows": rows,
                                         "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
