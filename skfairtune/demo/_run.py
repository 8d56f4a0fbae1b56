"""The steps of ``skfairtune demo`` (described in :mod:`skfairtune.demo`): data, backbone, comparison, table."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .._utils._strata import strata_labels
from ..callbacks import GroupAUCScoring
from ..classifier import FairTuneClassifier
from ..compare import FAIRTUNE, FAIRTUNE_SEARCHED, VALIDATION_SELECTED, compare_methods
from ..datasets import load_ham10000, make_biased_images, make_pretraining_images
from ..export import model_card
from ..plotting import (
    plot_group_auc_curves,
    plot_mask_selection,
    plot_pareto,
    plot_search_convergence,
)
from ..search import BASELINES, FairTuneSearchCV
from ._table import FAIRTUNE_TITLE as _FAIRTUNE
from ._table import Row, format_table, noise_verdict

__all__ = ["configure_parser", "run", "pretrain_backbone", "DEMO_BACKBONE", "DEMO_MODEL_KWARGS"]

_ASSETS = Path(__file__).resolve().parents[1] / "_assets"
#: The shipped backbone: weights (no head) and how they were made.
DEMO_BACKBONE = _ASSETS / "demo_vit.safetensors"
_DEMO_BACKBONE_INFO = _ASSETS / "demo_vit.json"

_MODEL = "vit_tiny_patch16_224"
#: Architecture of the demo backbone: 12 blocks like ViT-B, so the mask space is the paper's 36 bits.
DEMO_MODEL_KWARGS = dict(img_size=16, patch_size=4, embed_dim=32, depth=12, num_heads=2)

_BASELINES = {
    "full": "full fine-tuning",
    "linear": "linear readout",
    "attention": "attention tuning",
    "layernorm": "LayerNorm tuning",
}
_HAM_SENSITIVE = ("age", "sex")


@dataclass(frozen=True)
class _Config:
    """Sizes of one demo run."""

    n_samples: int | None  # None: all images
    test_fraction: float
    image_size: int
    epochs: int
    batch_size: int
    cv: int
    trials: int
    lr_grid: tuple[float, ...]
    lr_range: tuple[float, float]
    startup_trials: int
    minority_fraction: float = 0.1  # synthetic data only


# Timed on 2 CPU cores: the default run takes about 2-3 minutes, --quick a few seconds of training.
_CONFIGS = {
    "synthetic": _Config(n_samples=1700, test_fraction=0.6, image_size=16, epochs=8, batch_size=64,
                         cv=3, trials=10, lr_grid=(3e-4, 1e-3, 3e-3), lr_range=(1e-4, 1e-2),
                         startup_trials=3),
    "ham10000": _Config(n_samples=3000, test_fraction=0.25, image_size=32, epochs=8, batch_size=64,
                        cv=3, trials=10, lr_grid=(3e-4, 1e-3, 3e-3), lr_range=(1e-4, 1e-2),
                        startup_trials=3),
}
_QUICK = dict(n_samples=300, test_fraction=0.4, epochs=4, cv=2, trials=3, lr_grid=(1e-3,), startup_trials=1)


# --------------------------------------------------------------------------- CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo`` arguments to ``parser`` and set ``func=run``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``demo`` subcommand's parser.

    Examples
    --------
    >>> import argparse
    >>> from skfairtune.demo import configure_parser
    >>> parser = argparse.ArgumentParser()
    >>> configure_parser(parser)
    >>> args = parser.parse_args(["--quick", "--out", "results"])
    >>> args.data, args.quick, args.out
    ('synthetic', True, 'results')
    """
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "examples:\n"
        "  skfairtune demo                                  # synthetic data, ~3 min on 2 CPU cores\n"
        "  skfairtune demo --data ham10000 --root data/ham10000 --sensitive age,sex\n"
    )
    parser.add_argument("--data", choices=("synthetic", "ham10000"), default="synthetic",
                        help="the embedded biased image generator (default) or HAM10000 from --root")
    parser.add_argument("--root", metavar="PATH",
                        help="HAM10000 folder (HAM10000_metadata.csv and the images); needed with --data ham10000")
    parser.add_argument("--sensitive", metavar="ATTRS",
                        help="HAM10000 groups: age, sex or age,sex (intersectional); default age")
    parser.add_argument("--trials", type=int, metavar="N",
                        help="new FairTuneSearchCV trials over the mask, after the tuned baselines "
                             "(default 10; 3 with --quick)")
    parser.add_argument("--n-samples", type=int, metavar="N",
                        help="images to use, stratified on label x group (default 1700 synthetic, of which "
                             "60%% are the test part; 3000 HAM10000; 0 = all)")
    parser.add_argument("--epochs", type=int, metavar="N", help="training epochs of every model (default 8)")
    parser.add_argument("--cv", type=int, metavar="K",
                        help="validation folds trained in lockstep for every trial (default 3)")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="your own backbone weights for the demo architecture (default: the shipped one)")
    parser.add_argument("--pretrain", action="store_true",
                        help="pre-train the backbone now instead of loading the shipped checkpoint")
    parser.add_argument("--out", default="fairtune-demo", metavar="DIR",
                        help="folder for the figures, results.csv and results.json (default ./fairtune-demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, splits, search and training (default 0)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="CPU threads for torch (default 1: the demo's tiny ViT gains nothing from more, "
                             "and several threads slow down badly on a busy machine)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny configuration (seconds; for tests, not for conclusions)")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"skfairtune demo: error: {message}", file=sys.stderr)
    return 2


def _resolve(args) -> tuple[_Config, tuple[str, ...] | None, Path | None]:
    """Check every argument before any expensive work; return the run's configuration."""
    config = _CONFIGS[args.data]
    if args.quick:
        config = replace(config, **_QUICK)
    for name in ("trials", "epochs", "cv", "n_samples", "threads"):
        value = getattr(args, name)
        low = {"cv": 2, "n_samples": 0}.get(name, 1)
        if value is not None and value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}; got {value}.")
    overrides = {name: getattr(args, name) for name in ("trials", "epochs", "cv") if getattr(args, name) is not None}
    if args.n_samples is not None:
        overrides["n_samples"] = args.n_samples or None
    config = replace(config, **overrides)
    if config.n_samples is None and args.data == "synthetic":
        raise ValueError("--n-samples 0 (all images) applies to --data ham10000; give a number of images.")

    sensitive = None
    root = None
    if args.data == "ham10000":
        if not args.root:
            raise ValueError("--data ham10000 needs --root PATH, the folder holding HAM10000_metadata.csv.")
        root = Path(args.root).expanduser()
        if not root.is_dir():
            raise ValueError(f"--root {str(root)!r} is not a folder; point it at the HAM10000 folder.")
        sensitive = tuple(s.strip() for s in (args.sensitive or "age").split(",") if s.strip())
        unknown = [s for s in sensitive if s not in _HAM_SENSITIVE]
        if unknown or not sensitive or len(set(sensitive)) != len(sensitive):
            raise ValueError(f"--sensitive {args.sensitive!r} is not valid; use age, sex or age,sex.")
    else:
        if args.root or args.sensitive:
            raise ValueError("--root and --sensitive apply to --data ham10000; the synthetic data has one "
                             "attribute, 'group' (majority / minority).")
    if args.checkpoint and args.pretrain:
        raise ValueError("pass either --checkpoint or --pretrain, not both.")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise ValueError(f"--checkpoint {args.checkpoint!r} does not exist.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out!r} is a file; give a folder.")
    return config, sensitive, root


# --------------------------------------------------------------------------- pieces
def _log(message: str = "") -> None:
    print(message, flush=True)


class _LogLines(logging.Handler):
    """Print compare_methods' progress lines as demo lines, with a header before FairTune's."""

    def __init__(self, before_fairtune: str):
        super().__init__(logging.INFO)
        self.before_fairtune = before_fairtune

    def emit(self, record):
        message = record.getMessage()
        if not message.startswith("compare_methods:"):
            return
        message = message.removeprefix("compare_methods: ")
        if message.startswith("FairTune"):
            _log(self.before_fairtune)
        _log("  " + message)


def pretrain_backbone(path, *, model_kwargs=None, n_samples: int = 8000, epochs: int = 25,
                      n_classes: int = 8, lr: float = 2e-3, random_state: int = 0, verbose: int = 0) -> dict:
    """Pre-train the demo ViT on the synthetic pattern task and save it without its head.

    The backbone is trained with :class:`~skfairtune.FairTuneClassifier`
    itself (every block and the embeddings trained) on
    :func:`~skfairtune.datasets.make_pretraining_images`, a task that shares
    low-level statistics with :func:`~skfairtune.datasets.make_biased_images`
    but not its labels, so that fine-tuning later starts from real features.

    Parameters
    ----------
    path : str or path-like
        Output ``.safetensors`` file (the head is left out, like a timm
        feature checkpoint; load it with ``checkpoint_path=path``).
    model_kwargs : dict, default=None
        Architecture, passed to ``timm.create_model("vit_tiny_patch16_224")``;
        ``None`` uses the demo's (12 blocks of width 32 on 16 px images).
    n_samples : int, default=8000
        Pre-training images.
    epochs : int, default=25
        Pre-training epochs.
    n_classes : int, default=8
        Pattern classes of the pre-training task.
    lr : float, default=2e-3
        Peak learning rate.
    random_state : int, default=0
        Seed of the data and the training.
    verbose : int, default=0
        1 prints one line per epoch.

    Returns
    -------
    info : dict
        How the weights were made: model, model_kwargs, task, sizes and the
        accuracy on 1,000 fresh pre-training images.

    Examples
    --------
    >>> import tempfile, os
    >>> from skfairtune.demo import pretrain_backbone
    >>> path = os.path.join(tempfile.mkdtemp(), "vit.safetensors")
    >>> info = pretrain_backbone(path, n_samples=64, epochs=1, n_classes=2,
    ...     model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2))
    >>> info["model_kwargs"]["depth"], info["n_classes"], os.path.exists(path)
    (1, 2, True)
    """
    from safetensors.torch import save_file

    model_kwargs = dict(DEMO_MODEL_KWARGS if model_kwargs is None else model_kwargs)
    size = model_kwargs.get("img_size", 16)
    train = make_pretraining_images(n_samples, image_size=size, n_classes=n_classes, random_state=random_state)
    held_out = make_pretraining_images(1000, image_size=size, n_classes=n_classes, random_state=random_state + 1)
    clf = FairTuneClassifier(
        _MODEL, pretrained=False, model_kwargs=model_kwargs, mask="full", train_embeddings=True,
        max_epochs=epochs, batch_size=128, lr=lr, warmup_fraction=0.1, augment=True,
        random_state=random_state, verbose=verbose,
    ).fit(train.images, train.target)
    accuracy = float(np.mean(clf.predict(held_out.images) == held_out.target))
    vit = clf.model_
    state = {k: v.detach().contiguous() for k, v in vit.state_dict().items() if not k.startswith("head.")}
    info = {
        "model": _MODEL, "model_kwargs": model_kwargs,
        "task": f"skfairtune.datasets.make_pretraining_images(n_classes={n_classes})", "n_classes": n_classes,
        "n_samples": n_samples, "epochs": epochs, "lr": lr, "random_state": random_state,
        "held_out_accuracy": round(accuracy, 4), "n_params": int(sum(v.numel() for v in state.values())),
    }
    save_file(state, str(path), metadata={"skfairtune": json.dumps(info)})
    return info


def _backbone(args, out: Path) -> tuple[str, dict, str]:
    """(checkpoint path, model_kwargs, description) of the backbone to fine-tune."""
    if args.checkpoint:
        return args.checkpoint, dict(DEMO_MODEL_KWARGS), f"your checkpoint {args.checkpoint}"
    if not args.pretrain and DEMO_BACKBONE.is_file():
        info = json.loads(_DEMO_BACKBONE_INFO.read_text()) if _DEMO_BACKBONE_INFO.is_file() else {}
        kwargs = info.get("model_kwargs", DEMO_MODEL_KWARGS)
        made = (f"pre-trained {info['epochs']} epochs on {info['n_samples']} images of {info['task']}, "
                f"held-out accuracy {info['held_out_accuracy']:.2f}") if info else "shipped"
        return str(DEMO_BACKBONE), kwargs, f"shipped checkpoint ({made})"
    if not args.pretrain:
        _log(f"  the shipped checkpoint {DEMO_BACKBONE} is missing; pre-training one now.")
    path = out / "backbone.safetensors"
    started = time.perf_counter()
    # Shorter than the shipped checkpoint's pre-training (8,000 images, 25 epochs): about a minute.
    sizes = dict(n_samples=300, epochs=2) if args.quick else dict(n_samples=4000, epochs=15)
    info = pretrain_backbone(path, random_state=args.seed, **sizes)
    return str(path), info["model_kwargs"], (
        f"pre-trained now in {time.perf_counter() - started:.0f} s on {info['task']} "
        f"(held-out accuracy {info['held_out_accuracy']:.2f}), saved to {path}")


def _load_data(args, config: _Config, sensitive, root):
    """Images, labels, sensitive features (DataFrame), sample groups (or None) and a description."""

    if args.data == "synthetic":
        # A 10% minority: rare enough that models fit it on the training set but generalise
        # worse to it (with 20%, the demo's pre-trained backbone shows hardly any gap).
        data = make_biased_images(config.n_samples, image_size=config.image_size,
                                  minority_fraction=config.minority_fraction, random_state=args.seed)
        return (data.images, data.target, data.sensitive_features, None,
                f"make_biased_images(minority_fraction={config.minority_fraction})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rows without age/sex are dropped, as documented
        data = load_ham10000(root, image_size=config.image_size, sensitive=list(sensitive),
                             n_samples=config.n_samples, random_state=args.seed)
    return data.images, data.target, data.sensitive_features, data.groups, f"HAM10000 from {root}"


def _test_split(y, sensitive, groups, fraction: float, seed: int):
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    strata = strata_labels(y, [sensitive[c].astype(str) for c in sensitive.columns])
    index = np.arange(len(y))
    if groups is not None:
        # One lesion (patient) never sits on both sides of the test split.
        folds = StratifiedGroupKFold(n_splits=max(2, round(1 / fraction)), shuffle=True, random_state=seed)
        train, test = next(folds.split(index, strata, groups))
        return train, test
    return train_test_split(index, test_size=fraction, stratify=strata, random_state=seed)


def _search(template, config: _Config, seed: int):
    """The FairTune search the demo compares, with the library's defaults but a short budget."""
    import optuna

    n_baseline_trials = len(BASELINES) * len(config.lr_grid)
    # TPE's 10 random start-up trials would spend most of a short budget at random.
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_baseline_trials + config.startup_trials)
    return FairTuneSearchCV(
        template, mask_space="ln-attn-mlp", lr_range=config.lr_range, baseline_lrs=config.lr_grid,
        n_trials=n_baseline_trials + config.trials, sampler=sampler, cv=config.cv, random_state=seed,
    )


def _save_figures(out: Path, search, curves: dict) -> list[str]:
    """Draw every figure into ``out``; return the file names written."""
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name):
        fig.savefig(out / name, dpi=130)
        plt.close(fig)
        written.append(name)

    n_complete = int(np.sum(np.asarray(search.cv_results_["state"], dtype=object) == "complete"))
    top_k = min(5, n_complete)
    depth = search.mask_space_.depth
    fig, axes = plt.subplots(2 if top_k > 1 else 1, 1, figsize=(max(6.5, 0.6 * depth + 3), 5.2 if top_k > 1 else 2.8),
                             layout="constrained", squeeze=False)
    plot_mask_selection(search, top_k=1, ax=axes[0, 0])
    if top_k > 1:
        plot_mask_selection(search, top_k=top_k, ax=axes[1, 0])
    save(fig, "mask_selection.png")
    save(plot_search_convergence(search).figure, "search_convergence.png")
    try:
        save(plot_pareto(search).figure, "pareto.png")
    except ValueError as exc:
        _log(f"  pareto.png skipped: {exc}")
    axes = plot_group_auc_curves(curves, valid_label="test")
    axes[0].figure.suptitle("Per-group AUC while training: training set vs held-out test set")
    save(axes[0].figure, "group_auc_curves.png")
    return written


def run(args) -> int:
    """Run the demo described by the parsed ``args``; return the exit code.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser set up with :func:`configure_parser`.

    Returns
    -------
    code : int
        0 on success, 2 on invalid arguments.
    """
    try:
        config, sensitive, root = _resolve(args)
    except ValueError as exc:
        return _fail(str(exc))
    import matplotlib

    matplotlib.use("Agg")  # a command writes files; never needs a display
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the demo prints its own progress
    import torch
    from sklearn.base import clone

    torch.set_num_threads(args.threads)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    seed = args.seed

    _log(f"[1/5] Data{' (quick configuration)' if args.quick else ''}")
    X, y, s, groups, source = _load_data(args, config, sensitive, root)
    train, test = _test_split(y, s, groups, config.test_fraction, seed)
    X_train, y_train, s_train = X[train], y[train], s.iloc[train].reset_index(drop=True)
    X_test, y_test, s_test = X[test], y[test], s.iloc[test].reset_index(drop=True)
    counts = s_train.astype(str).agg(" & ".join, axis=1).value_counts()
    _log(f"  {source}: {len(y)} images {X.shape[1]}x{X.shape[2]}, {np.mean(y):.0%} positive; "
         f"train {len(train)} / test {len(test)} (held out until the end; large, so that per-group test "
         "AUCs are precise)")
    _log(f"  groups ({', '.join(s.columns)}) in train: " + ", ".join(f"{k} {v}" for k, v in counts.items()))

    _log("[2/5] Backbone")
    checkpoint, model_kwargs, described = _backbone(args, out)
    model_kwargs = dict(model_kwargs, img_size=config.image_size)
    _log(f"  {_MODEL} {model_kwargs}: {described}")
    template = FairTuneClassifier(
        _MODEL, pretrained=False, checkpoint_path=checkpoint, model_kwargs=model_kwargs,
        max_epochs=config.epochs, batch_size=config.batch_size, class_weight="balanced", random_state=seed,
    )

    _log(f"[3/5] Baselines: learning rate of each preset tuned on {config.lr_grid} by validation "
         f"min-group AUC ({config.cv} folds pooled, {config.epochs} epochs), then refit on the training part")
    _log("  (A min-group AUC far below 0.5 at the smallest learning rates is a head still near its random start "
         "that reads the pre-trained features backwards; see docs/getting_started.md.)")
    stage_4 = (f"[4/5] FairTuneSearchCV over the 36-bit mask and the learning rate: its study starts from the "
               f"tuned baselines' trials (copied, not retrained), then runs {config.trials} new trials "
               "(TPE; successive halving from the end of the warm-up)")

    table, searches = _compare(template, config, seed, X, y, s, groups, train, test, stage_4)
    search = searches[FAIRTUNE][0]
    chosen = search.cv_results_["baseline"][search.best_index_]
    if isinstance(chosen, str):
        _log(f"  no new mask beat the tuned baselines on validation: FairTune keeps {_BASELINES[chosen]}")
    else:
        _log(f"  best mask ({search.best_score_:.3f}): {search.best_mask_.describe()}")

    _log("[5/5] Held-out test part: every method refit on the whole training part, then scored once")
    rows = _table_rows(table)
    # Per-group AUC while training, for ERM and FairTune's choice (two more fits, with the curves recorded).
    curves = {}
    fairtune_title = f"FairTune (kept {_BASELINES[chosen]})" if isinstance(chosen, str) else "FairTune mask"
    for title, params in (("full fine-tuning", searches["full"][0].best_params_),
                          (fairtune_title, search.best_params_)):
        clf = clone(template).set_params(mask_space=search.mask_space_, **params, callbacks=[
            GroupAUCScoring(X_train, y_train, sensitive_features=s_train, name="train"),
            GroupAUCScoring(X_test, y_test, sensitive_features=s_test, name="valid"),
        ])
        curves[title] = clf.fit(X_train, y_train)

    depth_units = search.mask_space_.n_bits
    table_text = format_table(rows, depth_units, "min-grp AUC",
                               _BASELINES.get(chosen) if isinstance(chosen, str) else None)
    _log()
    _log(f"Held-out test set ({len(test)} images; groups: {', '.join(s.columns)}). AUCs: higher is better; "
         "AUC gap, EOddsD, DPD: lower is better.")
    _log(table_text)
    _log("lr: tuned learning rate; val: validation min-group AUC over the pooled folds (the search objective); "
         "vs FairTune: the method's held-out min-group AUC minus FairTune's,\nwith a paired bootstrap 95% "
         "interval over the test images; EOddsD, DPD: at threshold 0.5; time: tuning + final fit (FairTune's "
         "excludes the baselines' tuning its study starts from).")
    _log(noise_verdict(rows))

    figures = _save_figures(out, search, curves)
    _write_results(out, rows, source, s, train, test, config, seed, args, model_kwargs, checkpoint, described,
                   search, figures, started)
    _write_model_card(out, search, table, X_test, y_test, s_test, seed)
    _log(f"\nWrote {', '.join(figures)}, results.csv, results.json and model_card.md to {out.resolve()} "
         f"(total {time.perf_counter() - started:.0f} s).")
    return 0


def _write_model_card(out, search, table, X_test, y_test, s_test, seed) -> None:
    """model_card.md (and .json) of FairTune's model: the held-out evidence and the comparison table."""
    card = model_card(search, X_test, y_test, sensitive_features=s_test, comparison=table, n_boot=200,
                      random_state=seed)
    card.save(out, name="model_card.md")


def _compare(template, config, seed, X, y, s, groups, train, test, stage_4):
    """compare_methods on the demo's one held-out split, the library's log shown as the demo's stage 4."""
    import optuna

    handler, library_log = _LogLines(stage_4), logging.getLogger("skfairtune")
    level = library_log.level
    library_log.addHandler(handler)
    library_log.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return compare_methods(
                _search(template, config, seed), X, y, sensitive_features=s, groups=groups,
                methods=tuple(_BASELINES), cv=[(train, test)], n_boot=1000, random_state=seed,
                return_searches=True)
    finally:
        library_log.removeHandler(handler)
        library_log.setLevel(level)


def _table_rows(table) -> list:
    """The demo's rows from compare_methods' table: the baselines, the validation-selected baseline,
    FairTune restricted to its searched masks, then FairTune as it chose."""
    rows = []
    named = [*_BASELINES.items(), (VALIDATION_SELECTED, VALIDATION_SELECTED), (FAIRTUNE_SEARCHED, FAIRTUNE_SEARCHED),
             (FAIRTUNE, _FAIRTUNE)]
    for name, title in named:
        if name not in table.index:
            continue
        result = table.loc[name]
        rows.append(Row(
            title, str(result["mask"]), float(result["lr"]), float(result["validation_score"]),
            auc=float(result["overall_auc"]), min_group_auc=float(result["min_group_auc"]),
            auc_gap=float(result["auc_gap"]), eoddsd=float(result["equalized_odds_difference"]),
            dpd=float(result["demographic_parity_difference"]),
            trainable_params=int(np.nan_to_num(float(result["n_trainable_params"]))),
            time_s=float(result["fit_time_s"]), min_group_auc_diff=float(result["min_group_auc_diff"]),
            diff_ci_low=float(result["min_group_auc_diff_ci_low"]),
            diff_ci_high=float(result["min_group_auc_diff_ci_high"]),
            ci_contains_zero=bool(result["ci_contains_zero"])))
    return rows


def _write_results(out, rows, source, s, train, test, config, seed, args, model_kwargs, checkpoint, described,
                   search, figures, started) -> None:
    """results.csv and results.json beside the figures."""
    import pandas as pd

    frame = pd.DataFrame([asdict(row) for row in rows])
    frame.to_csv(out / "results.csv", index=False)
    report = {
        "data": source, "sensitive_features": list(s.columns), "n_train": int(len(train)), "n_test": int(len(test)),
        "config": {**asdict(config), "seed": seed, "quick": bool(args.quick)},
        "backbone": {"model": _MODEL, "model_kwargs": model_kwargs, "checkpoint": checkpoint, "about": described},
        "best_mask": search.best_params_["mask"], "best_mask_description": search.best_mask_.describe(),
        "rows": frame.to_dict(orient="records"), "figures": figures,
        "total_time_s": round(time.perf_counter() - started, 1),
    }
    (out / "results.json").write_text(json.dumps(report, indent=2, default=float))
