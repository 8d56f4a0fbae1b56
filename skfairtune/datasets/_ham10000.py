"""Loader of HAM10000, binarised as in the FairTune paper, with age and sex groups."""

from __future__ import annotations

import os
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_scalar

from .._images._decode import check_size
from .._utils._strata import proportional_subset, strata_labels
from ._bunch import as_name_list, count_table, make_bunch, missing_sensitive

__all__ = ["load_ham10000"]

_HAM_CSV = "HAM10000_metadata.csv"
_HAM_IMAGE_DIRS = ("HAM10000_images", "HAM10000_images_part_1", "HAM10000_images_part_2")
_HAM_MALIGNANT = ("akiec", "mel")
_HAM_BENIGN = ("bcc", "bkl", "df", "nv", "vasc")
_HAM_SENSITIVE = ("age", "sex")
_HAM_LAYOUT = (
    f"expected a folder holding {_HAM_CSV} and the images as <image_id>.jpg in "
    f"{_HAM_IMAGE_DIRS[0]}/ or in {_HAM_IMAGE_DIRS[1]}/ and {_HAM_IMAGE_DIRS[2]}/ "
    "(the official layout of the Harvard Dataverse record doi:10.7910/DVN/DBW86T)"
)
_HAM_CITATION = (
    "Tschandl, P., Rosendahl, C. & Kittler, H. The HAM10000 dataset, a large "
    "collection of multi-source dermatoscopic images of common pigmented skin "
    "lesions. Scientific Data 5, 180161 (2018). doi:10.1038/sdata.2018.161"
)


def _check_n_samples(n_samples) -> None:
    if n_samples is not None:
        check_scalar(n_samples, "n_samples", Integral, min_val=1)


def _ham_sensitive(
    frame: pd.DataFrame, names: list[str], age_threshold: Real
) -> pd.DataFrame:
    columns = {}
    if "age" in names:
        # Non-numeric ages (none in the official file) count as missing.
        age = pd.to_numeric(frame["age"], errors="coerce").to_numpy(dtype=float)
        young, old = f"<={age_threshold:g}", f">{age_threshold:g}"
        labels = np.where(age <= age_threshold, young, old).astype(object)
        labels[np.isnan(age)] = None
        columns["age"] = pd.Categorical(labels, categories=[young, old])
    if "sex" in names:
        sex = frame["sex"].astype("string").str.strip().str.lower()
        unexpected = sorted(set(sex.dropna()) - {"male", "female", "unknown"})
        if unexpected:
            raise ValueError(
                f"Column 'sex' of {_HAM_CSV} has unexpected values {unexpected}; "
                "expected 'male', 'female' or 'unknown'."
            )
        sex = sex.where(sex != "unknown")
        columns["sex"] = pd.Categorical(
            sex.to_numpy(dtype=object, na_value=None), categories=["female", "male"]
        )
    return pd.DataFrame({name: columns[name] for name in names}, index=frame.index)


def _ham_image_index(root: Path) -> dict[str, str]:
    folders = [root / name for name in _HAM_IMAGE_DIRS if (root / name).is_dir()]
    if not folders:
        raise FileNotFoundError(f"No HAM10000 image folder in '{root}': {_HAM_LAYOUT}.")
    index: dict[str, str] = {}
    for folder in folders:
        # One directory listing instead of a stat per image.
        with os.scandir(folder) as entries:
            for entry in entries:
                stem, ext = os.path.splitext(entry.name)
                if ext.lower() == ".jpg":
                    index.setdefault(stem, entry.path)
    return index


def load_ham10000(
    root: str | os.PathLike,
    *,
    image_size: int | tuple[int, int] | None = None,
    sensitive: str | Sequence[str] = ("age", "sex"),
    age_threshold: float = 60,
    load_images: bool = True,
    n_samples: int | None = None,
    random_state: int | np.random.RandomState | None = None,
) -> Bunch:
    """Load HAM10000 as binary malignant-vs-benign with age and sex groups.

    Reads the official layout (``HAM10000_metadata.csv`` and the JPEGs) and
    binarises it as the FairTune paper does: malignant (``dx`` in akiec, mel)
    is 1, benign (bcc, bkl, df, nv, vasc) is 0; age becomes ``<=60`` or
    ``>60``; sex is ``female`` or ``male``. Rows with a missing value of a
    requested sensitive attribute (no age, sex ``unknown``) are dropped with
    a :class:`UserWarning`.

    Parameters
    ----------
    root : str or path-like
        Folder holding ``HAM10000_metadata.csv`` and the images, as
        ``<image_id>.jpg``, in ``HAM10000_images/`` or in the official
        ``HAM10000_images_part_1/`` and ``HAM10000_images_part_2/``.
    image_size : int or (int, int), default=None
        Resize images to this ``(height, width)`` (one int for square) while
        decoding. None keeps the files' size.
    sensitive : str or sequence of str, default=("age", "sex")
        Sensitive attributes to return, among ``"age"`` and ``"sex"``.
    age_threshold : float, default=60
        Ages ``<= age_threshold`` form the group ``"<=60"`` (for the default),
        older ages the group ``">60"``.
    load_images : bool, default=True
        If False, skip decoding: ``images`` is None and only ``paths`` are
        returned, e.g. to pass paths to a model or to inspect the metadata.
    n_samples : int, default=None
        If given, return a random subset of this many images, stratified by
        target and sensitive groups, for quick experiments. It is drawn after
        rows with missing values are dropped and before decoding.
    random_state : int, RandomState instance or None, default=None
        Seed of the subset drawn when ``n_samples`` is given.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        images : ndarray of shape (n_samples, height, width, 3), dtype uint8
            The images, or None if ``load_images=False``.
        paths : ndarray of shape (n_samples,) of str
            Image file paths.
        target : ndarray of shape (n_samples,), dtype int
            1 for malignant, 0 for benign.
        target_names : list of str
            ``["benign", "malignant"]``.
        sensitive_features : DataFrame of shape (n_samples, n_attributes)
            One categorical column per attribute in ``sensitive``.
        groups : ndarray of shape (n_samples,) of str
            ``lesion_id``: split by it so that no lesion is on both sides.
        frame : DataFrame
            The rows of the metadata file that were kept, in order.
        n_dropped : int
            Rows dropped for a missing sensitive value.
        DESCR : str
            Description with counts per group, and the citation.

    Notes
    -----
    Please cite Tschandl et al., "The HAM10000 dataset, a large collection of
    multi-source dermatoscopic images of common pigmented skin lesions",
    Scientific Data 5, 2018, and respect its licence (CC BY-NC 4.0).

    Examples
    --------
    >>> from skfairtune.datasets import load_ham10000
    >>> data = load_ham10000("path/to/ham10000", image_size=32)  # doctest: +SKIP
    >>> data.images.shape, data.sensitive_features.columns.tolist()  # doctest: +SKIP
    ((5944, 32, 32, 3), ['age', 'sex'])
    """
    names = as_name_list(sensitive, "sensitive")
    unknown = [name for name in names if name not in _HAM_SENSITIVE]
    if unknown:
        raise ValueError(
            f"Unknown sensitive attribute(s) {unknown} in `sensitive`; HAM10000 "
            f"provides {list(_HAM_SENSITIVE)}."
        )
    check_scalar(age_threshold, "age_threshold", Real)
    _check_n_samples(n_samples)
    image_size = check_size(image_size)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"HAM10000 root folder '{root}' does not exist; {_HAM_LAYOUT}.")
    csv_path = root / _HAM_CSV
    if not csv_path.is_file():
        raise FileNotFoundError(f"'{csv_path}' does not exist; {_HAM_LAYOUT}.")

    frame = pd.read_csv(csv_path)
    required = ["lesion_id", "image_id", "dx", *names]
    absent = [column for column in required if column not in frame.columns]
    if absent:
        raise ValueError(
            f"'{csv_path}' lacks the column(s) {absent}; its columns are "
            f"{frame.columns.tolist()}, the official file has lesion_id, image_id, "
            "dx, dx_type, age, sex, localization."
        )
    dx = frame["dx"].astype("string").str.strip().str.lower()
    unknown_dx = sorted(set(dx.dropna()) - set(_HAM_MALIGNANT) - set(_HAM_BENIGN))
    if unknown_dx or dx.isna().any():
        raise ValueError(
            f"Column 'dx' of '{csv_path}' has values {unknown_dx or ['<missing>']} "
            f"that are neither malignant {list(_HAM_MALIGNANT)} nor benign "
            f"{list(_HAM_BENIGN)}."
        )

    n_rows = len(frame)
    sensitive_frame = _ham_sensitive(frame, names, age_threshold)
    drop = missing_sensitive(sensitive_frame, n_rows, f"'{csv_path}'")
    keep = np.flatnonzero(~drop)
    target = dx.isin(_HAM_MALIGNANT).to_numpy(dtype=int)
    if n_samples is not None:
        if n_samples > len(keep):
            raise ValueError(
                f"`n_samples`={n_samples} exceeds the {len(keep)} images left after "
                f"dropping {int(drop.sum())} rows with missing sensitive values; "
                "pass a smaller `n_samples` or None."
            )
        strata = strata_labels(target[keep], [sensitive_frame[name].to_numpy(dtype=str)[keep] for name in names])
        keep = keep[proportional_subset(strata, n_samples, random_state)]

    index = _ham_image_index(root)
    image_ids = frame["image_id"].astype(str).to_numpy()[keep]
    absent_images = [i for i in image_ids if i not in index]
    if absent_images:
        shown = ", ".join(absent_images[:3])
        more = f" and {len(absent_images) - 3} more" if len(absent_images) > 3 else ""
        raise FileNotFoundError(
            f"{len(absent_images)} of {len(image_ids)} images listed in '{csv_path}' "
            f"were not found under '{root}' ({shown}{more}); {_HAM_LAYOUT}."
        )

    target = target[keep]
    target_names = ["benign", "malignant"]
    sensitive_frame = sensitive_frame.iloc[keep]
    descr = "\n".join(
        [
            "HAM10000 dermoscopy images, malignant vs benign",
            "===============================================",
            f"Source: '{root}'. Rows in {_HAM_CSV}: {n_rows:,}; dropped for a "
            f"missing sensitive value: {int(drop.sum()):,}"
            + (f"; random stratified subset of {n_samples:,}." if n_samples else "."),
            f"malignant = dx in {list(_HAM_MALIGNANT)}; "
            f"benign = dx in {list(_HAM_BENIGN)}.",
            count_table(target, target_names, sensitive_frame),
            f"Citation: {_HAM_CITATION}",
        ]
    )
    return make_bunch(
        frame=frame.iloc[keep],
        paths=[index[i] for i in image_ids],
        target=target,
        target_names=target_names,
        sensitive=sensitive_frame,
        groups=frame["lesion_id"].astype(str).to_numpy()[keep],
        image_size=image_size,
        load_images=load_images,
        n_dropped=int(drop.sum()),
        descr=descr,
    )
