"""Figures of a FairTune search, after the paper's (Dutt et al., ICLR 2024).

- :func:`plot_mask_selection`: which LayerNorm / attention / MLP units the
  best mask (or the top-k masks) fine-tunes, per block (paper figure 4);
- :func:`plot_search_convergence`: the objective of every trial and the best
  so far, pruned trials marked (figure 5);
- :func:`plot_pareto`: trials on the overall-AUC vs objective plane, with the
  Pareto front.

The figures of fitted estimators and reports are in :mod:`._reports`.

Each function draws on a given Matplotlib ``ax`` (or creates a figure) and
returns the axes; save with ``ax.figure.savefig(path)``. Matplotlib is
imported only when a function is called.
"""

from __future__ import annotations

import math

import numpy as np

from ..distributed._trial_record import TrialRecord
from ..masks._lora import resolve_states
from . import _pareto  # the objective a multi-objective search is drawn by

__all__ = [
    "plot_mask_selection",
    "plot_search_convergence",
    "plot_pareto",
]

_UNIT_LABELS = {"ln": "LayerNorm", "attn": "Attention", "mlp": "MLP", "norm1": "norm1",
                "norm2": "norm2", "block": "Block"}
_SCORING_LABELS = {"min_group_auc": "min-group AUC", "neg_auc_gap": "- AUC gap",
                   "overall_auc": "overall AUC", "roc_auc": "ROC AUC"}
_COMPLETE_COLOR = "tab:blue"
_BEST_COLOR = "tab:orange"
_PRUNED_COLOR = "0.6"
_FAILED_COLOR = "tab:red"


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _check_search(search, caller: str) -> dict:
    results = getattr(search, "cv_results_", None)
    if results is None:
        raise ValueError(
            f"{caller} needs a fitted FairTuneSearchCV; got an unfitted {type(search).__name__}: "
            "call search.fit(X, y, sensitive_features=...) first."
        )
    return _pareto.single_objective_results(search, results, caller)  # several objectives: one of them


def _scoring_label(search, *, capital: bool = False) -> str:
    name, note = _pareto.scored_objective(search)
    return ("Validation " if capital else "validation ") + _SCORING_LABELS.get(name, name) + note


def _complete_order(results) -> np.ndarray:
    """Rows of complete trials with a finite score, best first (ties: earlier trial)."""
    state = np.asarray(results["state"], dtype=object)
    score = np.asarray(results["mean_test_score"], dtype=float)
    rows = np.flatnonzero((state == "complete") & np.isfinite(score))
    return rows[np.lexsort((rows, -score[rows]))]


def _baseline_names(results) -> list:
    names = results.get("baseline")
    if names is None:
        return [None] * len(results["state"])
    return [n if isinstance(n, str) else None for n in names]


def plot_mask_selection(search, *, top_k: int = 1, ax=None, cmap: str = "Greens"):
    """Show which units of each block the best masks fine-tune (the paper's figure 4).

    A heatmap with one row per unit kind (LayerNorm, attention, MLP in the
    paper's space) and one column per transformer block. With ``top_k=1`` a
    cell is filled when the best mask trains that unit; with ``top_k > 1``
    it holds the fraction of the ``top_k`` best complete trials that train
    it, which shows which choices the search agrees on. A LoRA unit (digit
    ``2`` of a ternary mask string, see :mod:`skfairtune.masks._lora`) counts as
    trained: with ``top_k=1`` it is drawn half-shaded and labelled with its
    rank (``param_lora_rank``), with ``top_k > 1`` its LoRA share is written
    under the cell's share.

    Parameters
    ----------
    search : FairTuneSearchCV
        A fitted search over a mask space (``mask_space`` not None).
    top_k : int, default=1
        Number of best complete trials to count. Fewer are used when fewer
        trials completed; the title says how many.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure sized to the depth when None.
    cmap : str, default="Greens"
        Matplotlib colormap of the cells.

    Returns
    -------
    ax : matplotlib Axes
        The heatmap (``ax.images[0]`` holds the frequency matrix; with
        ``top_k=1`` a LoRA unit's cell holds 0.5).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skfairtune import FairTuneClassifier, FairTuneSearchCV
    >>> from skfairtune.datasets import make_biased_images
    >>> from skfairtune.plotting import plot_mask_selection
    >>> data = make_biased_images(200, image_size=16, random_state=0)
    >>> clf = FairTuneClassifier(
    ...     "vit_tiny_patch16_224", pretrained=False, max_epochs=1, batch_size=64,
    ...     model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2))
    >>> search = FairTuneSearchCV(clf, n_trials=3, baselines=None, refit=False, random_state=0)
    >>> search = search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    >>> ax = plot_mask_selection(search, top_k=3)
    >>> ax.images[0].get_array().shape  # (unit kinds, blocks)
    (3, 2)
    """

    results = _check_search(search, "plot_mask_selection")
    if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"`top_k` must be an int >= 1; got {top_k!r}.")
    if getattr(search, "mask_space_", None) is None or "param_mask" not in results:
        raise ValueError(
            "plot_mask_selection needs a search over masks; this search was fit with mask_space=None "
            "(only the learning rate was searched)."
        )
    order = _complete_order(results)
    if not len(order):
        raise ValueError("plot_mask_selection: the search has no complete trial with a finite score.")
    chosen = order[:top_k]
    masks = [str(results["param_mask"][i]) for i in chosen]
    space = search.mask_space_
    kinds, depth = space.unit_kinds, space.depth
    # Baselines are stored under their preset names; their bits are what the figure shows.
    # A string with 2s (LoRA units) counts a LoRA unit as trained and marks it apart.
    values = np.array([resolve_states(m, space).states if "2" in m else space.resolve(m).bits
                       for m in masks])
    # Bits are block-major (block 0: ln, attn, mlp; block 1: ...), rows here are unit kinds.
    freq = (values > 0).mean(axis=0).reshape(depth, len(kinds)).T
    lora = (values == 2).mean(axis=0).reshape(depth, len(kinds)).T
    if len(chosen) == 1:
        freq = freq - 0.5 * lora  # a LoRA unit is drawn half-shaded
        ranks = results.get("param_lora_rank")
        rank = ranks[chosen[0]] if ranks is not None else None
        lora_text = "LoRA" if rank is None or rank != rank else f"LoRA r={int(rank)}"

    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.0, 0.6 * depth + 2.5), 0.55 * len(kinds) + 1.9),
                             layout="constrained")
    image = ax.imshow(freq, cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for row in range(freq.shape[0]):
        for col in range(depth):
            value = freq[row, col]
            if len(chosen) == 1:
                text = lora_text if lora[row, col] else ("on" if value else "")
            else:
                text = f"{value:.0%}" + (f"\n{lora[row, col]:.0%} LoRA" if lora[row, col] else "")
            if text:
                ax.text(col, row, text, ha="center", va="center", fontsize=8,
                        color="white" if value > 0.6 else "black")
    ax.set_xticks(range(depth), [str(b) for b in range(depth)])
    ax.set_yticks(range(len(kinds)), [_UNIT_LABELS.get(k, k) for k in kinds])
    ax.set_xticks(np.arange(-0.5, depth), minor=True)
    ax.set_yticks(np.arange(-0.5, len(kinds)), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("Transformer block")
    if len(chosen) == 1:
        best = results["mean_test_score"][chosen[0]]
        name = _baseline_names(results)[chosen[0]]
        ax.set_title(f"Units fine-tuned by the best mask{f' (the {name} baseline)' if name else ''}: "
                     f"{_scoring_label(search)} {best:.3f}")
    else:
        ax.set_title(f"Share of the top {len(chosen)} masks that fine-tune each unit")
        ax.figure.colorbar(image, ax=ax, label="share of masks", fraction=0.05, pad=0.02)
    return ax


def plot_search_convergence(search, *, ax=None):
    """Plot the objective of every trial and the best so far (the paper's figure 5).

    Complete trials are blue dots, trials stopped by the pruner grey crosses
    at the score they were stopped with (an earlier epoch, so not comparable
    with finished ones; those far below the complete trials are grey
    triangles on the bottom edge), failed trials red triangles along the bottom. The
    orange step line is the best complete score so far. Enqueued baselines
    are labelled by name.

    Parameters
    ----------
    search : FairTuneSearchCV
        A fitted search.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The plot; its legend names the marker kinds with their counts.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skfairtune import FairTuneClassifier, FairTuneSearchCV
    >>> from skfairtune.datasets import make_biased_images
    >>> from skfairtune.plotting import plot_search_convergence
    >>> data = make_biased_images(200, image_size=16, random_state=0)
    >>> clf = FairTuneClassifier(
    ...     "vit_tiny_patch16_224", pretrained=False, max_epochs=1, batch_size=64,
    ...     model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2))
    >>> search = FairTuneSearchCV(clf, n_trials=3, baselines=("linear",), refit=False,
    ...                           random_state=0)
    >>> search = search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    >>> ax = plot_search_convergence(search)
    >>> ax.get_xlabel()
    'Trial'
    """
    results = _check_search(search, "plot_search_convergence")
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    number = np.asarray(results["trial_number"], dtype=int)
    score = np.asarray(results["mean_test_score"], dtype=float)
    state = np.asarray(results["state"], dtype=object)
    order = np.argsort(number, kind="stable")
    number, score, state = number[order], score[order], state[order]
    baselines = [_baseline_names(results)[i] for i in order]

    complete = (state == "complete") & np.isfinite(score)
    pruned = (state == "pruned") & np.isfinite(score)
    failed = ~(complete | pruned)
    if complete.any():
        ax.plot(number[complete], score[complete], "o", color=_COMPLETE_COLOR,
                label=f"complete ({complete.sum()})", zorder=3)
        best = np.fmax.accumulate(np.where(complete, score, np.nan))
        seen = ~np.isnan(best)
        ax.step(number[seen], best[seen], where="post", color=_BEST_COLOR, linewidth=2,
                label="best so far", zorder=2)
    # Trials stopped early can score far below the rest; drawn to scale they would squash the
    # complete ones into a flat line, so they sit on the bottom edge instead, marked as such.
    bottom = -np.inf
    if complete.any():
        low, high = score[complete].min(), np.nanmax(score[complete | pruned])
        bottom = low - max(high - low, 0.02)
    far = pruned & (score < bottom)
    near = pruned & ~far
    if near.any():
        ax.plot(number[near], score[near], "x", color=_PRUNED_COLOR, markersize=7, mew=2,
                label=f"pruned ({pruned.sum()}, score when stopped)", zorder=3)
    if far.any():
        ax.plot(number[far], np.zeros(far.sum()), "v", color=_PRUNED_COLOR, markersize=7,
                transform=ax.get_xaxis_transform(), clip_on=False,
                label=f"pruned below {bottom:.2f} ({far.sum()})", zorder=3)
    if failed.any():
        # Failed trials have no score: mark them on the bottom edge of the axes.
        ax.plot(number[failed], np.zeros(failed.sum()), "v", color=_FAILED_COLOR,
                transform=ax.get_xaxis_transform(), clip_on=False,
                label=f"failed ({failed.sum()})", zorder=3)
    for x, y, name, ok in zip(number, score, baselines, complete | near):
        if name and ok:
            # Slanted, so that the labels of neighbouring baseline trials do not overlap.
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(2, 7), fontsize=8,
                        color="0.25", rotation=35, rotation_mode="anchor")
    ax.set_xlabel("Trial")
    ax.set_ylabel(_scoring_label(search, capital=True))
    ax.set_title("Search convergence" + (f": {_scoring_label(search)}" if _pareto.scored_objective(search)[1] else ""))
    if len(number) and number.max() < 30:
        ax.set_xticks(range(int(number.min()), int(number.max()) + 1, max(1, math.ceil(len(number) / 15))))
    ax.grid(alpha=0.3)
    ax.margins(y=0.15)  # room for the baseline labels
    if far.any():
        ax.set_ylim(bottom, ax.get_ylim()[1])
    ax.legend(loc="best", fontsize=8)
    return ax


def _overall_auc_per_trial(search, rows) -> np.ndarray:
    """Validation overall AUC of the given ``cv_results_`` rows, from the trials' user attributes."""
    study = getattr(search, "study_", None)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)} if study is not None else {}
    values = np.full(len(rows), np.nan)
    for j, i in enumerate(rows):
        trial = trials.get(int(search.cv_results_["trial_number"][i]))
        epochs = TrialRecord.of(trial).epoch_split_overall_auc if trial is not None else None
        last = [v for v in (epochs[-1] if epochs else ()) if v is not None]
        if last:
            values[j] = float(np.mean(last))
    return values


def _pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points not dominated when maximising both, sorted by x."""
    order = np.lexsort((-y, -x))  # x descending, then y descending
    front, best_y = [], -np.inf
    for i in order:
        if y[i] > best_y:
            front.append(i)
            best_y = y[i]
    return np.array(front[::-1], dtype=int)


def plot_pareto(search, *, ax=None):
    """Place the complete trials on the overall-AUC vs objective plane, with the Pareto front.

    The x axis is each trial's validation AUC over all samples, the y axis
    its validation objective (min-group AUC by default), both at the last
    epoch and averaged over the folds. The dashed line joins the trials no
    other trial beats on both; the star is the trial the search selected;
    rings mark the baselines enqueued in the study.
    Overall AUC is read from the trials' ``epoch_split_overall_auc`` user
    attribute, which the search's objective records for binary tasks.

    Parameters
    ----------
    search : FairTuneSearchCV
        A fitted search.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The scatter plot.

    Raises
    ------
    ValueError
        If the trials carry no validation overall AUC.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skfairtune import FairTuneClassifier, FairTuneSearchCV
    >>> from skfairtune.datasets import make_biased_images
    >>> from skfairtune.plotting import plot_pareto
    >>> data = make_biased_images(200, image_size=16, random_state=0)
    >>> clf = FairTuneClassifier(
    ...     "vit_tiny_patch16_224", pretrained=False, max_epochs=1, batch_size=64,
    ...     model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2))
    >>> search = FairTuneSearchCV(clf, n_trials=3, baselines=None, refit=False, random_state=0)
    >>> search = search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    >>> ax = plot_pareto(search)
    >>> ax.get_xlabel()
    'Validation overall AUC'
    """
    from matplotlib.ticker import MaxNLocator

    results = _check_search(search, "plot_pareto")
    rows = _complete_order(results)
    x = _overall_auc_per_trial(search, rows)
    keep = np.isfinite(x)
    if not keep.any():
        raise ValueError(
            "plot_pareto: no complete trial records a validation overall AUC (user attribute "
            "'epoch_split_overall_auc'); it is recorded for binary labels by searches of this "
            "skfairtune version, so refit the search."
        )
    rows, x = rows[keep], x[keep]
    y = np.asarray(results["mean_test_score"], dtype=float)[rows]
    names = _baseline_names(results)

    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5), layout="constrained")
    front = _pareto_front(x, y)
    on_front = np.zeros(len(rows), dtype=bool)
    on_front[front] = True
    ax.plot(x[~on_front], y[~on_front], "o", color=_COMPLETE_COLOR, alpha=0.55,
            label=f"trial ({(~on_front).sum()})")
    ax.plot(x[front], y[front], "o", color=_COMPLETE_COLOR, markeredgecolor="black",
            label=f"Pareto-optimal trial ({len(front)})", zorder=3)
    ax.plot(x[front], y[front], "--", color="0.3", linewidth=1, zorder=2)
    selected = getattr(search, "best_index_", None)
    if selected is not None and selected in set(rows.tolist()):
        j = int(np.flatnonzero(rows == selected)[0])
        ax.plot(x[j], y[j], "*", color=_BEST_COLOR, markersize=16, markeredgecolor="black",
                label="selected by the search", zorder=4)
    # Baselines often sit close together: a ring of their own colour and shape, named in the
    # legend, stays readable where text labels would overlap.
    shapes = iter(["s", "D", "^", "v", "p", "h", "P", "X"])
    for j, i in enumerate(rows):
        if names[i]:
            ax.plot(x[j], y[j], next(shapes, "o"), markersize=11, markerfacecolor="none", markeredgewidth=1.5,
                    color=f"C{2 + sum(1 for k in rows[:j] if names[k]) % 8}", label=f"baseline: {names[i]}",
                    zorder=5)
    ax.set_xlabel("Validation overall AUC")
    ax.set_ylabel(_scoring_label(search, capital=True))
    ax.set_title(f"Complete trials: overall AUC vs {_scoring_label(search)}")
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.margins(0.1)  # room for the baseline labels at the edges
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return ax
