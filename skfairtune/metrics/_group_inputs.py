"""Validation and encoding of the inputs of the group metrics.

Shared by :mod:`skfairtune.metrics`, :mod:`skfairtune.reports` and the split
helpers: one validation, so that a bad ``y_true``, score or group column gets
the same message from every entry point, and one encoding of the groups
(integer codes plus a :class:`pandas.Index` or :class:`pandas.MultiIndex` of
labels, as fairlearn's ``MetricFrame`` labels them), so that metrics, reports
and splits list the same groups in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "GroupData",
    "as_1d",
    "check_choice",
    "encode_groups",
    "resolve_pos_label",
    "single_class_groups",
    "validate_group_inputs",
]

_MAX_LISTED = 10  # items listed in an error message before "... and N more"


@dataclass(frozen=True)
class GroupData:
    """Validated, encoded inputs of a group metric.

    Attributes
    ----------
    y : ndarray of shape (n_samples,)
        ``y_true == pos_label`` as bool for binary metrics, else the raw labels.
    response : ndarray of shape (n_samples,)
        float64 scores, ``y_pred == pos_label`` as bool, or raw predicted labels.
    codes : ndarray of shape (n_samples,)
        Integer group code of each sample, in ``range(len(groups))``.
    groups : pandas.Index
        Group labels; ``groups[k]`` is the group of code ``k``.
    pos_label : object
        Positive class (None for non-binary metrics).
    """

    y: np.ndarray
    response: np.ndarray
    codes: np.ndarray
    groups: pd.Index
    pos_label: Any

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def class_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Return positives and negatives of ``y`` per group."""
        n_total = np.bincount(self.codes, minlength=self.n_groups)
        n_pos = np.bincount(self.codes[self.y], minlength=self.n_groups)
        return n_pos, n_total - n_pos

    def features_frame(self) -> pd.DataFrame:
        """Return one column per sensitive feature, decoded, one row per sample."""
        return self.groups.take(self.codes).to_frame(index=False)

    def subset(self, keep_groups: np.ndarray) -> GroupData:
        """Return the samples of the groups where ``keep_groups`` is True."""
        rows = keep_groups[self.codes]
        # Re-number kept groups 0..k-1 so bincount-based code stays dense.
        new_code = np.cumsum(keep_groups) - 1
        return GroupData(
            y=self.y[rows],
            response=self.response[rows],
            codes=new_code[self.codes[rows]],
            groups=self.groups[keep_groups],
            pos_label=self.pos_label,
        )


def _format_list(items: list, limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", ... and {len(items) - limit} more"
    return shown


def _count_at_positions(mask: np.ndarray, what: str) -> str:
    positions = np.flatnonzero(mask)
    first = positions[:_MAX_LISTED].tolist()
    where = "at positions" if len(positions) <= _MAX_LISTED else "first at positions"
    return f"{len(positions)} {what} {where} {first}"


def as_1d(values: Any, name: str, *, scores: bool = False) -> np.ndarray:
    """Return ``values`` as a 1-D array, with a fix-it message otherwise."""
    if values is None:
        raise ValueError(f"`{name}` is None; pass an array-like of shape (n_samples,).")
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2 and scores:
        raise ValueError(
            f"`{name}` has shape {array.shape}; pass the positive-class column only, "
            "e.g. `estimator.predict_proba(X)[:, 1]`."
        )
    if array.ndim != 1:
        raise ValueError(
            f"`{name}` must be 1-D with shape (n_samples,); got shape {array.shape}."
        )
    return array


def _check_missing(array: np.ndarray, name: str) -> None:
    if array.dtype.kind in "biu":  # integers and bools cannot hold NaN
        return
    missing = pd.isna(array)
    if missing.any():
        raise ValueError(
            f"`{name}` has {_count_at_positions(missing, 'missing values (None/NaN)')}; "
            "drop or impute them before calling this function."
        )


def _sensitive_columns(sensitive_features: Any) -> list[tuple[str, Any]]:
    """Split ``sensitive_features`` into named 1-D columns, fairlearn-style."""
    if sensitive_features is None:
        raise ValueError(
            "`sensitive_features` is None; pass the group of every sample as a 1-D "
            "array-like, or a 2-D array / DataFrame for intersectional groups."
        )
    if isinstance(sensitive_features, Mapping):
        sensitive_features = pd.DataFrame(dict(sensitive_features))
    if isinstance(sensitive_features, pd.DataFrame):
        return [(str(c), sensitive_features.iloc[:, i]) for i, c in
                enumerate(sensitive_features.columns)]
    if isinstance(sensitive_features, pd.Series):
        name = sensitive_features.name
        return [("sensitive_feature_0" if name is None else str(name), sensitive_features)]
    array = np.asarray(sensitive_features)
    if array.ndim == 1:
        return [("sensitive_feature_0", array)]
    if array.ndim == 2:
        return [(f"sensitive_feature_{i}", array[:, i]) for i in range(array.shape[1])]
    raise ValueError(
        "`sensitive_features` must be 1-D (one feature) or 2-D (one column per "
        f"feature); got shape {array.shape}."
    )


def _factorize(column: Any) -> tuple[np.ndarray, pd.Index]:
    if isinstance(getattr(column, "dtype", None), pd.CategoricalDtype):
        # Sort categories by value, not category order, as MetricFrame does,
        # so that metrics and reports list groups in the same order.
        column = np.asarray(column, dtype=object)
    try:
        codes, uniques = pd.factorize(column, sort=True)
    except TypeError:
        # Mixed, unorderable labels (e.g. 1 and "a"): keep order of appearance.
        codes, uniques = pd.factorize(column, sort=False)
    return codes.astype(np.intp, copy=False), pd.Index(uniques)


def encode_groups(sensitive_features: Any, n_samples: int, *, labels_name: str = "y_true"
                  ) -> tuple[np.ndarray, pd.Index]:
    """Return integer group codes and the matching (Multi)Index of group labels."""
    columns = _sensitive_columns(sensitive_features)
    if not columns:
        raise ValueError("`sensitive_features` has no columns; pass at least one feature.")
    for name, column in columns:
        if len(column) != n_samples:
            raise ValueError(
                f"`sensitive_features` has {len(column)} rows but `{labels_name}` has "
                f"{n_samples} samples; pass one group per sample."
            )
        label = "`sensitive_features`"
        if len(columns) > 1:
            label += f" column {name!r}"
        missing = np.asarray(pd.isna(column))
        if missing.any():
            raise ValueError(
                f"{label} has {_count_at_positions(missing, 'missing values (None/NaN)')}; "
                "drop or impute them before calling this function."
            )

    encoded = [_factorize(column) for _, column in columns]
    names = [name for name, _ in columns]
    if len(encoded) == 1:
        codes, uniques = encoded[0]
        return codes, uniques.rename(names[0])

    # Mixed-radix key whose numeric order is the lexicographic order of tuples.
    key = np.zeros(n_samples, dtype=np.int64)
    for codes, uniques in encoded:
        key = key * len(uniques) + codes
    observed, combined = np.unique(key, return_inverse=True)
    arrays, rest = [], observed
    for codes, uniques in reversed(encoded):
        arrays.append(uniques.take(rest % len(uniques)))
        rest = rest // len(uniques)
    groups = pd.MultiIndex.from_arrays(arrays[::-1], names=names)
    return combined.astype(np.intp, copy=False), groups


def resolve_pos_label(labels: np.ndarray, pos_label: Any, source: str, caller: str) -> Any:
    """Pick the positive class among ``labels`` the way scikit-learn does."""
    present = labels.tolist()
    if pos_label is not None:
        if pos_label not in present:
            raise ValueError(
                f"`pos_label`={pos_label!r} is not present in {source}; its labels "
                f"are {sorted(present, key=str)}. Pass one of them."
            )
        return pos_label
    as_set = set(present)
    if as_set <= {0, 1} or as_set <= {-1, 1}:
        return True if all(isinstance(v, bool) for v in present) else 1
    raise ValueError(
        f"{source} has labels {sorted(present, key=str)}; pass `pos_label` to {caller} "
        "to say which one is the positive class. It is only inferred for labels "
        "{0, 1}, {-1, 1} or {False, True}."
    )


def validate_group_inputs(
    y_true: Any,
    y_response: Any,
    sensitive_features: Any,
    *,
    response: Literal["score", "label", "multiclass_label"],
    caller: str,
    pos_label: Any = None,
) -> GroupData:
    """Check and encode the inputs of a group metric before any real work.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_response : array-like of shape (n_samples,)
        Scores (``response="score"``) or predicted labels.
    sensitive_features : array-like or DataFrame
        Group of every sample; several columns define intersectional groups.
    response : {"score", "label", "multiclass_label"}
        ``"score"``: numeric finite scores, binary ``y_true``. ``"label"``: binary
        class predictions, the two labels shared with ``y_true``.
        ``"multiclass_label"``: any labels, no positive class.
    caller : str
        Name of the public function, used in error messages.
    pos_label : object, default=None
        Positive class; inferred for {0, 1}, {-1, 1} and {False, True}.

    Returns
    -------
    GroupData
    """
    response_name = "y_score" if response == "score" else "y_pred"
    y = as_1d(y_true, "y_true")
    values = as_1d(y_response, response_name, scores=response == "score")
    if len(y) == 0:
        raise ValueError(f"`y_true` is empty; {caller} needs at least one sample.")
    if len(values) != len(y):
        raise ValueError(
            f"`y_true` has {len(y)} samples but `{response_name}` has {len(values)}; "
            "they must have the same length."
        )
    _check_missing(y, "y_true")

    if response == "score":
        values = _check_scores(values)
        labels = pd.unique(y)
        if len(labels) > 2:
            raise ValueError(
                f"`y_true` has {len(labels)} classes {sorted(labels.tolist(), key=str)}; "
                f"{caller} needs binary labels."
            )
        pos_label = resolve_pos_label(labels, pos_label, "`y_true`", caller)
        y = y == pos_label
    elif response == "label":
        _check_missing(values, response_name)
        # object dtype so that e.g. str y_true and int y_pred concatenate (then fail below).
        labels = pd.unique(
            np.concatenate([pd.unique(y).astype(object), pd.unique(values).astype(object)])
        )
        if len(labels) > 2:
            raise ValueError(
                f"`y_true` and `y_pred` together have {len(labels)} distinct labels "
                f"{_format_list(sorted(map(repr, labels.tolist())))}; {caller} needs "
                "binary class predictions, e.g. `estimator.predict(X)` or `y_score >= 0.5`."
            )
        pos_label = resolve_pos_label(labels, pos_label, "`y_true` and `y_pred`", caller)
        y, values = y == pos_label, values == pos_label
    else:
        _check_missing(values, response_name)
    # Last, as factorizing the groups is the costliest check.
    codes, groups = encode_groups(sensitive_features, len(y))
    return GroupData(y, values, codes, groups, pos_label)


def _check_scores(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind not in "biuf":
        raise ValueError(
            f"`y_score` must be numeric scores or probabilities; got dtype "
            f"{values.dtype}. For class predictions use a thresholded metric."
        )
    values = values.astype(np.float64, copy=False)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(
            f"`y_score` has {_count_at_positions(bad, 'non-finite values (NaN/inf)')}; "
            "fix the model or drop those samples before calling this function."
        )
    return values


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; got {value!r}.")


def single_class_groups(data: GroupData, what: str) -> tuple[np.ndarray, str]:
    """Mask of groups whose ``y_true`` holds one class, and a sentence naming them."""
    n_pos, n_neg = data.class_counts()
    undefined = (n_pos == 0) | (n_neg == 0)
    labels = data.groups.tolist()
    described = [
        f"{labels[k]!r} ({n_pos[k]} positive, {n_neg[k]} negative)"
        for k in np.flatnonzero(undefined)
    ]
    summary = (
        f"{undefined.sum()} of {data.n_groups} group(s) hold a single class in y_true"
    )
    return undefined, f"{summary}, so their {what} is undefined: {_format_list(described)}"
