"""Tests of skfairtune.datasets: HAM10000 and CSV loaders, synthetic generators."""

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import RidgeClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_val_score
from threadpoolctl import threadpool_limits

from skfairtune.datasets import (
    load_ham10000,
    load_image_csv,
    make_biased_images,
    make_pretraining_images,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
HAM = DATA / "ham10000"

# (lesion_id, image_id, dx, age, sex): ages at and around the threshold, a
# lesion with two images, and every kind of missing sensitive value.
FAKE_HAM = [
    ("HAM_1", "ISIC_01", "nv", 45.0, "male"),
    ("HAM_1", "ISIC_02", "nv", 45.0, "male"),
    ("HAM_2", "ISIC_03", "mel", 60.0, "female"),
    ("HAM_3", "ISIC_04", "akiec", 61.0, "male"),
    ("HAM_4", "ISIC_05", "bcc", 80.0, "female"),
    ("HAM_5", "ISIC_06", "bkl", None, "male"),
    ("HAM_6", "ISIC_07", "df", 30.0, "unknown"),
    ("HAM_7", "ISIC_08", "vasc", 55.0, None),
    ("HAM_8", "ISIC_09", "mel", None, "unknown"),
    ("HAM_9", "ISIC_10", "nv", 20.0, "female"),
]


def _colour(i):
    """A distinct solid colour per row, robust to JPEG compression."""
    return (20 * i + 10, 255 - 20 * i, 128)


def _write_ham(root, rows, *, split=True, size=(12, 12)):
    root.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=["lesion_id", "image_id", "dx", "age", "sex"])
    frame.insert(3, "dx_type", "histo")
    frame["localization"] = "back"
    frame.to_csv(root / "HAM10000_metadata.csv", index=False)
    for i, image_id in enumerate(frame["image_id"]):
        folder = (
            "HAM10000_images_part_1" if i < len(frame) // 2 else "HAM10000_images_part_2"
        ) if split else "HAM10000_images"
        (root / folder).mkdir(exist_ok=True)
        Image.new("RGB", size, _colour(i)).save(root / folder / f"{image_id}.jpg", quality=95)
    return root


@pytest.fixture
def fake_ham(tmp_path):
    return _write_ham(tmp_path / "ham", FAKE_HAM)


def _load_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_ham10000(*args, **kwargs)


# --------------------------------------------------------------------------- #
# load_ham10000 on a fake official layout
# --------------------------------------------------------------------------- #
def test_ham_binarisation_and_dropping(fake_ham):
    with pytest.warns(UserWarning, match=r"Dropped 4 of 10 rows.*age: 2, sex: 3"):
        data = load_ham10000(fake_ham)

    kept = ["ISIC_01", "ISIC_02", "ISIC_03", "ISIC_04", "ISIC_05", "ISIC_10"]
    assert data.frame["image_id"].tolist() == kept
    assert data.n_dropped == 4
    assert data.target.tolist() == [0, 0, 1, 1, 0, 0]
    assert data.target_names == ["benign", "malignant"]
    sensitive = data.sensitive_features
    assert sensitive.columns.tolist() == ["age", "sex"]
    assert sensitive["age"].tolist() == ["<=60", "<=60", "<=60", ">60", ">60", "<=60"]
    assert sensitive["sex"].tolist() == ["male", "male", "female", "male", "female", "female"]
    assert all(isinstance(sensitive[c].dtype, pd.CategoricalDtype) for c in sensitive)
    assert data.groups.tolist() == ["HAM_1", "HAM_1", "HAM_2", "HAM_3", "HAM_4", "HAM_9"]
    # Images come from both official part folders, in the metadata's order.
    folders = [Path(p).parent.name for p in data.paths]
    assert folders == ["HAM10000_images_part_1"] * 5 + ["HAM10000_images_part_2"]
    assert data.images.shape == (6, 12, 12, 3) and data.images.dtype == np.uint8
    rows = [0, 1, 2, 3, 4, 9]
    np.testing.assert_allclose(
        data.images.mean(axis=(1, 2)), [_colour(i) for i in rows], atol=4
    )
    assert "Tschandl" in data.DESCR and "Scientific Data 5" in data.DESCR


@pytest.mark.parametrize(
    "sensitive, dropped",
    [
        ("age", ["ISIC_06", "ISIC_09"]),
        (("sex",), ["ISIC_07", "ISIC_08", "ISIC_09"]),
        (["sex", "age"], ["ISIC_06", "ISIC_07", "ISIC_08", "ISIC_09"]),
    ],
)
def test_ham_drops_only_requested_attributes(fake_ham, sensitive, dropped):
    with pytest.warns(UserWarning, match=rf"Dropped {len(dropped)} of 10"):
        data = load_ham10000(fake_ham, sensitive=sensitive, load_images=False)
    expected = [row[1] for row in FAKE_HAM if row[1] not in dropped]
    assert data.frame["image_id"].tolist() == expected
    names = [sensitive] if isinstance(sensitive, str) else list(sensitive)
    assert data.sensitive_features.columns.tolist() == names
    assert data.images is None
    assert all(Path(p).is_file() for p in data.paths)


def test_ham_without_missing_values_does_not_warn(tmp_path):
    root = _write_ham(tmp_path / "ham", [r for r in FAKE_HAM if None not in r
                                         and r[4] != "unknown"], split=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_ham10000(root, image_size=(4, 6))
    assert data.n_dropped == 0
    assert data.images.shape == (6, 4, 6, 3)


def test_ham_age_threshold(fake_ham):
    data = _load_quietly(fake_ham, sensitive="age", age_threshold=45, load_images=False)
    ages = data.frame["age"].to_numpy()
    expected = np.where(ages <= 45, "<=45", ">45")
    assert data.sensitive_features["age"].tolist() == expected.tolist()
    assert data.sensitive_features["age"].cat.categories.tolist() == ["<=45", ">45"]


def test_ham_stratified_subset(tmp_path):
    # 48 rows in 4 strata of 8, 8, 16 and 16; half of them keeps each stratum
    # at exactly half its size.
    rows = []
    for k, (dx, age, n) in enumerate([("mel", 70, 8), ("nv", 70, 8), ("mel", 30, 16),
                                      ("nv", 30, 16)]):
        rows += [(f"HAM_{k}_{i}", f"ISIC_{k}_{i}", dx, float(age), "male") for i in range(n)]
    root = _write_ham(tmp_path / "ham", rows, size=(4, 4))
    full = load_ham10000(root, load_images=False)
    data = load_ham10000(root, n_samples=24, random_state=0)
    assert data.images.shape[0] == len(data.target) == 24
    strata = pd.crosstab(data.target, data.sensitive_features["age"].astype(str))
    assert strata.loc[1].to_dict() == {"<=60": 8, ">60": 4}  # half of mel 16 / 8
    assert strata.loc[0].to_dict() == {"<=60": 8, ">60": 4}  # half of nv 16 / 8
    assert set(data.paths) <= set(full.paths)
    again = load_ham10000(root, n_samples=24, random_state=0, load_images=False)
    other = load_ham10000(root, n_samples=24, random_state=1, load_images=False)
    np.testing.assert_array_equal(again.paths, data.paths)
    assert set(other.paths) != set(data.paths)
    # Strata too small for train_test_split's stratification still work.
    assert len(load_ham10000(root, n_samples=3, random_state=0, load_images=False).target) == 3


def _remove(path):
    def mutate(root):
        target = root / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return mutate


def _rewrite_csv(**changes):
    def mutate(root):
        frame = pd.read_csv(root / "HAM10000_metadata.csv")
        for column, value in changes.items():
            if value is None:
                frame = frame.drop(columns=column)
            else:
                frame.loc[0, column] = value
        frame.to_csv(root / "HAM10000_metadata.csv", index=False)
    return mutate


def _no_change(root):
    pass


@pytest.mark.parametrize(
    "mutate, kwargs, error, match",
    [
        (_remove(""), {}, FileNotFoundError,
         r"root folder '.*ham' does not exist; expected a folder holding "
         r"HAM10000_metadata\.csv"),
        (_remove("HAM10000_metadata.csv"), {}, FileNotFoundError,
         r"HAM10000_metadata\.csv' does not exist; expected .*HAM10000_images_part_1/"),
        (lambda root: [_remove(f"HAM10000_images_part_{i}")(root) for i in (1, 2)], {},
         FileNotFoundError, r"No HAM10000 image folder in"),
        (_remove("HAM10000_images_part_2/ISIC_10.jpg"), {}, FileNotFoundError,
         r"1 of 6 images listed .* were not found .*\(ISIC_10\)"),
        (_rewrite_csv(dx="xyz"), {}, ValueError,
         r"Column 'dx' .* values \['xyz'\] that are neither malignant"),
        (_rewrite_csv(sex="M"), {}, ValueError, r"unexpected values \['m'\]"),
        (_rewrite_csv(sex=None), {}, ValueError, r"lacks the column\(s\) \['sex'\]"),
        (_no_change, {"sensitive": "race"}, ValueError,
         r"Unknown sensitive attribute\(s\) \['race'\].*provides \['age', 'sex'\]"),
        (_no_change, {"sensitive": ()}, ValueError, r"`sensitive` is empty"),
        (_no_change, {"sensitive": ("age", "age")}, ValueError, r"duplicate names"),
        (_no_change, {"sensitive": 3}, TypeError, r"`sensitive` must be a column name"),
        (_no_change, {"n_samples": 0}, ValueError, r"n_samples == 0, must be >= 1"),
        (_no_change, {"n_samples": 7}, ValueError,
         r"`n_samples`=7 exceeds the 6 images left after dropping 4 rows"),
        (_no_change, {"image_size": 0}, ValueError, r"`size` must be positive"),
        (_no_change, {"age_threshold": "60"}, TypeError, r"age_threshold must be an instance"),
    ],
)
def test_ham_errors(fake_ham, mutate, kwargs, error, match):
    mutate(fake_ham)
    with pytest.raises(error, match=match):
        _load_quietly(fake_ham, **kwargs)


# --------------------------------------------------------------------------- #
# load_ham10000 on the real data
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def real_ham():
    if not (HAM / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"real HAM10000 data not found at {HAM}")
    return HAM


def test_real_ham_counts_match_readme(real_ham):
    with pytest.warns(UserWarning, match=r"Dropped 36 of 5984 rows .*\(age: 36\)"):
        data = load_ham10000(real_ham, sensitive="age", load_images=False)
    # The counts the data folder's own README publishes for this copy (not computed by us).
    assert data.n_dropped == 36
    assert int(data.target.sum()) == 673
    age = data.sensitive_features["age"]
    assert (age == "<=60").sum() == 4416 and (age == ">60").sum() == 1532


def test_real_ham_default_matches_csv(real_ham):
    csv = pd.read_csv(real_ham / "HAM10000_metadata.csv")
    complete = csv[csv["age"].notna() & csv["sex"].isin(["male", "female"])]
    with pytest.warns(UserWarning, match=rf"Dropped {len(csv) - len(complete)} of"):
        data = load_ham10000(real_ham, load_images=False)
    assert data.frame["image_id"].tolist() == complete["image_id"].tolist()
    assert data.target.tolist() == complete["dx"].isin(["akiec", "mel"]).astype(int).tolist()
    assert data.sensitive_features["sex"].tolist() == complete["sex"].tolist()
    np.testing.assert_array_equal(data.groups, complete["lesion_id"])


def test_real_ham_subset_with_images(real_ham):
    data = _load_quietly(real_ham, image_size=32, n_samples=60, random_state=0)
    assert data.images.shape == (60, 32, 32, 3)
    # Stratification keeps the malignant rate (11%) of the full data.
    assert 5 <= data.target.sum() <= 9


# --------------------------------------------------------------------------- #
# load_image_csv
# --------------------------------------------------------------------------- #
@pytest.fixture
def image_csv(tmp_path):
    folder = tmp_path / "set"
    (folder / "img").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere.png"
    for i in range(4):
        Image.new("RGB", (8, 8), _colour(i)).save(folder / "img" / f"{i}.png")
    Image.new("RGB", (8, 8), _colour(4)).save(elsewhere)
    frame = pd.DataFrame(
        {
            "file": ["img/0.png", "img/1.png", "img/2.png", "img/3.png", str(elsewhere)],
            "diagnosis": ["mel", "nv", "bcc", "nv", "mel"],
            "sex": ["F", "M", None, "M", "F"],
            "site": ["a", "a", "b", "b", None],
            "patient": [1, 1, 2, 3, 4],
        }
    )
    frame.to_csv(folder / "labels.csv", index=False)
    return folder / "labels.csv"


def test_image_csv_binarised(image_csv):
    with pytest.warns(UserWarning, match=r"Dropped 2 of 5 rows.*sex: 1, site: 1"):
        data = load_image_csv(
            image_csv, image_column="file", target_column="diagnosis",
            sensitive_columns=["sex", "site"], groups_column="patient",
            positive_labels=["mel", "bcc"],
        )
    assert data.n_dropped == 2
    assert data.target.tolist() == [1, 0, 0]
    assert data.target_names == ["negative", "positive"]
    assert data.sensitive_features["sex"].tolist() == ["F", "M", "M"]
    assert data.sensitive_features["site"].cat.categories.tolist() == ["a", "b"]
    assert data.groups.tolist() == [1, 1, 3]
    # Relative paths resolve against the CSV's folder.
    assert [Path(p).relative_to(image_csv.parent).as_posix() for p in data.paths] == [
        "img/0.png", "img/1.png", "img/3.png"]
    np.testing.assert_array_equal(data.images[:, 0, 0], [_colour(i) for i in (0, 1, 3)])


def test_image_csv_relative_to_root(image_csv, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(image_csv.parent / "img", moved / "img")
    shutil.rmtree(image_csv.parent / "img")
    with pytest.warns(UserWarning, match=r"Dropped 1 of 5"):
        data = load_image_csv(
            image_csv, image_column="file", target_column="diagnosis",
            sensitive_columns="site", root=moved, image_size=4,
        )
    assert all(Path(p).is_file() for p in data.paths)
    assert Path(data.paths[0]).parent == moved / "img"
    # Without positive_labels the sorted labels are encoded 0, 1, 2.
    assert data.target_names == ["bcc", "mel", "nv"]
    assert data.target.tolist() == [1, 2, 0, 2]
    assert data.images.shape == (4, 4, 4, 3)
    assert data.groups is None


def _csv_kwargs(**changes):
    kwargs = dict(image_column="file", target_column="diagnosis", sensitive_columns="sex")
    kwargs.update(changes)
    return kwargs


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (_csv_kwargs(image_column="path"), ValueError,
         r"`image_column`: column\(s\) \['path'\] not in .*whose columns are \['file'"),
        (_csv_kwargs(target_column="dx"), ValueError, r"`target_column`: column\(s\) \['dx'\]"),
        (_csv_kwargs(sensitive_columns=["sex", "age"]), ValueError,
         r"`sensitive_columns`: column\(s\) \['age'\]"),
        (_csv_kwargs(groups_column="pid"), ValueError, r"`groups_column`: column\(s\) \['pid'\]"),
        (_csv_kwargs(target_column="site"), ValueError,
         r"`target_column` column 'site' has 1 missing values at rows \[4\]"),
        (_csv_kwargs(positive_labels="MEL"), ValueError,
         r"None of `positive_labels`=\['MEL'\] occur in column 'diagnosis'.*spelling"),
        (_csv_kwargs(sensitive_columns=[]), ValueError, r"`sensitive_columns` is empty"),
        (_csv_kwargs(image_size=(2, 0)), ValueError, r"`size` must be positive"),
    ],
)
def test_image_csv_errors(image_csv, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_image_csv(image_csv, **kwargs)


@pytest.mark.parametrize("load_images", [True, False])
def test_image_csv_missing_files(image_csv, load_images):
    (image_csv.parent / "img" / "1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 4 image files .*1\.png"):
        _load_csv_quietly(image_csv, load_images=load_images)


def test_image_csv_missing_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`csv_path` '.*nope\.csv' does not exist"):
        load_image_csv(tmp_path / "nope.csv", **_csv_kwargs())


def _load_csv_quietly(csv, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_image_csv(csv, **_csv_kwargs(**kwargs))


# --------------------------------------------------------------------------- #
# Synthetic generators
# --------------------------------------------------------------------------- #
def _per_group_auc(data):
    """Out-of-fold AUC per group of a linear model on raw pixels."""
    X = data.images.reshape(len(data.images), -1) / 255.0
    y = data.target
    minority = (data.sensitive_features["group"] == "minority").to_numpy()
    folds = StratifiedKFold(5, shuffle=True, random_state=0).split(X, 2 * y + minority)
    # One BLAS thread: the CI machine is shared and this is a tiny problem.
    with threadpool_limits(1):
        score = cross_val_predict(RidgeClassifier(alpha=10.0), X, y, cv=folds,
                                  method="decision_function")
    return (
        roc_auc_score(y[~minority], score[~minority]),
        roc_auc_score(y[minority], score[minority]),
    )


@pytest.mark.parametrize("image_size, seed", [(16, 0), (16, 1), (32, 2)])
def test_biased_images_are_biased_but_learnable(image_size, seed):
    data = make_biased_images(image_size=image_size, random_state=seed)
    majority_auc, minority_auc = _per_group_auc(data)
    assert majority_auc > 0.6 and minority_auc > 0.6
    assert majority_auc - minority_auc > 0.05


def test_biased_images_layout():
    data = make_biased_images(n_samples=300, image_size=20, minority_fraction=0.3,
                              positive_fraction=0.4, label_noise=0.0, random_state=0)
    assert data.images.shape == (300, 20, 20, 3) and data.images.dtype == np.uint8
    group = data.sensitive_features["group"]
    assert data.sensitive_features.columns.tolist() == ["group"]
    assert group.cat.categories.tolist() == ["majority", "minority"]
    counts = pd.crosstab(group, data.target)
    # Exact group sizes and exact positive rates without label noise.
    assert counts.loc["majority"].tolist() == [126, 84]
    assert counts.loc["minority"].tolist() == [54, 36]
    assert data.groups is None and "Minority group" in data.DESCR


def test_biased_images_label_noise_flips_labels_only():
    clean = make_biased_images(label_noise=0.0, random_state=3)
    noisy = make_biased_images(label_noise=0.2, random_state=3)
    np.testing.assert_array_equal(clean.images, noisy.images)
    assert 0.15 < np.mean(clean.target != noisy.target) < 0.25


def test_minority_shift_controls_appearance():
    def group_means(shift):
        data = make_biased_images(minority_shift=shift, random_state=0)
        minority = (data.sensitive_features["group"] == "minority").to_numpy()
        pixels = data.images.reshape(len(minority), -1, 3).mean(axis=1)
        return pixels[~minority].mean(0), pixels[minority].mean(0)

    majority, minority = group_means(0.0)
    np.testing.assert_allclose(majority, minority, atol=4)
    majority, minority = group_means(1.0)
    assert np.all(majority - minority > 40)


@pytest.mark.parametrize("make", [make_biased_images, make_pretraining_images])
def test_generators_are_deterministic(make):
    a = make(n_samples=50, random_state=7)
    b = make(n_samples=50, random_state=7)
    c = make(n_samples=50, random_state=8)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.target, b.target)
    assert not np.array_equal(a.images, c.images)
    rng = np.random.RandomState(7)
    assert make(n_samples=50, random_state=rng).images.shape == a.images.shape


@pytest.mark.parametrize("n_classes", [2, 5, 8])
def test_pretraining_images_layout(n_classes):
    data = make_pretraining_images(n_samples=101, image_size=16, n_classes=n_classes,
                                   random_state=0)
    assert data.images.shape == (101, 16, 16, 3) and data.images.dtype == np.uint8
    counts = np.bincount(data.target, minlength=n_classes)
    assert len(counts) == n_classes and counts.max() - counts.min() <= 1
    assert len(data.target_names) == n_classes == len(set(data.target_names))


def test_pretraining_task_is_learnable():
    # The patterns sit at random positions, so a translation-invariant feature
    # (the magnitude spectrum) makes them linearly separable; chance is 1/8.
    data = make_pretraining_images(n_samples=400, image_size=16, n_classes=8,
                                   random_state=0)
    gray = data.images.astype(float).mean(axis=-1)
    gray -= gray.mean(axis=(1, 2), keepdims=True)
    spectrum = np.log1p(np.abs(np.fft.rfft2(gray))).reshape(len(gray), -1)
    with threadpool_limits(1):
        accuracy = cross_val_score(RidgeClassifier(alpha=1.0), spectrum, data.target, cv=3)
    assert accuracy.mean() > 0.6


@pytest.mark.parametrize(
    "make, kwargs, error, match",
    [
        (make_biased_images, {"n_samples": 1}, ValueError, r"n_samples == 1, must be >= 2"),
        (make_biased_images, {"image_size": 4}, ValueError, r"image_size == 4, must be >= 8"),
        (make_biased_images, {"image_size": 16.0}, TypeError, r"image_size must be an instance"),
        (make_biased_images, {"minority_fraction": 1.0}, ValueError,
         r"minority_fraction == 1.0, must be < 1"),
        (make_biased_images, {"minority_shift": 1.5}, ValueError, r"minority_shift == 1.5"),
        (make_biased_images, {"label_noise": 0.5}, ValueError,
         r"label_noise == 0.5, must be < 0.5"),
        (make_biased_images, {"positive_fraction": 0}, ValueError,
         r"positive_fraction == 0, must be > 0"),
        (make_biased_images, {"n_samples": 10, "minority_fraction": 0.01}, ValueError,
         r"gives 0 minority images; both groups need at least one"),
        (make_pretraining_images, {"n_classes": 9}, ValueError, r"n_classes == 9, must be <= 8"),
        (make_pretraining_images, {"n_classes": 1}, ValueError, r"n_classes == 1, must be >= 2"),
        (make_pretraining_images, {"n_samples": 0}, ValueError, r"n_samples == 0"),
    ],
)
def test_generator_errors(make, kwargs, error, match):
    with pytest.raises(error, match=match):
        make(**kwargs)
