"""The common layout of the data-set Bunches of :mod:`skfairtune.datasets`.

Shared by the loaders and generators, so that every data set names its
sensitive attributes the same way, drops rows with a missing sensitive value
with the same warning, describes its groups with the same table and returns
the same keys.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from .._images._decode import decode_images

__all__ = ["as_name_list", "count_table", "make_bunch", "missing_sensitive"]


def as_name_list(value, name: str) -> list[str]:
    """``value`` (one column name or several) as a list, checked, for parameter ``name``."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise TypeError(
            f"`{name}` must be a column name or a sequence of column names; "
            f"got {value!r}."
        )
    if not value:
        raise ValueError(f"`{name}` is empty; name at least one sensitive attribute.")
    if len(set(value)) != len(value):
        raise ValueError(f"`{name}` has duplicate names: {list(value)!r}.")
    return list(value)


def missing_sensitive(sensitive: pd.DataFrame, n_rows: int, source: str) -> np.ndarray:
    """Boolean mask of rows to drop, with a warning saying how many and why."""
    missing = sensitive.isna()
    drop = missing.any(axis=1).to_numpy()
    n_dropped = int(drop.sum())
    if n_dropped:
        per_column = ", ".join(
            f"{column}: {int(count)}" for column, count in missing.sum().items() if count
        )
        warnings.warn(
            f"Dropped {n_dropped} of {n_rows} rows of {source} with a missing "
            f"sensitive value ({per_column}); the result's `n_dropped` records this.",
            UserWarning,
            stacklevel=3,
        )
    return drop


def count_table(target: np.ndarray, target_names, sensitive: pd.DataFrame) -> str:
    """Lines of ``DESCR`` counting images and positives (``target == 1``) per group."""
    positive = target_names[-1]
    lines = [f"Images: {len(target):,}; {positive}: {int((target == 1).sum()):,}"]
    for column in sensitive.columns:
        for level in sensitive[column].cat.categories:
            in_group = (sensitive[column] == level).to_numpy()
            n_group = int(in_group.sum())
            n_pos = int((target[in_group] == 1).sum())
            rate = f" ({n_pos / n_group:.0%})" if n_group else ""
            lines.append(
                f"  {column} = {level}: {n_group:,} images, {n_pos:,} {positive}{rate}"
            )
    return "\n".join(lines)


def make_bunch(
    *,
    frame: pd.DataFrame,
    paths: list[str],
    target: np.ndarray,
    target_names: list,
    sensitive: pd.DataFrame,
    groups,
    image_size,
    load_images: bool,
    n_dropped: int,
    descr: str,
) -> Bunch:
    """Decode the images unless ``load_images`` is False, and return the loaders' Bunch."""
    images = decode_images(paths, size=image_size) if load_images else None
    if images is not None:
        descr += f"\nImage size: {images.shape[1]}x{images.shape[2]} (height x width)."
    return Bunch(
        images=images,
        paths=np.asarray(paths, dtype=str),
        target=target,
        target_names=list(target_names),
        sensitive_features=sensitive.reset_index(drop=True),
        groups=groups,
        frame=frame.reset_index(drop=True),
        n_dropped=n_dropped,
        DESCR=descr,
    )
