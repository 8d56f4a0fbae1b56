"""Tests for skfairtune.metrics: agreement with fairlearn / scikit-learn, and errors."""

from __future__ import annotations

import os
from pathlib import Path
import re
import subprocess
import sys
import warnings

from fairlearn.metrics import MetricFrame
from fairlearn.metrics import demographic_parity_difference as fl_demographic_parity_difference
from fairlearn.metrics import equalized_odds_difference as fl_equalized_odds_difference
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, roc_auc_score

import skfairtune.metrics as fm
from skfairtune.metrics._group_inputs import validate_group_inputs
from skfairtune.metrics import (
    UndefinedGroupWarning,
    auc_gap,
    demographic_parity_difference,
    equalized_odds_difference,
    group_auc,
    min_group_auc,
    overall_auc,
    worst_group_accuracy,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
TOL = 1e-12


def _scores(rng, y, n_ties):
    """Scores that depend on y, with heavy ties in the first ``n_ties`` samples."""
    s = rng.normal(size=len(y)) + 0.8 * y
    s[:n_ties] = np.round(s[:n_ties], 1)
    return s


def _sensitive(kind, rng, n):
    """Return sensitive features of a given input type (and a readable name)."""
    sex = rng.choice(["F", "M"], n)
    age = rng.choice(["<=60", ">60", "unknown"], n, p=[0.5, 0.3, 0.2])
    site = rng.integers(0, 3, n)
    if kind == "list_str_3":
        return list(age)
    if kind == "ndarray_int_3":
        return site
    if kind == "ndarray_str_2":
        return sex
    if kind == "series_bool_2":
        return pd.Series(sex == "F", name="female")
    if kind == "series_categorical_3":
        return pd.Series(pd.Categorical(age, categories=[">60", "unknown", "<=60"]), name="age")
    if kind == "ndarray_2d_intersectional":
        return np.column_stack([sex, age]).astype(object)
    if kind == "dataframe_intersectional":
        return pd.DataFrame({"sex": sex, "age": age, "site": site})
    raise AssertionError(kind)


INPUT_KINDS = [
    "list_str_3",
    "ndarray_int_3",
    "ndarray_str_2",
    "series_bool_2",
    "series_categorical_3",
    "ndarray_2d_intersectional",
    "dataframe_intersectional",
]


def _as_dict(series):
    return {k: float(v) for k, v in series.items()}


@pytest.fixture(params=INPUT_KINDS)
def grouped_data(request):
    rng = np.random.default_rng(INPUT_KINDS.index(request.param))
    n = 2_000
    y = rng.integers(0, 2, n)
    return y, _scores(rng, y, n_ties=n // 2), _sensitive(request.param, rng, n)


def test_auc_metrics_equal_fairlearn_metricframe(grouped_data):
    y, s, sf = grouped_data
    frame = MetricFrame(metrics=roc_auc_score, y_true=y, y_pred=s, sensitive_features=sf)

    ours = group_auc(y, s, sensitive_features=sf)
    expected = _as_dict(frame.by_group)
    assert set(_as_dict(ours)) == set(expected)
    for label, value in _as_dict(ours).items():
        assert value == pytest.approx(expected[label], abs=TOL)
    assert min_group_auc(y, s, sensitive_features=sf) == pytest.approx(frame.group_min(), abs=TOL)
    assert auc_gap(y, s, sensitive_features=sf) == pytest.approx(frame.difference(), abs=TOL)
    assert overall_auc(y, s, sensitive_features=sf) == pytest.approx(roc_auc_score(y, s), abs=TOL)


def test_group_index_matches_metricframe_names(grouped_data):
    y, s, sf = grouped_data
    frame = MetricFrame(metrics=roc_auc_score, y_true=y, y_pred=s, sensitive_features=sf)
    ours = group_auc(y, s, sensitive_features=sf)
    assert list(ours.index.names) == list(frame.by_group.index.names)
    assert ours.index.tolist() == frame.by_group.index.tolist()  # same labels, same order
    assert isinstance(ours.index, pd.MultiIndex) == isinstance(frame.by_group.index, pd.MultiIndex)


def test_thresholded_metrics_equal_fairlearn_exactly(grouped_data):
    y, s, sf = grouped_data
    pred = (s > 0.4).astype(int)
    for method in ["between_groups", "to_overall"]:
        for agg in ["worst_case", "mean"]:
            assert equalized_odds_difference(
                y, pred, sensitive_features=sf, method=method, agg=agg
            ) == fl_equalized_odds_difference(
                y, pred, sensitive_features=sf, method=method, agg=agg
            )
        assert demographic_parity_difference(
            y, pred, sensitive_features=sf, method=method
        ) == fl_demographic_parity_difference(y, pred, sensitive_features=sf, method=method)
    frame = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=pred, sensitive_features=sf)
    assert worst_group_accuracy(y, pred, sensitive_features=sf) == frame.group_min()


@pytest.mark.parametrize(
    "labels, pos_label",
    [
        ((0, 1), None),
        ((False, True), None),
        ((-1, 1), None),
        ((0.0, 1.0), None),
        (("benign", "malignant"), "malignant"),
        (("malignant", "benign"), "malignant"),
        ((2, 7), 2),
    ],
)
def test_label_types_and_pos_label(labels, pos_label):
    rng = np.random.default_rng(1)
    y01 = rng.integers(0, 2, 600)
    y = np.array(labels, dtype=object if isinstance(labels[0], str) else None)[y01]
    positive = (y == (labels[1] if pos_label is None else pos_label))
    s = _scores(rng, positive.astype(int), 300)
    sf = rng.choice(["a", "b", "c"], 600)
    kw = {} if pos_label is None else {"pos_label": pos_label}
    frame = MetricFrame(metrics=roc_auc_score, y_true=positive, y_pred=s, sensitive_features=sf)
    assert min_group_auc(y, s, sensitive_features=sf, **kw) == pytest.approx(
        frame.group_min(), abs=TOL
    )
    pred = np.where(s > 0.3, labels[1] if pos_label is None else pos_label,
                    labels[0] if pos_label in (None, labels[1]) else labels[1])
    pred_positive = (s > 0.3).astype(int)
    assert equalized_odds_difference(y, pred, sensitive_features=sf, **kw) == (
        fl_equalized_odds_difference(positive.astype(int), pred_positive, sensitive_features=sf)
    )
    assert demographic_parity_difference(y, pred, sensitive_features=sf, **kw) == (
        fl_demographic_parity_difference(positive.astype(int), pred_positive, sensitive_features=sf)
    )


@pytest.mark.parametrize("seed", range(12))
def test_rank_auc_equals_sklearn_per_group_small_tied_data(seed):
    # Few samples, few distinct scores and many groups: ties within and across groups.
    rng = np.random.default_rng(seed)
    n, n_groups = 80, 7
    y = rng.integers(0, 2, n)
    s = rng.integers(0, 4, n).astype(float) * 0.25
    g = rng.integers(0, n_groups, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedGroupWarning)
        ours = group_auc(y, s, sensitive_features=g, on_undefined="drop")
    for label, value in ours.items():
        mask = g == label
        assert value == pytest.approx(roc_auc_score(y[mask], s[mask]), abs=TOL)
    defined = {k for k in range(n_groups) if len(np.unique(y[g == k])) == 2}
    assert set(ours.index) == defined


def test_many_intersectional_groups_and_float32_scores():
    rng = np.random.default_rng(3)
    n = 20_000
    sf = pd.DataFrame({"a": rng.integers(0, 20, n), "b": rng.choice(list("xyzw"), n)})
    y = rng.integers(0, 2, n)
    s = _scores(rng, y, n // 3).astype(np.float32)
    ours = group_auc(y, s, sensitive_features=sf)
    assert len(ours) == 80
    for (a, b), value in ours.iloc[::7].items():
        mask = (sf["a"] == a).to_numpy() & (sf["b"] == b).to_numpy()
        assert value == pytest.approx(roc_auc_score(y[mask], s[mask]), abs=TOL)


def test_intersectional_labels_are_tuples_sorted():
    y = [0, 1, 0, 1, 0, 1, 0, 1]
    s = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.6, 0.4]
    sf = pd.DataFrame({"sex": list("MMFFMMFF"), "age": ["o", "o", "o", "o", "y", "y", "y", "y"]})
    result = group_auc(y, s, sensitive_features=sf)
    assert result.index.tolist() == [("F", "o"), ("F", "y"), ("M", "o"), ("M", "y")]
    assert result[("F", "y")] == 0.0
    assert result[("M", "o")] == 1.0


def test_metrics_use_whole_set_not_batches():
    # The mean of per-batch AUCs differs from the whole-set AUC; we must give the latter.
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 400)
    s = _scores(rng, y, 0)
    g = np.repeat(["a", "b"], 200)
    expected = min(roc_auc_score(y[:200], s[:200]), roc_auc_score(y[200:], s[200:]))
    assert min_group_auc(y, s, sensitive_features=g) == pytest.approx(expected, abs=TOL)


# ---------------------------------------------------------------- undefined groups


def _with_single_class_group():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    g = np.array(["a", "b", "rare"])[rng.integers(0, 2, 300)]
    g[:5] = "rare"
    y[:5] = 0
    return y, _scores(rng, y, 0), g


@pytest.mark.parametrize("metric", [min_group_auc, auc_gap, group_auc])
def test_single_class_group_raises_with_counts(metric):
    y, s, g = _with_single_class_group()
    with pytest.raises(ValueError, match=r"'rare' \(0 positive, 5 negative\).*on_undefined='drop'"):
        metric(y, s, sensitive_features=g)


def test_drop_warns_and_equals_metric_without_group():
    y, s, g = _with_single_class_group()
    keep = g != "rare"
    with pytest.warns(UndefinedGroupWarning, match="'rare'"):
        dropped = min_group_auc(y, s, sensitive_features=g, on_undefined="drop")
    assert dropped == min_group_auc(y[keep], s[keep], sensitive_features=g[keep])
    with pytest.warns(UndefinedGroupWarning):
        gap = auc_gap(y, s, sensitive_features=g, on_undefined="drop")
    assert not np.isnan(gap)


def test_equalized_odds_undefined_group_raise_and_drop_match_fairlearn_on_rest():
    y, s, g = _with_single_class_group()
    pred = (s > 0.5).astype(int)
    with pytest.raises(ValueError, match="'rare'"):
        equalized_odds_difference(y, pred, sensitive_features=g)
    keep = g != "rare"
    for method in ["between_groups", "to_overall"]:
        with pytest.warns(UndefinedGroupWarning, match="'rare'"):
            ours = equalized_odds_difference(
                y, pred, sensitive_features=g, on_undefined="drop", method=method
            )
        assert ours == fl_equalized_odds_difference(
            y[keep], pred[keep], sensitive_features=g[keep], method=method
        )


def test_all_groups_undefined_raise_even_with_drop():
    with pytest.raises(ValueError, match="is undefined: 2 of 2 group"):
        min_group_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], sensitive_features=[0, 0, 1, 1],
                      on_undefined="drop")
    with pytest.raises(ValueError, match=r"single class \(0 positive, 3 negative\)"):
        overall_auc([0, 0, 0], [0.1, 0.2, 0.3])


def test_single_class_group_is_fine_for_accuracy_and_parity():
    y, s, g = _with_single_class_group()
    pred = (s > 0.5).astype(int)
    frame = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=pred, sensitive_features=g)
    assert worst_group_accuracy(y, pred, sensitive_features=g) == frame.group_min()
    assert demographic_parity_difference(y, pred, sensitive_features=g) == (
        fl_demographic_parity_difference(y, pred, sensitive_features=g)
    )


def test_worst_group_accuracy_multiclass():
    y = np.array([0, 1, 2, 2, 1, 0])
    pred = np.array([0, 1, 1, 2, 1, 2])
    g = ["a", "a", "a", "b", "b", "b"]
    assert worst_group_accuracy(y, pred, sensitive_features=g) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- bad inputs

Y = [0, 1, 0, 1, 0, 1]
S = [0.1, 0.8, 0.3, 0.6, 0.2, 0.9]
G = ["a", "a", "a", "b", "b", "b"]

BAD_INPUTS = [
    (dict(sensitive_features=["a", None, "a", np.nan, "b", "b"]),
     r"`sensitive_features` has 2 missing values \(None/NaN\) at positions \[1, 3\]; "
     r"drop or impute"),
    (dict(sensitive_features=pd.DataFrame({"sex": G, "age": [1, 2, None, 1, 2, 1]})),
     r"`sensitive_features` column 'age' has 1 missing values \(None/NaN\) at positions \[2\]"),
    (dict(sensitive_features=["a"] * 5), r"`sensitive_features` has 5 rows but `y_true` has 6"),
    (dict(sensitive_features=None), r"`sensitive_features` is None"),
    (dict(sensitive_features=np.zeros((6, 2, 2))), r"must be 1-D .* or 2-D"),
    (dict(y_score=S[:5]), r"`y_true` has 6 samples but `y_score` has 5"),
    (dict(y_true=[], y_score=[], sensitive_features=[]), r"`y_true` is empty"),
    (dict(y_true=[0, 1, 2, 1, 0, 1]), r"`y_true` has 3 classes \[0, 1, 2\]; .* binary"),
    (dict(y_true=[0, 1, np.nan, 1, 0, 1]),
     r"`y_true` has 1 missing values \(None/NaN\) at positions \[2\]"),
    (dict(y_score=[0.1, np.nan, 0.3, np.inf, 0.2, 0.9]),
     r"`y_score` has 2 non-finite values \(NaN/inf\) at positions \[1, 3\]"),
    (dict(y_score=np.column_stack([1 - np.array(S), S])),
     r"`y_score` has shape \(6, 2\); pass the positive-class column"),
    (dict(y_score=list("abcdef")), r"`y_score` must be numeric"),
    (dict(pos_label=2), r"`pos_label`=2 is not present in `y_true`; its labels are \[0, 1\]"),
    (dict(y_true=["n", "p", "n", "p", "n", "p"]),
     r"labels \['n', 'p'\]; pass `pos_label` to min_group_auc"),
    (dict(on_undefined="ignore"),
     r"`on_undefined` must be one of \['raise', 'drop'\]; got 'ignore'"),
]


@pytest.mark.parametrize("override, message", BAD_INPUTS)
def test_bad_inputs_min_group_auc(override, message):
    kwargs = dict(y_true=Y, y_score=S, sensitive_features=G) | override
    y_true, y_score = kwargs.pop("y_true"), kwargs.pop("y_score")
    with pytest.raises(ValueError, match=message):
        min_group_auc(y_true, y_score, **kwargs)


def test_many_missing_values_lists_first_positions_only():
    sf = np.array(["a"] * 30, dtype=object)
    sf[::2] = None
    message = r"has 15 missing values \(None/NaN\) first at positions \[0, 2, 4, .*, 18\];"
    with pytest.raises(ValueError, match=message):
        min_group_auc([0, 1] * 15, np.arange(30.0), sensitive_features=sf)


@pytest.mark.parametrize(
    "metric, override, message",
    [
        (equalized_odds_difference, dict(y_pred=S),
         r"`y_true` and `y_pred` together have 8 distinct labels .*binary class predictions"),
        (demographic_parity_difference, dict(y_pred=["n", "p"] * 3),
         r"together have 4 distinct labels"),
        (equalized_odds_difference, dict(method="ratio"), r"`method` must be one of"),
        (equalized_odds_difference, dict(agg="max"), r"`agg` must be one of"),
        (equalized_odds_difference, dict(pos_label="yes"), r"`pos_label`='yes' is not present"),
        (worst_group_accuracy, dict(y_pred=[0, 1, None, 1, 0, 1]),
         r"`y_pred` has 1 missing values \(None/NaN\) at positions \[2\]"),
        (demographic_parity_difference, dict(y_pred=[0, 1]),
         r"`y_true` has 6 samples but `y_pred` has 2"),
    ],
)
def test_bad_inputs_thresholded_metrics(metric, override, message):
    kwargs = dict(y_true=Y, y_pred=[0, 1, 1, 1, 0, 0], sensitive_features=G) | override
    y_true, y_pred = kwargs.pop("y_true"), kwargs.pop("y_pred")
    with pytest.raises(ValueError, match=message):
        metric(y_true, y_pred, **kwargs)


def test_validation_returns_shared_encoding():
    data = validate_group_inputs(
        ["n", "p", "p"], [0.2, 0.5, 0.9], pd.DataFrame({"s": ["F", "M", "F"], "a": [1, 1, 2]}),
        response="score", caller="test", pos_label="p",
    )
    assert data.y.tolist() == [False, True, True]
    assert [data.groups[c] for c in data.codes] == [("F", 1), ("M", 1), ("F", 2)]
    assert data.features_frame().columns.tolist() == ["s", "a"]


# ---------------------------------------------------------------- real data


def test_real_hmnist_groups_agree_with_fairlearn():
    folder = DATA_DIR / "hmnist_8x8"
    if not folder.is_dir():
        pytest.skip(f"real data folder {folder} is absent")
    pixels = pd.read_csv(folder / "hmnist_8_8_L.csv")
    meta = pd.read_csv(folder / "HAM10000_metadata.csv")
    keep = meta["age"].notna().to_numpy()
    y = pixels["label"].isin([0, 6]).to_numpy()[keep]  # akiec, mel: malignant
    # Darkness as a crude score: real, and full of ties (means of 64 integers).
    score = -pixels.drop(columns="label").to_numpy()[keep].mean(axis=1)
    sf = pd.DataFrame({
        "age": np.where(meta["age"][keep] > 60, ">60", "<=60"),
        "sex": meta["sex"][keep].to_numpy(),  # includes rare "unknown"
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # single-class groups
        frame = MetricFrame(metrics=roc_auc_score, y_true=y, y_pred=score, sensitive_features=sf)
    defined = frame.by_group.dropna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedGroupWarning)
        ours = group_auc(y, score, sensitive_features=sf, on_undefined="drop")
    assert len(ours) >= 4
    assert _as_dict(ours) == pytest.approx(_as_dict(defined), abs=TOL)


# ---------------------------------------------------------------- benchmark


def test_benchmark_smoke_prints_speedup():
    # Run with the same skfairtune the tests import, installed or not.
    package_parent = str(Path(fm.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_metrics.py"), "--smoke"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"speedup vs fairlearn MetricFrame: \d+\.\dx", result.stdout), result.stdout
