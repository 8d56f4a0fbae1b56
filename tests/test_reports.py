"""Tests for skfairtune.reports: the per-group MetricFrame report."""

from __future__ import annotations

import warnings

from fairlearn.metrics import (
    MetricFrame,
    count,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.svm import LinearSVC

from skfairtune.metrics import UndefinedGroupWarning, group_auc
from skfairtune.reports import fairness_report, fairness_report_from_scores

COLUMNS = ["count", "roc_auc", "accuracy", "tpr", "fpr", "selection_rate"]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n = 500
    sf = pd.DataFrame({"sex": rng.choice(["F", "M"], n), "age": rng.choice(["<=60", ">60"], n)})
    X = rng.normal(size=(n, 2))
    y = (X[:, 0] + (sf["age"] == ">60") * X[:, 1] + rng.normal(size=n) > 0).astype(int)
    return X, y, sf


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_report_equals_fairlearn_metric_functions(data, threshold):
    X, y, sf = data
    score = LogisticRegression().fit(X, y).predict_proba(X)[:, 1]
    report = fairness_report_from_scores(y, score, sensitive_features=sf, threshold=threshold)
    pred = (score >= threshold).astype(int)
    reference = MetricFrame(
        metrics={
            "count": count,
            "accuracy": accuracy_score,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "selection_rate": selection_rate,
        },
        y_true=y, y_pred=pred, sensitive_features=sf,
    )
    auc = MetricFrame(metrics=roc_auc_score, y_true=y, y_pred=score, sensitive_features=sf)

    assert list(report.by_group.columns) == COLUMNS
    assert report.by_group.index.equals(reference.by_group.index)
    for column in reference.by_group.columns:
        np.testing.assert_allclose(report.by_group[column], reference.by_group[column], atol=1e-12)
        assert report.overall[column] == pytest.approx(reference.overall[column], abs=1e-12)
    np.testing.assert_allclose(report.by_group["roc_auc"], auc.by_group, atol=1e-12)
    assert report.overall["roc_auc"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_report_roc_auc_matches_group_auc_labels(data):
    X, y, sf = data
    score = X[:, 0]
    report = fairness_report_from_scores(y, score, sensitive_features=sf)
    pd.testing.assert_series_equal(
        report.by_group["roc_auc"], group_auc(y, score, sensitive_features=sf), check_names=False
    )


def test_threshold_is_inclusive():
    report = fairness_report_from_scores([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9],
                                         sensitive_features=["a"] * 4, threshold=0.5)
    assert report.overall["selection_rate"] == 0.75
    assert report.overall["fpr"] == 0.5


def test_single_class_group_gives_nan_and_warning():
    y = [0, 1, 0, 1, 0, 0, 0]
    score = [0.2, 0.9, 0.4, 0.6, 0.1, 0.7, 0.3]
    groups = ["a", "a", "a", "a", "only_neg", "only_neg", "only_neg"]
    with pytest.warns(UndefinedGroupWarning, match=r"'only_neg' \(0 positive, 3 negative\)"):
        report = fairness_report_from_scores(y, score, sensitive_features=groups)
    by_group = report.by_group
    assert np.isnan(by_group.loc["only_neg", "roc_auc"])
    assert np.isnan(by_group.loc["only_neg", "tpr"])
    assert by_group.loc["only_neg", "fpr"] == pytest.approx(1 / 3)
    assert by_group.loc["a", "roc_auc"] == 1.0
    # fairlearn's aggregations skip the undefined group.
    assert report.group_min()["roc_auc"] == 1.0
    assert report.difference()["fpr"] == pytest.approx(1 / 3)


def test_no_warning_when_every_group_is_defined(data):
    X, y, sf = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fairness_report_from_scores(y, X[:, 0], sensitive_features=sf)


def test_estimator_report_uses_positive_probability_column(data):
    X, y, sf = data
    labels = np.array(["malignant", "benign"])  # sorted classes_: benign first
    clf = LogisticRegression().fit(X, labels[y])
    report = fairness_report(clf, X, labels[y], sensitive_features=sf, pos_label="malignant",
                             threshold=0.4)
    column = list(clf.classes_).index("malignant")
    expected = fairness_report_from_scores(
        labels[y] == "malignant", clf.predict_proba(X)[:, column], sensitive_features=sf,
        threshold=0.4,
    )
    pd.testing.assert_frame_equal(report.by_group, expected.by_group)


def test_estimator_report_default_threshold_matches_predict(data):
    X, y, sf = data
    clf = LogisticRegression().fit(X, y)
    report = fairness_report(clf, X, y, sensitive_features=sf)
    assert report.overall["accuracy"] == pytest.approx(clf.score(X, y))


@pytest.mark.parametrize(
    "make_estimator, kwargs, error, message",
    [
        (lambda X, y: LinearSVC().fit(X, y), {}, TypeError,
         r"needs an estimator with predict_proba"),
        (lambda X, y: LogisticRegression().fit(X, y % 3 + (X[:, 0] > 1)), {}, ValueError,
         r"needs a fitted binary classifier; LogisticRegression has classes_ \[0, 1, 2\]"),
        (lambda X, y: LogisticRegression(), {}, ValueError, r"needs a fitted binary classifier"),
        (lambda X, y: LogisticRegression().fit(X, y), {"pos_label": 2}, ValueError,
         r"`pos_label`=2 is not present in `estimator.classes_`"),
        (lambda X, y: LogisticRegression().fit(X, y), {"threshold": np.nan}, ValueError,
         r"`threshold` must be a finite real number; got nan"),
        (lambda X, y: LogisticRegression().fit(X, y), {"threshold": "0.5"}, ValueError,
         r"`threshold` must be a finite real number; got '0.5'"),
    ],
)
def test_report_errors(data, make_estimator, kwargs, error, message):
    X, y, sf = data
    with pytest.raises(error, match=message):
        fairness_report(make_estimator(X, y), X, y, sensitive_features=sf, **kwargs)


def test_report_validates_groups_like_metrics(data):
    X, y, sf = data
    with pytest.raises(ValueError, match=r"`sensitive_features` has 499 rows but `y_true` has 500"):
        fairness_report_from_scores(y, X[:, 0], sensitive_features=sf.iloc[1:])


# ----------------------------------------------------------------------------- bootstrap intervals
def test_bootstrap_intervals_are_present_and_contain_the_point_estimate(data):
    X, y, sf = data
    model = LogisticRegression().fit(X, y)
    report = fairness_report(model, X, y, sensitive_features=sf["age"], n_boot=200,
                             ci_quantiles=(0.025, 0.975), random_state=0)
    low, high = report.by_group_ci
    point = report.by_group
    for column in ("roc_auc", "accuracy", "tpr", "fpr"):
        assert (low[column] <= point[column]).all() and (point[column] <= high[column]).all(), column
        assert (high[column] - low[column] > 0).all(), column
    assert report.overall_ci[0]["roc_auc"] <= report.overall["roc_auc"] <= report.overall_ci[1]["roc_auc"]
    # The same seed gives the same intervals; the point values are those of a report without bootstrap.
    again = fairness_report(model, X, y, sensitive_features=sf["age"], n_boot=200, random_state=0)
    pd.testing.assert_frame_equal(again.by_group_ci[0], low)
    pd.testing.assert_frame_equal(fairness_report(model, X, y, sensitive_features=sf["age"]).by_group, point)


def test_printed_group_aucs_show_their_intervals(data):
    from skfairtune.reports import format_by_group

    X, y, sf = data
    report = fairness_report(LogisticRegression().fit(X, y), X, y, sensitive_features=sf,
                             n_boot=50, random_state=0)
    table = format_by_group(report, ["count", "roc_auc"])
    assert list(table.index)[-1] == ("overall", "")
    cell = table["roc_auc"].iloc[0]
    low, high = report.by_group_ci[0]["roc_auc"].iloc[0], report.by_group_ci[1]["roc_auc"].iloc[0]
    assert cell == f"{report.by_group['roc_auc'].iloc[0]:.3f} [{low:.3f}, {high:.3f}]"
    assert "[" not in table["count"].iloc[0]
    plain = format_by_group(fairness_report(LogisticRegression().fit(X, y), X, y, sensitive_features=sf))
    assert not plain.map(lambda text: "[" in text).any().any()


@pytest.mark.parametrize("kwargs, message", [
    ({"n_boot": 0}, "n_boot"), ({"n_boot": 1.5}, "n_boot"),
    ({"n_boot": 10, "ci_quantiles": (0.0, 1.2)}, "ci_quantiles"),
])
def test_bad_bootstrap_parameters_name_the_fix(data, kwargs, message):
    X, y, sf = data
    with pytest.raises(ValueError, match=message):
        fairness_report(LogisticRegression().fit(X, y), X, y, sensitive_features=sf, **kwargs)
