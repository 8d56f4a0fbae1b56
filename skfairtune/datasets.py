"""Image data sets with sensitive attributes, in the style of :mod:`sklearn.datasets`.

Loaders read images from disk once into a uint8 array and return a
:class:`~sklearn.utils.Bunch` with the same layout everywhere:

- ``images``: uint8 array of shape (n_samples, height, width, 3), or None;
- ``target``: int array of class indices into ``target_names``;
- ``sensitive_features``: DataFrame, one categorical column per attribute;
- ``groups``: sample groups for grouped splits (e.g. one lesion), or None;
- ``DESCR``: a description with counts per group.

The synthetic generators need no files, so demos and tests run anywhere.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_random_state, check_scalar

from ._imageio import _check_size, decode_images

__all__ = [
    "load_ham10000",
    "load_image_csv",
    "make_biased_images",
    "make_pretraining_images",
]

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


# --------------------------------------------------------------------------- #
# Shared helpers of the loaders
# --------------------------------------------------------------------------- #
def _as_name_list(value, name: str) -> list[str]:
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


def _check_n_samples(n_samples) -> None:
    if n_samples is not None:
        check_scalar(n_samples, "n_samples", Integral, min_val=1)


def _stratified_subset(strata: np.ndarray, n_samples: int, random_state) -> np.ndarray:
    """Sorted indices of a random subset with the strata's proportions.

    Each stratum gets its proportional share, rounded by largest remainder, so
    that, unlike ``train_test_split(stratify=...)``, strata with a single
    member are allowed.
    """
    rng = check_random_state(random_state)
    _, codes, counts = np.unique(strata, return_inverse=True, return_counts=True)
    quota = n_samples * counts / counts.sum()
    take = np.floor(quota).astype(int)
    # Ties in the remainders are broken at random, not by stratum order.
    tie_break = rng.permutation(len(counts))
    order = np.lexsort((tie_break, -(quota - take)))
    take[order[: n_samples - take.sum()]] += 1
    chosen = [
        rng.choice(np.flatnonzero(codes == k), size=k_take, replace=False)
        for k, k_take in enumerate(take)
        if k_take
    ]
    return np.sort(np.concatenate(chosen))


def _missing_sensitive(sensitive: pd.DataFrame, n_rows: int, source: str) -> np.ndarray:
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


def _check_files(paths: Sequence[str], what: str) -> None:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(f"'{p}'" for p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} image files listed in {what} do not "
            f"exist: {shown}{more}."
        )


def _count_table(target: np.ndarray, target_names, sensitive: pd.DataFrame) -> str:
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


def _make_bunch(
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


# --------------------------------------------------------------------------- #
# HAM10000
# --------------------------------------------------------------------------- #
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
    names = _as_name_list(sensitive, "sensitive")
    unknown = [name for name in names if name not in _HAM_SENSITIVE]
    if unknown:
        raise ValueError(
            f"Unknown sensitive attribute(s) {unknown} in `sensitive`; HAM10000 "
            f"provides {list(_HAM_SENSITIVE)}."
        )
    check_scalar(age_threshold, "age_threshold", Real)
    _check_n_samples(n_samples)
    image_size = _check_size(image_size)
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
    drop = _missing_sensitive(sensitive_frame, n_rows, f"'{csv_path}'")
    keep = np.flatnonzero(~drop)
    target = dx.isin(_HAM_MALIGNANT).to_numpy(dtype=int)
    if n_samples is not None:
        if n_samples > len(keep):
            raise ValueError(
                f"`n_samples`={n_samples} exceeds the {len(keep)} images left after "
                f"dropping {int(drop.sum())} rows with missing sensitive values; "
                "pass a smaller `n_samples` or None."
            )
        strata = target[keep].astype(str).astype(object)
        for name in names:
            strata = strata + "|" + sensitive_frame[name].to_numpy(dtype=str)[keep]
        keep = keep[_stratified_subset(strata, n_samples, random_state)]

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
            _count_table(target, target_names, sensitive_frame),
            f"Citation: {_HAM_CITATION}",
        ]
    )
    return _make_bunch(
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


# --------------------------------------------------------------------------- #
# Generic CSV of image paths
# --------------------------------------------------------------------------- #
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
    sensitive_names = _as_name_list(sensitive_columns, "sensitive_columns")
    image_size = _check_size(image_size)
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
    drop = _missing_sensitive(sensitive_frame, n_rows, f"'{csv_path}'")
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
            _count_table(target, target_names, sensitive_frame)
            if len(target_names) == 2
            else f"Images: {len(target):,}",
        ]
    )
    groups = frame[groups_column].to_numpy()[keep] if groups_column is not None else None
    return _make_bunch(
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


# --------------------------------------------------------------------------- #
# Synthetic generators (pure numpy, no files)
# --------------------------------------------------------------------------- #
# Background tones (RGB in [0, 1]) and lesion colours of the two groups of
# make_biased_images; make_pretraining_images spans the range between them so
# that a backbone pre-trained on it has seen both appearances.
_TONE_MAJORITY = np.array([0.80, 0.62, 0.52], dtype=np.float32)
_TONE_MINORITY = np.array([0.50, 0.36, 0.28], dtype=np.float32)
_BLOB_MAJORITY = np.array([1.00, 0.90, 0.80], dtype=np.float32)
_BLOB_MINORITY = np.array([0.60, 0.30, 0.90], dtype=np.float32)
# Calibrated (see tests/test_datasets.py) so that a logistic regression on
# pixels reaches a held-out AUC of about 0.85 on the majority and 0.7 on the
# minority at 16 and 32 px with the defaults.
_BLOB_AMPLITUDE = 0.35
_TEXTURE_AMPLITUDE = 0.04
_PIXEL_NOISE = 0.03
_PATTERNS = (
    "spot", "ring", "horizontal stripes", "vertical stripes",
    "diagonal stripes", "anti-diagonal stripes", "checkerboard", "square",
)


def _generator(random_state) -> np.random.Generator:
    """A fast numpy Generator seeded from sklearn's ``random_state`` convention."""
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    return np.random.default_rng(seed)


def _smooth_field(rng, n: int, size: int, cells: int, channels: int) -> np.ndarray:
    """Smooth random texture of shape (n, size, size, channels), about unit std.

    White noise on a ``cells x cells`` grid is interpolated with a Gaussian
    kernel, so the texture scale is relative to the image and looks the same
    at 16 and 32 px.
    """
    t = (np.arange(size, dtype=np.float32) + 0.5) * cells / size - 0.5
    kernel = np.exp(-0.5 * ((t[:, None] - np.arange(cells)) / 0.7) ** 2)
    kernel = (kernel / kernel.sum(axis=1, keepdims=True)).astype(np.float32)
    coarse = rng.standard_normal((n, channels, cells, cells), dtype=np.float32)
    field = kernel @ coarse @ kernel.T
    field /= field.std() + 1e-6
    return field.transpose(0, 2, 3, 1)


def _background(rng, tone: np.ndarray, texture: np.ndarray, size: int) -> np.ndarray:
    """Skin-like background: a tone, smooth texture and pixel noise, float32."""
    n = len(tone)
    brightness = 1 + 0.08 * rng.standard_normal((n, 1, 1, 1), dtype=np.float32)
    images = _smooth_field(rng, n, size, 4, 1) + 0.4 * _smooth_field(rng, n, size, 3, 3)
    images *= texture.reshape(n, 1, 1, 1)
    images += tone.reshape(n, 1, 1, 3) * brightness
    images += _PIXEL_NOISE * rng.standard_normal(images.shape, dtype=np.float32)
    return images


def _centred_coordinates(rng, n: int, size: int):
    """Per-image offsets ``(dy, dx)`` of each row/column from a random centre.

    Centres stay a quarter of the image away from the border so that the
    pattern is fully visible. Shapes are (n, size) each.
    """
    grid = np.arange(size, dtype=np.float32) + 0.5
    low, high = 0.25 * size, 0.75 * size
    cy = rng.uniform(low, high, n).astype(np.float32)
    cx = rng.uniform(low, high, n).astype(np.float32)
    return grid - cy[:, None], grid - cx[:, None]


def _to_uint8(images: np.ndarray) -> np.ndarray:
    np.clip(images, 0.0, 1.0, out=images)
    images *= 255.0
    images += 0.5
    return images.astype(np.uint8)


def make_biased_images(
    n_samples: int = 800,
    *,
    image_size: int = 16,
    minority_fraction: float = 0.2,
    minority_shift: float = 1.0,
    label_noise: float = 0.05,
    positive_fraction: float = 0.3,
    random_state: int | np.random.RandomState | None = None,
) -> Bunch:
    """Generate a biased binary image task with a majority and a minority group.

    Every image is a skin-like background (tone, smooth texture, pixel noise).
    Positive images also hold a faint bright spot of random size at a random
    position. The minority group is rarer and looks different: a darker tone,
    a spot of a different colour and lower contrast, and stronger texture. A
    model trained on the pooled data is therefore measurably worse on the
    minority (e.g. a logistic regression on pixels reaches a held-out AUC near
    0.85 on the majority against 0.7 on the minority with the defaults), as
    with under-represented patient groups in medical imaging.

    Parameters
    ----------
    n_samples : int, default=800
        Number of images.
    image_size : int, default=16
        Height and width of the images, at least 8.
    minority_fraction : float, default=0.2
        Fraction of images in the minority group, in (0, 1).
    minority_shift : float, default=1.0
        Strength of the minority's change of appearance, in [0, 1]: 0 makes
        both groups look alike (the minority is then only rarer), 1 is the
        full shift described above.
    label_noise : float, default=0.05
        Fraction of labels flipped at random after the images are drawn, in
        [0, 0.5); it caps the attainable AUC of both groups alike.
    positive_fraction : float, default=0.3
        Fraction of positive images in each group (before label noise), in
        (0, 1).
    random_state : int, RandomState instance or None, default=None
        Determines the generation; pass an int for reproducible output.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        images : ndarray of shape (n_samples, image_size, image_size, 3), dtype uint8
            The images.
        target : ndarray of shape (n_samples,), dtype int
            1 where the (possibly flipped) label is positive.
        target_names : list of str
            ``["negative", "positive"]``.
        sensitive_features : DataFrame of shape (n_samples, 1)
            Categorical column ``"group"``: ``"majority"`` or ``"minority"``.
        groups : None
            Every image is independent.
        DESCR : str
            Description with counts per group.

    See Also
    --------
    make_pretraining_images : A different synthetic task to pre-train on.

    Examples
    --------
    >>> from skfairtune.datasets import make_biased_images
    >>> data = make_biased_images(n_samples=100, image_size=16, random_state=0)
    >>> data.images.shape, data.images.dtype, data.target.shape
    ((100, 16, 16, 3), dtype('uint8'), (100,))
    >>> data.sensitive_features["group"].value_counts().to_dict()
    {'majority': 80, 'minority': 20}
    """
    check_scalar(n_samples, "n_samples", Integral, min_val=2)
    check_scalar(image_size, "image_size", Integral, min_val=8)
    check_scalar(minority_fraction, "minority_fraction", Real, min_val=0, max_val=1,
                 include_boundaries="neither")
    check_scalar(minority_shift, "minority_shift", Real, min_val=0, max_val=1)
    check_scalar(label_noise, "label_noise", Real, min_val=0, max_val=0.5,
                 include_boundaries="left")
    check_scalar(positive_fraction, "positive_fraction", Real, min_val=0, max_val=1,
                 include_boundaries="neither")
    n_minority = int(round(n_samples * minority_fraction))
    if not 0 < n_minority < n_samples:
        raise ValueError(
            f"`minority_fraction`={minority_fraction} of `n_samples`={n_samples} gives "
            f"{n_minority} minority images; both groups need at least one image."
        )
    rng = _generator(random_state)
    size = int(image_size)

    # Exact group sizes and per-group positive counts: the bias does not hinge
    # on sampling luck, and the group balance is what the caller asked for.
    minority = np.zeros(n_samples, dtype=bool)
    minority[rng.choice(n_samples, n_minority, replace=False)] = True
    target = np.zeros(n_samples, dtype=int)
    for in_group in (~minority, minority):
        members = np.flatnonzero(in_group)
        n_positive = int(round(len(members) * positive_fraction))
        target[rng.choice(members, n_positive, replace=False)] = 1

    shift = (minority * np.float32(minority_shift)).astype(np.float32)[:, None]
    tone = _TONE_MAJORITY + shift * (_TONE_MINORITY - _TONE_MAJORITY)
    texture = _TEXTURE_AMPLITUDE * (1 + 0.5 * shift[:, 0])
    images = _background(rng, tone, texture, size)

    dy, dx = _centred_coordinates(rng, n_samples, size)
    sigma = size * rng.uniform(0.08, 0.14, n_samples).astype(np.float32)[:, None]
    # A Gaussian spot is separable: two (n, size) profiles instead of an exp
    # over every pixel.
    profile_y = np.exp(-0.5 * (dy / sigma) ** 2)
    profile_x = np.exp(-0.5 * (dx / sigma) ** 2)
    colour = _BLOB_MAJORITY + shift * (_BLOB_MINORITY - _BLOB_MAJORITY)
    amplitude = _BLOB_AMPLITUDE * (1 - 0.2 * shift) * target[:, None]
    spot = profile_y[:, :, None] * profile_x[:, None, :]
    images += spot[..., None] * (amplitude * colour)[:, None, None, :]

    flipped = rng.random(n_samples) < label_noise
    target = np.where(flipped, 1 - target, target)
    group = pd.Categorical(
        np.where(minority, "minority", "majority"), categories=["majority", "minority"]
    )
    sensitive = pd.DataFrame({"group": group})
    target_names = ["negative", "positive"]
    descr = "\n".join(
        [
            "Synthetic biased images (skfairtune.datasets.make_biased_images)",
            "================================================================",
            f"{size}x{size} RGB; positive = a faint bright spot on a textured background.",
            f"Minority group: {minority_fraction:.0%} of images, appearance shift "
            f"{minority_shift:g} (darker tone, differently coloured lower-contrast "
            "spot, stronger texture).",
            f"Label noise: {int(flipped.sum())} labels flipped ({label_noise:.0%}).",
            _count_table(target, target_names, sensitive),
        ]
    )
    return Bunch(
        images=_to_uint8(images),
        target=target,
        target_names=target_names,
        sensitive_features=sensitive,
        groups=None,
        DESCR=descr,
    )


def _pattern(kind: int, dy: np.ndarray, dx: np.ndarray, size: int, rng) -> np.ndarray:
    """Intensity in [0, 1] of pattern ``kind`` for each image, (n, size, size)."""
    n = len(dy)
    yy, xx = dy[:, :, None], dx[:, None, :]
    scale = size * rng.uniform(0.10, 0.16, n).astype(np.float32)[:, None, None]
    period = max(3.0, size / 5)
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    window = np.exp(-0.5 * (yy**2 + xx**2) / (1.6 * scale) ** 2)
    wave = 2 * np.pi / period
    if kind == 0:
        return np.exp(-0.5 * (yy**2 + xx**2) / scale**2)
    if kind == 1:
        radius = np.sqrt(yy**2 + xx**2)
        return np.exp(-0.5 * ((radius - 1.5 * scale) / (0.35 * scale)) ** 2)
    if kind == 2:
        return window * (0.5 + 0.5 * np.cos(wave * yy + phase))
    if kind == 3:
        return window * (0.5 + 0.5 * np.cos(wave * xx + phase))
    if kind == 4:
        return window * (0.5 + 0.5 * np.cos(wave * (yy + xx) / np.sqrt(2) + phase))
    if kind == 5:
        return window * (0.5 + 0.5 * np.cos(wave * (yy - xx) / np.sqrt(2) + phase))
    if kind == 6:
        return window * (0.5 + 0.5 * np.cos(wave * yy + phase) * np.cos(wave * xx))
    # Square: a soft-edged box, flat inside unlike the spot.
    half = 1.3 * scale
    edge = np.maximum(np.abs(yy), np.abs(xx)) - half
    return 1 / (1 + np.exp(np.clip(edge / 0.5, -30, 30)))


def make_pretraining_images(
    n_samples: int = 2000,
    *,
    image_size: int = 16,
    n_classes: int = 4,
    random_state: int | np.random.RandomState | None = None,
) -> Bunch:
    """Generate a multi-class pattern task for pre-training a small backbone.

    Each image shows one of ``n_classes`` patterns (spot, ring, horizontal
    stripes, vertical stripes, diagonal stripes, anti-diagonal stripes,
    checkerboard, square; in this order) of random size, phase, colour and
    contrast, brighter or darker than a random position of the same textured,
    skin-like background as :func:`make_biased_images`. Pre-training on it
    and then fine-tuning on :func:`make_biased_images` mimics the
    "pre-train on natural images, fine-tune on medical images" setting
    without third-party data: the low-level statistics (tones, textures,
    spots) are shared, the task is not.

    Parameters
    ----------
    n_samples : int, default=2000
        Number of images; classes are balanced (equal up to one image).
    image_size : int, default=16
        Height and width of the images, at least 8.
    n_classes : int, default=4
        Number of pattern classes, from 2 to 8.
    random_state : int, RandomState instance or None, default=None
        Determines the generation; pass an int for reproducible output.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        images : ndarray of shape (n_samples, image_size, image_size, 3), dtype uint8
            The images.
        target : ndarray of shape (n_samples,), dtype int
            The pattern class, in ``range(n_classes)``.
        target_names : list of str
            The name of each pattern class.
        DESCR : str
            Description of the task.

    See Also
    --------
    make_biased_images : The fairness task to fine-tune on.

    Examples
    --------
    >>> import numpy as np
    >>> from skfairtune.datasets import make_pretraining_images
    >>> data = make_pretraining_images(n_samples=60, image_size=32, n_classes=3,
    ...                                random_state=0)
    >>> data.images.shape, data.target_names
    ((60, 32, 32, 3), ['spot', 'ring', 'horizontal stripes'])
    >>> np.bincount(data.target).tolist()
    [20, 20, 20]
    """
    check_scalar(n_samples, "n_samples", Integral, min_val=1)
    check_scalar(image_size, "image_size", Integral, min_val=8)
    check_scalar(n_classes, "n_classes", Integral, min_val=2, max_val=len(_PATTERNS))
    rng = _generator(random_state)
    size = int(image_size)
    target = rng.permutation(np.arange(n_samples) % n_classes)

    mix = rng.random((n_samples, 1), dtype=np.float32)
    tone = _TONE_MAJORITY + mix * (_TONE_MINORITY - _TONE_MAJORITY)
    texture = _TEXTURE_AMPLITUDE * rng.uniform(0.5, 1.5, n_samples).astype(np.float32)
    images = _background(rng, tone, texture, size)

    dy, dx = _centred_coordinates(rng, n_samples, size)
    colour = rng.uniform(0.3, 1.0, (n_samples, 3)).astype(np.float32)
    colour /= colour.max(axis=1, keepdims=True)
    sign = np.where(rng.random(n_samples) < 0.7, 1.0, -1.0).astype(np.float32)
    amplitude = sign * rng.uniform(0.2, 0.45, n_samples).astype(np.float32)
    for kind in range(n_classes):
        members = np.flatnonzero(target == kind)
        if members.size:
            pattern = _pattern(kind, dy[members], dx[members], size, rng)
            images[members] += pattern[..., None] * (
                amplitude[members, None] * colour[members]
            )[:, None, None, :]

    names = list(_PATTERNS[:n_classes])
    descr = "\n".join(
        [
            "Synthetic pattern images (skfairtune.datasets.make_pretraining_images)",
            "======================================================================",
            f"{n_samples:,} images, {size}x{size} RGB, {n_classes} balanced classes: "
            + ", ".join(names) + ".",
            "Random position, size, phase, colour and contrast (70% brighter, 30% "
            "darker than the background) over the textured skin-like backgrounds "
            "of make_biased_images, with tones spanning both of its groups.",
        ]
    )
    return Bunch(images=_to_uint8(images), target=target, target_names=names, DESCR=descr)
