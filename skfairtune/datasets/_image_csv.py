"""Loader of images listed in a CSV with a label and sensitive attributes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from .._images._decode import check_size
from ._bunch import as_name_list, count_table, make_bunch, missing_sensitive

__all__ = ["load_image_csv"]


def _check_files(paths: Sequence[str], what: str) -> None:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(f"'{p}'" for p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} image files listed in {what} do not "
            f"exist: {shown}{more}."
        )


def load_image_csv(
    csv_path: str | os.PathLike,
    *,
    image_column: str,
    target_column: str,
    sensitive_columns: str | Sequence[str],
    root: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] | None = None,
    groups_column: str | None = None,
    positive_labels=None,
    load_images: bool = True,
) -> Bunch:
    """Load images listed in a CSV with a label and sensitive attributes.

    Parameters
    ----------
    csv_path : str or path-like
        CSV file with one row per image.
    image_column : str
        Column of image file paths; relative paths are resolved against
        ``root``.
    target_column : str
        Column of labels. It must have no missing values.
    sensitive_columns : str or sequence of str
        Columns of sensitive attributes, returned as categorical columns.
        Rows with a missing (empty, NaN) value in any of them are dropped with
        a :class:`UserWarning`.
    root : str or path-like, default=None
        Folder that relative image paths are relative to. None means the
        folder of ``csv_path``.
    image_size : int or (int, int), default=None
        Resize images to this ``(height, width)`` (one int for square) while
        decoding. None keeps the files' size, which must then be the same for
        all.
    groups_column : str, default=None
        Column of sample groups for grouped splits (e.g. patient ID).
    positive_labels : scalar or list, default=None
        If given, binarise the target: 1 where the label is one of these,
        0 elsewhere, and ``target_names`` is ``["negative", "positive"]``.
        Otherwise the sorted distinct labels are encoded as 0, 1, ...
    load_images : bool, default=True
        If False, ``images`` is None and only ``paths`` are returned.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        images : ndarray of shape (n_samples, height, width, 3), dtype uint8
            The images, or None if ``load_images=False``.
        paths : ndarray of shape (n_samples,) of str
            Resolved image file paths.
        target : ndarray of shape (n_samples,), dtype int
            Class indices into ``target_names``.
        target_names : list
            The label of each class index.
        sensitive_features : DataFrame of shape (n_samples, n_attributes)
            One categorical column per sensitive column.
        groups : ndarray of shape (n_samples,) or None
            Values of ``groups_column``, if given.
        frame : DataFrame
            The rows of the CSV that were kept, in order.
        n_dropped : int
            Rows dropped for a missing sensitive value.
        DESCR : str
            Description with counts per group.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from skfairtune.datasets import load_image_csv
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ["a.png", "b.png", "c.png"]:
    ...     Image.new("RGB", (20, 20)).save(folder / name)
    >>> _ = (folder / "labels.csv").write_text(
    ...     "file,diagnosis,sex\\na.png,melanoma,F\\nb.png,nevus,M\\nc.png,nevus,F\\n")
    >>> data = load_image_csv(folder / "labels.csv", image_column="file",
    ...                       target_column="diagnosis", sensitive_columns="sex",
    ...                       positive_labels="melanoma", image_size=8)
    >>> data.images.shape, data.target.tolist(), data.target_names
    ((3, 8, 8, 3), [1, 0, 0], ['negative', 'positive'])
    """
    sensitive_names = as_name_list(sensitive_columns, "sensitive_columns")
    image_size = check_size(image_size)
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"`csv_path` '{csv_path}' does not exist.")
    root = Path(root) if root is not None else csv_path.parent
    frame = pd.read_csv(csv_path)
    checks = [
        ("image_column", [image_column]),
        ("target_column", [target_column]),
        ("sensitive_columns", sensitive_names),
        ("groups_column", [] if groups_column is None else [groups_column]),
    ]
    for parameter, names in checks:
        absent = [name for name in names if name not in frame.columns]
        if absent:
            raise ValueError(
                f"`{parameter}`: column(s) {absent} not in '{csv_path}', whose "
                f"columns are {frame.columns.tolist()}."
            )
    for parameter, column in [("image_column", image_column), ("target_column", target_column)]:
        missing = np.flatnonzero(frame[column].isna().to_numpy())
        if missing.size:
            raise ValueError(
                f"`{parameter}` column '{column}' has {missing.size} missing values "
                f"at rows {missing[:10].tolist()}; drop or fill them in the CSV."
            )

    labels = frame[target_column]
    if positive_labels is not None:
        positives = (
            list(positive_labels)
            if isinstance(positive_labels, (list, tuple, set, np.ndarray, pd.Index))
            else [positive_labels]
        )
        target = labels.isin(positives).to_numpy(dtype=int)
        if not target.any():
            raise ValueError(
                f"None of `positive_labels`={positives!r} occur in column "
                f"'{target_column}', whose values are {sorted(map(str, labels.unique()))[:10]}; "
                "check their spelling and type (e.g. 1 vs '1')."
            )
        target_names = ["negative", "positive"]
    else:
        codes, uniques = pd.factorize(labels, sort=True)
        target = codes.astype(int)
        target_names = uniques.tolist()

    n_rows = len(frame)
    sensitive_frame = pd.DataFrame(
        {name: frame[name].astype("category") for name in sensitive_names}
    )
    drop = missing_sensitive(sensitive_frame, n_rows, f"'{csv_path}'")
    keep = np.flatnonzero(~drop)
    paths = [str(root / str(p)) for p in frame[image_column].to_numpy()[keep]]
    if not load_images:
        _check_files(paths, f"'{csv_path}'")
    # A level seen only on dropped rows would be an empty group downstream.
    sensitive_frame = sensitive_frame.iloc[keep].apply(
        lambda column: column.cat.remove_unused_categories()
    )
    target = target[keep]
    descr = "\n".join(
        [
            f"Images listed in '{csv_path}'",
            f"Rows: {n_rows:,}; dropped for a missing sensitive value: {int(drop.sum()):,}.",
            f"Target column '{target_column}', classes {target_names}.",
            count_table(target, target_names, sensitive_frame)
            if len(target_names) == 2
            else f"Images: {len(target):,}",
        ]
    )
    groups = frame[groups_column].to_numpy()[keep] if groups_column is not None else None
    return make_bunch(
        frame=frame.iloc[keep],
        paths=paths,
        target=target,
        target_names=target_names,
        sensitive=sensitive_frame,
        groups=groups,
        image_size=image_size,
        load_images=load_images,
        n_dropped=int(drop.sum()),
        descr=descr,
    )
