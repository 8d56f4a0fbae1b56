"""Up-front checks of inputs that would otherwise fail only once training has started.

Each check runs in ``fit`` before the backbone is trained (and, for the search,
before the stored study is opened), so a bad input costs milliseconds and never
leaves a trace in a stored study. Messages name the parameter, the value and
the fix, in scikit-learn's wording. Checks of ``X`` itself (tabular data
included) live with its conversion, in :func:`skfairtune._images._convert.check_input`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "check_scoring_classes",
    "check_several_groups",
    "check_splits",
    "check_param_distributions",
    "MULTICLASS_SCORINGS",
]

# Fairness scorings whose metric is defined for binary labels only (skfairtune.metrics).
_BINARY_FAIRNESS = ("min_group_auc", "overall_auc", "neg_auc_gap", "neg_equalized_odds_difference",
                    "neg_demographic_parity_difference")
# scikit-learn scorer names that raise on multiclass targets (average='binary' or binary AUC).
_BINARY_SKLEARN = ("roc_auc", "f1", "precision", "recall", "jaccard")
#: Scorings that accept more than two classes, named in the error for multiclass ``y``.
MULTICLASS_SCORINGS = ("worst_group_accuracy", "accuracy", "balanced_accuracy", "roc_auc_ovr",
                       "roc_auc_ovo", "neg_log_loss", "f1_macro")
# Fairness scorings that compare groups: meaningless with one group.
_GROUP_SCORINGS = ("min_group_auc", "neg_auc_gap", "worst_group_accuracy", "neg_equalized_odds_difference",
                   "neg_demographic_parity_difference")


def check_scoring_classes(scoring, classes) -> None:
    """Refuse a binary-only scoring for ``y`` with more than two classes."""
    if len(classes) <= 2 or not isinstance(scoring, str):
        return
    if scoring not in _BINARY_FAIRNESS + _BINARY_SKLEARN:
        return
    shown = [c.item() if isinstance(c, np.generic) else c for c in list(classes)[:10]]
    raise ValueError(
        f"scoring={scoring!r} supports two classes only, but y has {len(classes)} classes "
        f"({shown}{' ...' if len(classes) > 10 else ''}). Scorings that support several classes: "
        f"{', '.join(repr(s) for s in MULTICLASS_SCORINGS)} (or any scorer callable that does); "
        "or make y binary (one class against the rest)."
    )


def check_several_groups(scoring, group_labels, n_samples: int) -> None:
    """Refuse a group-comparing scoring when ``sensitive_features`` holds one group only."""
    if not isinstance(scoring, str) or scoring not in _GROUP_SCORINGS or len(group_labels) != 1:
        return
    raise ValueError(
        f"sensitive_features holds a single group ({group_labels[0]!r}) for all {n_samples} images, "
        f"so scoring={scoring!r} has no groups to compare. Pass each image's group (e.g. age band "
        "or sex), or use scoring='overall_auc' for a search that ignores groups."
    )


def check_splits(splits, n_samples: int) -> None:
    """Every split of a user ``cv`` must index the data and leave both parts non-empty."""
    for k, (train, valid) in enumerate(splits):
        for part, index in (("training", train), ("validation", valid)):
            index = np.asarray(index)
            if index.size == 0:
                raise ValueError(
                    f"`cv` split {k} has an empty {part} part; every split needs samples on both "
                    "sides. Check the splitter or the iterable of (train, test) index arrays."
                )
            if index.dtype.kind not in "iu":
                raise ValueError(
                    f"`cv` split {k}: the {part} part must hold integer indices; got dtype {index.dtype}."
                )
            low, high = int(index.min()), int(index.max())
            if low < 0 or high >= n_samples:
                bad = low if low < 0 else high
                raise ValueError(
                    f"`cv` split {k} holds index {bad} in its {part} part, but the search runs on "
                    f"{n_samples} samples (indices 0..{n_samples - 1}); with `subsample` the splits "
                    "index the subsample."
                )


def check_param_distributions(param_distributions, *, estimator_params, estimator_name: str,
                              searches_lr: bool, searches_mask: bool) -> None:
    """Every extra distribution is an Optuna distribution over a parameter of the classifier."""
    import optuna.distributions as dists

    kinds = (dists.FloatDistribution, dists.IntDistribution, dists.CategoricalDistribution)
    for name, distribution in (param_distributions or {}).items():
        if not isinstance(distribution, kinds):
            raise TypeError(
                f"param_distributions[{name!r}] must be an optuna FloatDistribution, IntDistribution "
                f"or CategoricalDistribution; got {distribution!r}."
            )
        if (name == "lr" and searches_lr) or (name == "mask" and searches_mask):
            switch = "lr_range=None" if name == "lr" else "mask_space=None"
            raise ValueError(
                f"param_distributions[{name!r}] is searched by the search itself; set {switch} to "
                f"search {name!r} with your own distribution instead."
            )
        if name not in estimator_params:
            close = sorted(p for p in estimator_params if name in p or p.startswith(name[:2]))[:5]
            raise ValueError(
                f"param_distributions[{name!r}]: {name!r} is not a parameter of {estimator_name}"
                + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
                + f"; valid parameters are {sorted(estimator_params)}."
            )

