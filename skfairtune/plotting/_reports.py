"""Figures of fitted estimators and fairness reports (not of a search).

- :func:`plot_group_auc_curves`: per-group train and held-out AUC over epochs,
  recorded by :class:`skfairtune.callbacks.GroupAUCScoring` (the paper's
  figures 1 and 3: bias appears at generalisation);
- :func:`plot_report`: one metric of a fairness report per group, with its
  bootstrap interval when the report has one.

Like the search figures, each draws on a given Matplotlib ``ax`` (or creates a
figure) and returns the axes; Matplotlib is imported only when one is called.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._search import _COMPLETE_COLOR, _SCORING_LABELS, _pyplot

__all__ = ["plot_group_auc_curves", "plot_report"]


def _history(obj, label):
    history = getattr(obj, "history_", None)
    if history is None:
        history = getattr(obj, "history", None)
    if history is None and isinstance(obj, list):
        history = obj
    if history is None:
        raise TypeError(
            f"estimators[{label!r}] must be a fitted FairTuneClassifier, a skorch net or a skorch "
            f"History; got {type(obj).__name__}."
        )
    return history


def _group_series(history, key: str, label: str):
    epochs = [row for row in history if key in row]
    if not epochs:
        raise ValueError(
            f"estimators[{label!r}] has no {key!r} in its history; fit it with "
            f"callbacks=[GroupAUCScoring(X, y, sensitive_features=..., name={key.rsplit('_group_auc', 1)[0]!r})] "
            "from skfairtune.callbacks."
        )
    groups = list(dict.fromkeys(g for row in epochs for g in row[key]))
    numbers = np.array([row["epoch"] for row in epochs])
    values = {g: np.array([row[key].get(g, np.nan) for row in epochs], dtype=float) for g in groups}
    return numbers, values


def plot_group_auc_curves(estimators: Mapping, *, train: str = "train", valid: str = "valid",
                          valid_label: str = "held-out", axes=None):
    """Per-group AUC on training and held-out data over the epochs, one panel per model.

    The paper's figures 1 and 3: the groups are fitted alike on the training
    set (solid lines) while their held-out AUC (dashed) drifts apart, i.e.
    bias appears at generalisation; a FairTune mask narrows that gap. The
    curves come from two :class:`skfairtune.callbacks.GroupAUCScoring`
    callbacks given to each classifier, named ``train`` and ``valid``.

    Parameters
    ----------
    estimators : mapping of str to fitted estimator
        Panel title to a fitted :class:`~skfairtune.FairTuneClassifier` (or a
        skorch net, or its History), e.g. ``{"full fine-tuning": full,
        "FairTune mask": tuned}``.
    train, valid : str, default="train", "valid"
        ``name`` of the callbacks that scored the training and the held-out set.
    valid_label : str, default="held-out"
        How the legend calls the held-out set ("validation", "test", ...).
    axes : array of matplotlib Axes, default=None
        One per estimator; a new row of panels sharing the y axis when None.

    Returns
    -------
    axes : ndarray of matplotlib Axes
        One panel per estimator; each has one solid and one dashed line per group.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skfairtune import FairTuneClassifier
    >>> from skfairtune.callbacks import GroupAUCScoring
    >>> from skfairtune.datasets import make_biased_images
    >>> from skfairtune.plotting import plot_group_auc_curves
    >>> data = make_biased_images(200, image_size=16, random_state=0)
    >>> X, y, s = data.images, data.target, data.sensitive_features
    >>> clf = FairTuneClassifier(
    ...     "vit_tiny_patch16_224", pretrained=False, max_epochs=2, batch_size=64, random_state=0,
    ...     model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2),
    ...     callbacks=[GroupAUCScoring(X[:150], y[:150], sensitive_features=s[:150], name="train"),
    ...                GroupAUCScoring(X[150:], y[150:], sensitive_features=s[150:], name="valid")],
    ... ).fit(X[:150], y[:150])
    >>> axes = plot_group_auc_curves({"full fine-tuning": clf})
    >>> len(axes[0].get_lines())  # train and held-out line per group
    4
    """
    from matplotlib.ticker import MaxNLocator

    if not isinstance(estimators, Mapping) or not estimators:
        raise TypeError(
            "`estimators` must be a non-empty mapping {panel title: fitted estimator}, e.g. "
            f"{{'full fine-tuning': clf}}; got {type(estimators).__name__}."
        )
    series = {}
    for label, estimator in estimators.items():
        history = _history(estimator, label)
        series[label] = (_group_series(history, f"{train}_group_auc", label),
                         _group_series(history, f"{valid}_group_auc", label))

    plt = _pyplot()
    own_figure = axes is None
    if own_figure:
        _, axes = plt.subplots(1, len(series), figsize=(4.6 * len(series) + 0.6, 4.4), sharey=True,
                               squeeze=False, layout="constrained")
        axes = axes[0]
    axes = np.atleast_1d(np.asarray(axes, dtype=object))
    if len(axes) != len(series):
        raise ValueError(f"`axes` has {len(axes)} axes but there are {len(series)} estimators; pass one each.")
    all_groups = list(dict.fromkeys(g for (_, tv), (_, vv) in series.values() for g in [*tv, *vv]))
    colours = {g: f"C{i % 10}" for i, g in enumerate(all_groups)}
    for ax, (label, ((t_epochs, t_values), (v_epochs, v_values))) in zip(axes, series.items()):
        for group in all_groups:
            if group in t_values:
                ax.plot(t_epochs, t_values[group], "-", marker="o", markersize=3, color=colours[group],
                        label=f"{group}, train")
            if group in v_values:
                ax.plot(v_epochs, v_values[group], "--", marker="s", markersize=3, color=colours[group],
                        label=f"{group}, {valid_label}")
        last = [v[-1] for v in v_values.values() if np.isfinite(v[-1])]
        gap = f"\n{valid_label} AUC gap at the end: {max(last) - min(last):.3f}" if len(last) > 1 else ""
        ax.set_title(f"{label}{gap}", fontsize=10)
        ax.set_xlabel("Epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("AUC per group")
    if own_figure:
        # One legend for all panels, below them, so that it never hides a curve.
        entries = {}
        for ax in axes:
            for handle, text in zip(*ax.get_legend_handles_labels()):
                entries.setdefault(text, handle)
        labels, handles = list(entries), list(entries.values())
        axes[0].figure.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)),
                              fontsize=8, frameon=False)
    else:
        axes[-1].legend(loc="best", fontsize=8)
    return axes


def plot_report(report, metric: str = "roc_auc", *, ax=None):
    """One metric of a fairness report per group (and overall), with bootstrap intervals.

    Parameters
    ----------
    report : fairlearn.metrics.MetricFrame
        From :func:`skfairtune.fairness_report`; with ``n_boot`` the
        interval between its lowest and highest ``ci_quantiles`` is drawn as
        an error bar.
    metric : str, default="roc_auc"
        A column of ``report.by_group``.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skfairtune.reports import fairness_report_from_scores
    >>> report = fairness_report_from_scores([0, 1, 0, 1, 0, 1, 1, 0],
    ...     [0.1, 0.9, 0.2, 0.8, 0.7, 0.3, 0.6, 0.2], sensitive_features=list("FFFFMMMM"))
    >>> [label.get_text() for label in plot_report(report).get_yticklabels()]
    ['F', 'M', 'overall']
    """
    if metric not in report.by_group.columns:
        raise ValueError(f"`metric={metric!r}` is not a column of the report; choose among "
                         f"{list(report.by_group.columns)}.")
    if ax is None:
        _, ax = _pyplot().subplots(figsize=(5, 0.5 + 0.45 * (len(report.by_group) + 1)))
    labels = [" x ".join(map(str, g)) if isinstance(g, tuple) else str(g) for g in report.by_group.index]
    labels.append("overall")
    values = np.append(report.by_group[metric].to_numpy(float), float(report.overall[metric]))
    positions = np.arange(len(values))
    errors = None
    try:
        lows, highs = report.by_group_ci[0], report.by_group_ci[-1]
        low = np.append(lows[metric].to_numpy(float), float(report.overall_ci[0][metric]))
        high = np.append(highs[metric].to_numpy(float), float(report.overall_ci[-1][metric]))
        errors = np.vstack([values - low, high - values])
    except ValueError:  # fairlearn raises when the report was built without n_boot
        pass
    colors = [_COMPLETE_COLOR] * (len(values) - 1) + ["0.3"]
    for i, (value, color) in enumerate(zip(values, colors)):
        ax.errorbar(value, i, xerr=None if errors is None else errors[:, i:i + 1], fmt="o", color=color,
                    capsize=3)
    ax.set_yticks(positions, labels)
    ax.invert_yaxis()
    label = _SCORING_LABELS.get(metric, metric)
    ax.set_xlabel(label if errors is None else f"{label} (bootstrap interval)")
    ax.grid(axis="x", alpha=0.3)
    return ax
