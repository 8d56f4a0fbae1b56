"""Real HAM10000: fairness by age, by sex, and by age x sex (intersectional).

Loads ``../shared/data/ham10000`` with both sensitive attributes, binarised as
in the paper (malignant = akiec + mel; age ``<=60`` / ``>60``; female / male),
and shows that the choice of groups is just the ``sensitive_features`` you
pass:

1. the group sizes and positive rates (``data.DESCR``);
2. a FairTune search whose objective is the worst group's AUC over the groups
   of ``--sensitive`` (default ``age,sex``: the four intersectional groups of
   the paper's appendix A.4, passed as a two-column DataFrame), with
   lesion ids as ``groups`` so that no lesion is on both sides of a split;
3. the refit model on a held-out test split, reported by age, by sex and by
   age x sex: the worst intersectional group is usually worse than the worst
   group of either attribute alone.

The backbone is a small ViT from random weights unless ``--checkpoint`` gives
pre-trained ones (``bring_your_own_checkpoint.py --save``, same
``--width``/``--depth``).

Timing on 2 CPU cores: the defaults (3,000 images at 32 px, a ViT of width 64
and depth 4, 8 epochs, 12 trials) take about 5 min (``--quick``: 600 images at
16 px, about 10 s). Skips with a message when the data folder is absent.

Run: ``python examples/ham10000_groups.py [--quick] [--sensitive age|sex|age,sex] [--root PATH]``
"""

import argparse
import time
from pathlib import Path

import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from skfairtune import FairTuneClassifier, FairTuneSearchCV
from skfairtune.datasets import load_ham10000

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DATA / "ham10000", help="HAM10000 folder")
    parser.add_argument("--sensitive", default="age,sex", choices=("age", "sex", "age,sex"),
                        help="groups of the search objective (default: age,sex)")
    parser.add_argument("--quick", action="store_true", help="600 images, 16 px, tiny model, few trials")
    parser.add_argument("--n-samples", type=int, default=3000, help="stratified subset (0: all)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--checkpoint", type=Path, default=None, help="pre-trained timm state dict")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_samples, args.image_size, args.width, args.depth, args.epochs, args.trials = 600, 16, 32, 2, 2, 4
    if not (args.root / "HAM10000_metadata.csv").is_file():
        print(f"Skipping: HAM10000 is not at {args.root} (pass --root PATH; see ../shared/data/README.md).")
        return 0
    started = time.perf_counter()
    pd.set_option("display.width", 120)

    data = load_ham10000(args.root, image_size=args.image_size, sensitive=("age", "sex"),
                         n_samples=args.n_samples or None, random_state=0)
    print(data.DESCR.split("Citation")[0])
    sensitive = data.sensitive_features  # columns "age" and "sex"
    searched = sensitive[args.sensitive.split(",")]  # one column, or two for intersectional groups

    # Held-out test split: 20 %, stratified on label x age x sex, grouped by lesion.
    strata = data.target.astype(str) + sensitive.astype(str).agg("|".join, axis=1).to_numpy()
    splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    dev, test = next(splitter.split(data.images, strata, data.groups))

    weights = dict(checkpoint_path=args.checkpoint) if args.checkpoint else dict(pretrained=False)
    clf = FairTuneClassifier(
        "vit_tiny_patch16_224", **weights, max_epochs=args.epochs, batch_size=64,
        class_weight="balanced", random_state=0,
        model_kwargs=dict(img_size=args.image_size, patch_size=4, embed_dim=args.width,
                          depth=args.depth, num_heads=2))
    search = FairTuneSearchCV(clf, n_trials=args.trials, random_state=0, verbose=1,
                              lr_range=(1e-5, 1e-3) if args.checkpoint else (1e-4, 1e-2))
    search.fit(data.images[dev], data.target[dev], sensitive_features=searched.iloc[dev],
               groups=data.groups[dev])
    print(f"\nobjective: min-group AUC over {args.sensitive}; best validation {search.best_score_:.3f}; "
          f"mask {search.best_mask_.describe()}, lr {search.best_params_['lr']:.1e}")

    X_test, y_test = data.images[test], data.target[test]
    print("\nHeld-out test, one model, three ways of grouping:")
    for columns in (["age"], ["sex"], ["age", "sex"]):
        report = search.fairness_report(X_test, y_test, sensitive_features=sensitive.iloc[test][columns])
        worst = report.by_group["roc_auc"].idxmin()
        print(f"\nby {' x '.join(columns)}: min-group AUC {report.group_min()['roc_auc']:.3f} "
              f"(worst: {worst}), AUC gap {report.difference()['roc_auc']:.3f}")
        print(report.by_group[["count", "roc_auc", "tpr", "fpr", "selection_rate"]].round(3).to_string())
    print(f"\noverall test AUC {report.overall['roc_auc']:.3f}; total time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
