"""Validation splits for the search: fixed, stratified on label x group, checked up front."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.model_selection import (
    StratifiedGroupKFold,
    StratifiedKFold,
    StratifiedShuffleSplit,
    check_cv,
)

from .._utils._strata import label_group_strata
from ..metrics._group_inputs import encode_groups

__all__ = ["group_codes", "make_splits", "check_validation_folds"]


def group_codes(sensitive_features, n_samples: int, *, labels_name: str = "y") -> tuple[np.ndarray, list]:
    """Integer code per sample for the (intersectional) group, and the group labels.

    The encoding is the metrics' own, so splits, checks and scores agree on groups.
    """
    codes, index = encode_groups(sensitive_features, n_samples, labels_name=labels_name)
    labels = [tuple(_plain(v) for v in label) if isinstance(label, tuple) else _plain(label)
              for label in index]
    return codes.astype(np.int64), labels


def _plain(value):
    """numpy scalars print as np.str_('a') in messages; use the Python value."""
    return value.item() if isinstance(value, np.generic) else value


def make_splits(cv, *, y_codes, g_codes, groups=None, validation_fraction=0.2, random_state=None,
                fraction_name="validation_fraction"):
    """Return a fixed list of (train, held-out) index pairs.

    ``cv=None`` is the paper's protocol: one split stratified on label x group;
    with ``groups`` (e.g. lesion or patient ids) no group straddles the split.
    An int gives k folds stratified the same way; any sklearn splitter or
    iterable of splits is used as given. ``fraction_name`` is how the caller's
    user knows ``validation_fraction`` (``compare_methods`` calls it ``test_size``).
    """
    n_samples = len(y_codes)
    strata = label_group_strata(y_codes, g_codes)
    placeholder = np.zeros((n_samples, 1))
    if cv is None or isinstance(cv, numbers.Integral):
        if cv is not None and (isinstance(cv, bool) or cv < 2):
            raise ValueError(f"`cv` must be None, an int >= 2, a splitter or an iterable of splits; got {cv!r}.")
        if not 0 < validation_fraction < 1:
            raise ValueError(f"`{fraction_name}` must be in (0, 1); got {validation_fraction!r}.")
        if groups is not None:
            n_splits = cv or max(2, round(1 / validation_fraction))
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
            splits = list(splitter.split(placeholder, strata, groups))
            return splits[:1] if cv is None else splits
        if cv is None:
            splitter = StratifiedShuffleSplit(n_splits=1, test_size=validation_fraction, random_state=random_state)
        else:
            splitter = StratifiedKFold(n_splits=cv, shuffle=True, random_state=random_state)
        try:
            return list(splitter.split(placeholder, strata))
        except ValueError as exc:
            raise ValueError(
                f"Cannot stratify the validation split on label x group ({exc}). Some label x group "
                f"cell is too small: pass fewer folds, a larger `{fraction_name}`, or merge groups."
            ) from exc
    splitter = check_cv(cv, y_codes, classifier=True)
    return [(np.asarray(tr), np.asarray(va)) for tr, va in splitter.split(placeholder, y_codes, groups)]


def check_validation_folds(splits, *, y_codes, g_codes, group_labels, class_labels, pooled=False) -> None:
    """Fail before training if some validation fold leaves a group's AUC undefined.

    With ``pooled`` the folds' validation predictions are scored together, so
    only their union must hold both classes in every group.
    """
    problems = []
    n_classes = len(class_labels)
    for fold, (train, _) in enumerate(splits):
        if len(np.unique(y_codes[train])) < n_classes:
            problems.append(f"fold {fold}: the training part lacks a class")
    evaluated = ([("the pooled validation folds", np.concatenate([valid for _, valid in splits]))] if pooled
                 else [(f"fold {fold}", valid) for fold, (_, valid) in enumerate(splits)])
    for where, valid in evaluated:
        counts = np.zeros((len(group_labels), n_classes), dtype=int)
        np.add.at(counts, (g_codes[valid], y_codes[valid]), 1)
        for g, row in enumerate(counts):
            if row.sum() and (row == 0).any():
                per_class = ", ".join(f"{class_labels[c]!r}: {row[c]}" for c in range(n_classes))
                problems.append(f"{where}: group {group_labels[g]!r} has {per_class}")
    if problems:
        raise ValueError(
            "Per-group AUC is undefined on some validation folds, because a group there has a "
            "single label class: " + "; ".join(problems[:10])
            + (" ..." if len(problems) > 10 else "")
            + ". Fix: use fewer folds or a larger `validation_fraction`, stratify the split on "
            "label x group (the default cv does), merge rare groups, or choose a scoring that "
            "is defined (e.g. 'overall_auc')."
        )


