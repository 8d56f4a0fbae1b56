"""Tests for skfairtune.scorers: sklearn scorer protocol, metadata routing, registry."""

from __future__ import annotations

import pickle

from fairlearn.metrics import make_derived_metric
import numpy as np
import pytest
import sklearn
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.metrics._scorer import _BaseScorer
from sklearn.model_selection import (
    GridSearchCV,
    HalvingRandomSearchCV,
    KFold,
    RandomizedSearchCV,
    cross_validate,
)
from sklearn.svm import LinearSVC

from skfairtune.metrics import (
    auc_gap,
    demographic_parity_difference,
    equalized_odds_difference,
    min_group_auc,
    overall_auc,
    worst_group_accuracy,
)
from skfairtune.search._predictions import FrozenPredictions
from skfairtune.scorers import (
    get_fairness_scorer,
    get_fairness_scorer_names,
    make_fairness_scorer,
)

# scorer name -> (metric, uses probabilities, sign)
REGISTRY = {
    "min_group_auc": (min_group_auc, True, 1),
    "overall_auc": (overall_auc, True, 1),
    "neg_auc_gap": (auc_gap, True, -1),
    "worst_group_accuracy": (worst_group_accuracy, False, 1),
    "neg_equalized_odds_difference": (equalized_odds_difference, False, -1),
    "neg_demographic_parity_difference": (demographic_parity_difference, False, -1),
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 240
    groups = rng.choice(["<=60", ">60", "unknown"], n)
    X = rng.normal(size=(n, 3))
    logit = X[:, 0] + (groups == ">60") * X[:, 1]
    y = (logit + rng.normal(scale=0.8, size=n) > 0).astype(int)
    return X, y, groups


@pytest.fixture(scope="module")
def fitted(data):
    X, y, _ = data
    return LogisticRegression().fit(X, y)


def _expected(name, clf, X, y, groups):
    metric, uses_proba, sign = REGISTRY[name]
    response = clf.predict_proba(X)[:, 1] if uses_proba else clf.predict(X)
    return sign * metric(y, response, sensitive_features=groups)


def test_registry_names():
    assert get_fairness_scorer_names() == sorted(REGISTRY)


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("routing", [False, True])
def test_scorer_equals_signed_metric(name, routing, data, fitted):
    X, y, groups = data
    with sklearn.config_context(enable_metadata_routing=routing):
        scorer = get_fairness_scorer(name)
        value = scorer(fitted, X, y, sensitive_features=groups)
    metric, _, sign = REGISTRY[name]
    assert isinstance(scorer, _BaseScorer)
    assert scorer._score_func is metric
    assert scorer._sign == sign
    assert value == _expected(name, fitted, X, y, groups)


def test_get_fairness_scorer_returns_new_objects():
    assert get_fairness_scorer("min_group_auc") is not get_fairness_scorer("min_group_auc")


@pytest.mark.parametrize(
    "name, message",
    [
        ("min_auc",
         r"'min_auc' is not a valid fairness scoring value. Valid options are \['min_group_auc'"),
        ("roc_auc", r"'roc_auc' is a scikit-learn scorer without groups"),
        ("auc_gap", r"Valid options are .*'neg_auc_gap'"),
    ],
)
def test_unknown_scorer_name(name, message):
    with pytest.raises(ValueError, match=message):
        get_fairness_scorer(name)


@pytest.mark.parametrize(
    "metric, kwargs, error, message",
    [
        ("min_auc", {}, ValueError, r"'min_auc' is not a fairness metric name; valid names are \["),
        ("neg_auc_gap", {}, ValueError, r"use get_fairness_scorer\('neg_auc_gap'\)"),
        (42, {}, TypeError, r"`metric` must be a metric name or a callable; got int"),
        ("min_group_auc", {"sensitive_features": [0, 1]}, ValueError,
         r"`sensitive_features` is passed at score time"),
        ("min_group_auc", {"threshold": 0.5}, ValueError,
         r"unexpected keyword argument\(s\) \['threshold'\]; "
         r"it accepts \['pos_label', 'on_undefined'\]"),
        (recall_score, {}, ValueError, r"must accept a `sensitive_features` keyword"),
        ("min_group_auc", {"response_method": "predict_log"}, ValueError, r"response_method"),
    ],
)
def test_make_fairness_scorer_errors(metric, kwargs, error, message):
    with pytest.raises(error, match=message):
        make_fairness_scorer(metric, **kwargs)


@pytest.mark.parametrize("routing", [False, True])
def test_missing_sensitive_features_at_score_time(routing, data, fitted):
    X, y, _ = data
    with sklearn.config_context(enable_metadata_routing=routing):
        scorer = get_fairness_scorer("min_group_auc")
        with pytest.raises(ValueError, match=r"needs `sensitive_features` at score time"):
            scorer(fitted, X, y)


def test_missing_sensitive_features_in_cross_validate(data):
    X, y, _ = data
    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.raises(ValueError, match=r"params=\{'sensitive_features': groups\}"):
            cross_validate(LogisticRegression(), X, y, cv=2, error_score="raise",
                           scoring=get_fairness_scorer("min_group_auc"))


def test_requests_sensitive_features_for_routing():
    routing = get_fairness_scorer("neg_auc_gap").get_metadata_routing()
    assert routing.score.requests == {"sensitive_features": True}


def test_cross_validate_scores_each_fold_on_its_slice(data):
    X, y, groups = data
    cv = KFold(3, shuffle=True, random_state=1)
    scoring = {name: get_fairness_scorer(name) for name in REGISTRY} | {"roc_auc": "roc_auc"}
    with sklearn.config_context(enable_metadata_routing=True):
        result = cross_validate(LogisticRegression(), X, y, cv=cv, scoring=scoring,
                                params={"sensitive_features": groups})
    for fold, (train, test) in enumerate(cv.split(X)):
        clf = LogisticRegression().fit(X[train], y[train])
        for name in REGISTRY:
            expected = _expected(name, clf, X[test], y[test], groups[test])
            assert result[f"test_{name}"][fold] == pytest.approx(expected, abs=1e-12)


def _recording_scorer(calls):
    """A scorer from a callable that records what it is given."""

    def record(y_true, y_pred, *, sensitive_features):
        calls.append((np.asarray(y_true), np.asarray(sensitive_features)))
        return float(np.mean(y_true == y_pred))

    return make_fairness_scorer(record)


def _search(kind, scorer):
    estimator = LogisticRegression()
    grid = {"C": [0.1, 1.0, 10.0]}
    if kind == "grid":
        return GridSearchCV(estimator, grid, scoring=scorer, cv=3)
    if kind == "randomized":
        return RandomizedSearchCV(estimator, grid, n_iter=2, scoring=scorer, cv=3, random_state=0)
    # 4 candidates, factor 2: iterations on 60, 120 and all 240 samples.
    return HalvingRandomSearchCV(estimator, {"C": [0.01, 0.1, 1.0, 10.0]}, scoring=scorer,
                                 cv=3, factor=2, min_resources=60, random_state=0)


@pytest.mark.parametrize("kind", ["grid", "randomized", "halving"])
def test_searches_route_sliced_groups_to_scorer(kind, data):
    X, y, _ = data
    row_ids = np.arange(len(y))  # groups that identify their rows
    calls = []
    with sklearn.config_context(enable_metadata_routing=True):
        search = _search(kind, _recording_scorer(calls)).fit(X, y, sensitive_features=row_ids)
    assert calls, "the scorer was never called"
    for y_seen, ids in calls:
        assert len(ids) < len(y)  # a fold, not the whole set
        np.testing.assert_array_equal(y_seen, y[ids])  # aligned with the fold's y
    if kind == "halving":
        # Each iteration's subsample is split in 3 folds; halving also scores the
        # training part (return_train_score=True by default).
        assert set(search.cv_results_["n_resources"]) == {60, 120, 240}
        assert {len(ids) for _, ids in calls} == {20, 40, 80} | {40, 80, 160}


@pytest.mark.parametrize("kind", ["grid", "randomized", "halving"])
def test_searches_with_min_group_auc(kind, data):
    X, y, groups = data
    with sklearn.config_context(enable_metadata_routing=True):
        search = _search(kind, get_fairness_scorer("min_group_auc"))
        search.fit(X, y, sensitive_features=groups)
    scores = search.cv_results_["mean_test_score"]
    assert np.all((scores > 0.5) & (scores <= 1.0))
    assert search.best_score_ == np.max(scores[search.cv_results_["rank_test_score"] == 1])


def test_callable_metric_and_fairlearn_derived_metric(data, fitted):
    X, y, groups = data
    recall_gap = make_derived_metric(metric=recall_score, transform="difference")
    scorer = make_fairness_scorer(recall_gap, greater_is_better=False, name="recall_gap")
    assert repr(scorer).startswith("make_fairness_scorer(recall_gap, greater_is_better=False")
    expected = recall_gap(y, fitted.predict(X), sensitive_features=groups)
    assert scorer(fitted, X, y, sensitive_features=groups) == -expected


def test_metric_kwargs_are_forwarded(data, fitted):
    X, y, groups = data
    labels = np.array(["benign", "malignant"])
    clf = LogisticRegression().fit(X, labels[y])
    scorer = make_fairness_scorer("min_group_auc", pos_label="malignant")
    column = list(clf.classes_).index("malignant")
    expected = min_group_auc(labels[y], clf.predict_proba(X)[:, column], sensitive_features=groups,
                             pos_label="malignant")
    assert scorer(clf, X, labels[y], sensitive_features=groups) == expected
    # Without pos_label the scorer calls classes_[1] positive, the column sklearn scores.
    assert make_fairness_scorer("min_group_auc")(clf, X, labels[y], sensitive_features=groups) == expected
    flipped = make_fairness_scorer("min_group_auc", pos_label="benign")(clf, X, labels[y], sensitive_features=groups)
    assert flipped == pytest.approx(min_group_auc(labels[y], clf.predict_proba(X)[:, 1 - column],
                                                  sensitive_features=groups, pos_label="benign"))


def test_auc_scorer_falls_back_to_decision_function(data):
    X, y, groups = data
    svc = LinearSVC().fit(X, y)
    expected = min_group_auc(y, svc.decision_function(X), sensitive_features=groups)
    assert get_fairness_scorer("min_group_auc")(svc, X, y, sensitive_features=groups) == expected


def test_scorer_pickles_with_its_request(data, fitted):
    X, y, groups = data
    scorer = pickle.loads(pickle.dumps(get_fairness_scorer("neg_equalized_odds_difference")))
    assert scorer.get_metadata_routing().score.requests == {"sensitive_features": True}
    assert scorer(fitted, X, y, sensitive_features=groups) == _expected(
        "neg_equalized_odds_difference", fitted, X, y, groups
    )


# ---------------------------------------------------------------- FrozenPredictions


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_frozen_predictions_replay_any_scorer(name, data, fitted):
    X, y, groups = data
    frozen = FrozenPredictions(fitted.predict_proba(X), classes=fitted.classes_)
    scorer = get_fairness_scorer(name)
    assert scorer(frozen, X, y, sensitive_features=groups) == _expected(name, fitted, X, y, groups)


def test_frozen_predictions_match_estimator(data, fitted):
    X, y, _ = data
    proba = fitted.predict_proba(X)
    frozen = FrozenPredictions(proba, classes=fitted.classes_)
    np.testing.assert_array_equal(frozen.predict(X), fitted.predict(X))
    assert frozen.score(X, y) == fitted.score(X, y)
    one_column = FrozenPredictions(proba[:, 1], classes=fitted.classes_)
    np.testing.assert_array_equal(one_column.predict_proba(X)[:, 1], proba[:, 1])
    assert sklearn.base.is_classifier(frozen)


@pytest.mark.parametrize(
    "proba, classes, X, message",
    [
        ([[0.2, 0.8]] * 3, [0, 1], np.zeros((4, 2)),
         r"X has 4 rows but the frozen predictions cover 3"),
        ([[0.2, 0.3, 0.5]] * 3, [0, 1], np.zeros((3, 2)),
         r"`proba` has shape \(3, 3\) but there are 2"),
    ],
)
def test_frozen_predictions_errors(proba, classes, X, message):
    with pytest.raises(ValueError, match=message):
        FrozenPredictions(proba, classes).predict_proba(X)
