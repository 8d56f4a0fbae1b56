"""Selection that generalises: pruning after warm-up, pooled folds, bootstrap, selection rules."""

import math

import numpy as np
import optuna
import pytest
import torch

from skfairtune import FairTuneSearchCV, min_group_auc
from skfairtune.search._objective import Objective, _Fold
from skfairtune.search._selection import select_trial, stratified_bootstrap_indices, top_trials
from skfairtune.search._pruners import first_rung_epoch, make_pruner
from skfairtune.scorers import get_fairness_scorer

from ..conftest import tiny_classifier

SMALL = dict(embed_dim=16, depth=2, num_heads=2, img_size=16, patch_size=4)


@pytest.fixture(scope="module")
def data():
    from skfairtune.datasets import make_biased_images

    return make_biased_images(240, image_size=16, random_state=0)


def small_search(**params):
    clf = tiny_classifier(model_kwargs=dict(SMALL), max_epochs=params.pop("max_epochs", 3), batch_size=64)
    params.setdefault("random_state", 0)
    return FairTuneSearchCV(clf, **params)


# ----------------------------------------------------------------------------- pruning
@pytest.mark.parametrize(("max_epochs", "warmup_fraction", "expected"), [
    (30, 1 / 3, 10),  # the paper: 10 warm-up epochs of 30
    (10, 1 / 3, 4),
    (6, 1 / 3, 2),
    (12, 0.25, 3),
    (6, 0.0, 1),
])
def test_first_rung_is_the_end_of_warmup(max_epochs, warmup_fraction, expected):
    assert first_rung_epoch(max_epochs, warmup_fraction) == expected
    pruner = make_pruner("successive_halving", max_epochs, warmup_fraction)
    assert pruner._min_resource == expected
    assert make_pruner("hyperband", max_epochs, warmup_fraction)._min_resource == expected


@pytest.mark.parametrize("name", ["successive_halving", "hyperband"])
def test_warmup_over_the_whole_training_prunes_nothing(name):
    assert first_rung_epoch(4, 1.0) == 4
    assert isinstance(make_pruner(name, 4, 1.0), optuna.pruners.NopPruner)
    assert isinstance(make_pruner(name, 1, 1 / 3), optuna.pruners.NopPruner)


def test_search_never_prunes_during_warmup(data):
    # 8 epochs with a third of warm-up: the first rung is epoch 3, so no trial stops before it.
    search = small_search(n_trials=10, max_epochs=8, baselines=None, n_bootstrap=0)
    search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    results = search.cv_results_
    pruned = results["state"] == "pruned"
    assert pruned.any(), "nothing was pruned: the test does not exercise the rung"
    assert (results["n_epochs"][pruned] >= 3).all()
    assert search.study_.pruner._min_resource == 3


# ----------------------------------------------------------------------------- pooled folds
class _Replay:
    """A fold's trainer replaying fixed validation probabilities."""

    classes = np.array([0, 1])

    def __init__(self, proba):
        self.proba = proba

    def predict_proba(self, inputs):
        return self.proba


def test_pooled_out_of_fold_score_equals_hand_computation():
    rng = np.random.default_rng(0)
    n = 60
    y = np.tile([0, 1], n // 2)
    s = np.repeat(["a", "b", "c"], n // 3)
    score = np.clip(0.5 * y + rng.normal(0.25, 0.3, n), 0, 1)
    folds_index = [np.arange(0, n, 3), np.arange(1, n, 3), np.arange(2, n, 3)]
    scorer = get_fairness_scorer("min_group_auc")

    def objective(fold_scoring):
        obj = Objective(estimator=None, step=None, space=None, X=None, X_original=None, y=y,
                        sensitive_features=s, splits=None, scorer=scorer, error_score=np.nan, max_epochs=1,
                        fold_scoring=fold_scoring)
        folds = [_Fold(_Replay(np.column_stack([1 - score[v], score[v]])), torch.zeros(1), v)
                 for v in folds_index]
        return obj._epoch_scores(folds)

    pooled, fold_scores, _ = objective("pooled")
    everything = np.concatenate(folds_index)
    assert pooled == pytest.approx(min_group_auc(y[everything], score[everything], sensitive_features=s[everything]))
    by_hand = [min_group_auc(y[v], score[v], sensitive_features=s[v]) for v in folds_index]
    np.testing.assert_allclose(fold_scores, by_hand)
    mean, _, _ = objective("mean")
    assert mean == pytest.approx(np.mean(by_hand))
    assert pooled != pytest.approx(mean)  # the two rules really differ here


def test_search_pools_folds_by_default(data):
    search = small_search(n_trials=2, cv=3, pruner="none", baselines=None, n_bootstrap=0)
    search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    assert search.fold_scoring == "pooled"
    trial = search.study_.trials[0]
    folds = np.column_stack([search.cv_results_[f"split{k}_test_score"] for k in range(3)])
    assert np.isfinite(folds).all()
    # The objective is one pooled score, not the mean of the per-fold scores.
    assert search.cv_results_["mean_test_score"][0] == pytest.approx(trial.value)
    assert not np.allclose(folds.mean(axis=1), search.cv_results_["mean_test_score"])


# ----------------------------------------------------------------------------- bootstrap
def test_bootstrap_indices_keep_strata_and_are_paired():
    strata = np.repeat([0, 1, 2, 3], [5, 20, 7, 40])
    a = stratified_bootstrap_indices(strata, 50, random_state=3)
    b = stratified_bootstrap_indices(strata, 50, random_state=3)
    np.testing.assert_array_equal(a, b)  # same seed, same resamples: paired across trials
    assert (strata[a] == strata).all()
    assert not (a == np.arange(len(strata))).all(axis=1).any()


def _bootstrap_interval(n, seed=0, n_boot=300):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.choice(["a", "b"], n)
    score = 0.7 * y + rng.normal(0, 0.5, n)
    estimate = min_group_auc(y, score, sensitive_features=s)
    strata = y * 2 + (s == "b")
    replicates = [min_group_auc(y[r], score[r], sensitive_features=s[r])
                  for r in stratified_bootstrap_indices(strata, n_boot, random_state=seed)]
    low, high = np.percentile(replicates, [2.5, 97.5])
    return estimate, low, high


def test_bootstrap_interval_contains_estimate_and_shrinks_with_more_data():
    small = _bootstrap_interval(200)
    large = _bootstrap_interval(3200)
    for estimate, low, high in (small, large):
        assert low <= estimate <= high
    assert (large[2] - large[1]) < 0.5 * (small[2] - small[1])  # ~1/sqrt(16) = 0.25 expected


def test_search_stores_bootstrap_intervals(data):
    search = small_search(n_trials=3, pruner="none", baselines=None, n_bootstrap=50)
    search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    results = search.cv_results_
    for i in range(3):
        replicates = search.study_.trials[i].user_attrs["bootstrap_scores"]
        assert len(replicates) == 50
        assert results["bootstrap_std_test_score"][i] == pytest.approx(np.std(replicates, ddof=1))
        assert results["ci_low_test_score"][i] <= results["mean_test_score"][i] <= results["ci_high_test_score"][i]
        # std_test_score keeps scikit-learn's meaning: the spread over splits (one split here).
        assert results["std_test_score"][i] == 0.0
    assert (results["bootstrap_std_test_score"] > 0).all()


# ----------------------------------------------------------------------------- selection rules
def _results(scores, std, params, states=None):
    n = len(scores)
    return {"mean_test_score": np.array(scores, dtype=float), "bootstrap_std_test_score": np.array(std, dtype=float),
            "n_trainable_params": np.array(params, dtype=float),
            "state": np.array(states or ["complete"] * n, dtype=object)}


ANTI = [0.83, 0.77, 0.83, 0.77]  # moves against the best trial's replicates below
BEST_STEADY = [0.81, 0.83, 0.81, 0.83]  # sd 0.012
BEST_NOISY = [0.78, 0.86, 0.78, 0.86]  # sd 0.046


@pytest.mark.parametrize(("selection", "results", "extra", "expected"), [
    # best: the highest score; earliest on ties; pruned/failed rows never count.
    ("best", _results([0.7, 0.9, 0.8], [0.01] * 3, [1, 2, 3]), {}, 1),
    ("best", _results([0.9, 0.9, 0.8], [0.01] * 3, [3, 2, 1]), {}, 0),
    ("best", _results([0.7, 0.95, 0.8], [0.01] * 3, [1, 2, 3], ["complete", "pruned", "complete"]), {}, 2),
    # one_se: the sparsest trial with score_best - score_i <= sd(b_best - b_i) over paired replicates.
    # Row 0 trails by 0.02; the best's own sd (0.012) would exclude it, the sd of the paired difference
    # (0.046: its replicates move against the best's) admits it.
    ("one_se", _results([0.80, 0.82], [0.03, 0.012], [100, 1000]),
     {"bootstrap_scores": [ANTI, BEST_STEADY]}, 0),
    # Row 0 trails by 0.02 on every resample: the difference is certain (sd 0), though the best's own
    # sd (0.046) would have admitted it.
    ("one_se", _results([0.80, 0.82], [0.046, 0.046], [100, 1000]),
     {"bootstrap_scores": [list(np.subtract(BEST_NOISY, 0.02)), BEST_NOISY]}, 1),
    # Pruned rows never count, however sparse; the best is always within its own standard error.
    ("one_se", _results([0.80, 0.82, 0.81], [0.05] * 3, [100, 1000, 1], ["complete", "complete", "pruned"]),
     {"bootstrap_scores": [list(np.subtract(BEST_NOISY, 0.02)), BEST_NOISY, []]}, 1),
    # Tie on sparsity: the higher score, then the earlier row.
    ("one_se", _results([0.81, 0.82, 0.81, 0.82], [0.05] * 4, [100, 1000, 100, 1000]),
     {"bootstrap_scores": [ANTI, BEST_STEADY, ANTI, BEST_STEADY]}, 0),
    # reeval: the best mean of the FRESH evaluations (the first, the search's own score, is left out).
    # With it, row 0 would win (mean 0.85 > 0.83); its fresh scores say it was lucky.
    ("reeval", _results([0.95, 0.85, 0.8], [0.01] * 3, [1, 2, 3]),
     {"reeval_scores": {0: [0.95, 0.80, 0.80], 1: [0.85, 0.82, 0.82]}}, 1),
    ("reeval", _results([0.9, 0.85, 0.8], [0.01] * 3, [1, 2, 3]),
     {"reeval_scores": {0: [0.9, 0.9, 0.9], 1: [0.85, 0.84, 0.86]}}, 0),
    # Equal fresh means: the higher search score; a row whose re-evaluations all failed loses.
    ("reeval", _results([0.9, 0.85, 0.8], [0.01] * 3, [1, 2, 3]),
     {"reeval_scores": {1: [0.85, 0.8, 0.8], 0: [0.9, 0.8, 0.8], 2: [0.8, np.nan, np.nan]}}, 0),
    ("reeval", _results([0.9, 0.85], [0.01] * 2, [1, 2]),
     {"reeval_scores": {0: [0.9, np.nan, np.nan], 1: [0.85, 0.5, np.nan]}}, 1),
])
def test_selection_rules_pick_what_they_claim(selection, results, extra, expected):
    assert select_trial(results, selection, **extra) == expected


@pytest.mark.parametrize(("replicates", "message"), [
    (None, r"selection='one_se' needs the paired bootstrap replicates; set n_bootstrap >= 2 or choose "
           r"selection='best'\."),
    ([[], []], r"needs the paired bootstrap replicates; a complete trial has 0: set n_bootstrap >= 2"),
    ([[0.8, 0.7, 0.9], [0.8, 0.7]], r"the complete trials hold \[2, 3\] replicates"),
])
def test_one_se_without_paired_replicates_says_so(replicates, message):
    # A rule that cannot apply fails; it never quietly becomes another rule.
    with pytest.raises(ValueError, match=message):
        select_trial(_results([0.8, 0.82], [0.01] * 2, [1, 2]), "one_se", bootstrap_scores=replicates)


def test_top_trials_order_and_errors():
    results = _results([0.7, 0.9, 0.8, 0.95], [0.01] * 4, [1] * 4, ["complete"] * 3 + ["failed"])
    assert top_trials(results, 2) == [1, 2]
    with pytest.raises(ValueError, match="no complete trial"):
        select_trial(_results([0.5], [0.1], [1], ["pruned"]), "best")
    with pytest.raises(ValueError, match="`selection` must be one of"):
        select_trial(results, "median")


def test_one_se_search_uses_the_paired_difference_standard_error(data):
    search = small_search(n_trials=6, pruner="none", selection="one_se", n_bootstrap=50)
    search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    results = search.cv_results_
    best = top_trials(results, 1)[0]
    replicates = np.array([t.user_attrs["bootstrap_scores"] for t in search.study_.trials])
    scores = results["mean_test_score"]
    complete = np.flatnonzero(results["state"] == "complete")
    within = [i for i in complete
              if scores[best] - scores[i] <= np.std(replicates[best] - replicates[i], ddof=1)]
    chosen = search.best_index_
    assert chosen in within
    assert results["n_trainable_params"][chosen] == min(results["n_trainable_params"][within])
    assert search.best_params_ == results["params"][chosen]
    assert search.best_score_source_ == "search" and search.best_score_ == scores[chosen]


def test_reeval_search_chooses_by_fresh_scores(data):
    search = small_search(n_trials=4, pruner="none", selection="reeval", reeval_top_k=2, reeval_repeats=2,
                          baselines=None, n_bootstrap=0, max_epochs=2)
    search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    assert sorted(search.reeval_scores_) == sorted(top_trials(search.cv_results_, 2))
    for row, values in search.reeval_scores_.items():
        assert len(values) == 3
        assert values[0] == search.cv_results_["mean_test_score"][row]  # the search's own score first
        assert all(math.isfinite(v) for v in values[1:])
        assert values[1:] != [values[0]] * 2  # fresh splits give other scores
    fresh = {row: np.mean(v[1:]) for row, v in search.reeval_scores_.items()}
    assert search.best_index_ == max(fresh, key=fresh.get)
    assert search.best_score_source_ == "reeval"
    assert search.best_score_ == pytest.approx(fresh[search.best_index_])


def test_reeval_on_fixed_splits_warns_that_only_the_seed_changes(data):
    n = len(data.target)
    fixed = [(np.arange(0, n, 2), np.arange(1, n, 2))]
    search = small_search(n_trials=2, pruner="none", selection="reeval", reeval_top_k=1, reeval_repeats=1,
                          baselines=None, n_bootstrap=0, max_epochs=1, cv=fixed)
    with pytest.warns(UserWarning, match=r"cv=an iterable of fixed splits gives the same splits for every seed, "
                                         r"so only the training seed changes") as record:
        search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    assert sum("only the training seed changes" in str(w.message) for w in record) == 1
    assert len(search.reeval_scores_[search.best_index_]) == 2


@pytest.mark.parametrize(("params", "message"), [
    ({"selection": "median"}, r"`selection` must be one of \('best', 'one_se', 'reeval'\); got 'median'"),
    ({"fold_scoring": "max"}, r"`fold_scoring` must be one of \('pooled', 'mean'\); got 'max'"),
    ({"n_bootstrap": -1}, r"`n_bootstrap` must be an int >= 0; got -1"),
    ({"selection": "one_se", "n_bootstrap": 0},
     r"selection='one_se' needs the paired bootstrap replicates; got n_bootstrap=0: set n_bootstrap >= 2 "
     r"or choose selection='best'\."),
    ({"reeval_top_k": 0}, r"`reeval_top_k` must be an int >= 1; got 0"),
    ({"reeval_repeats": 1.5}, r"`reeval_repeats` must be an int >= 1; got 1.5"),
    ({"baseline_lrs": "grid"}, r"`baseline_lrs` must be 'auto', a sequence of learning rates or None"),
    ({"baselines": ("full", "sparse")}, r"`baselines` contains 'sparse'"),
    ({"baseline_lrs": (1e-4, 3e-2)}, r"`baseline_lrs` holds 0.03, outside lr_range=\(1e-05, 0.01\)"),
])
def test_bad_selection_parameters_fail_before_training(data, params, message):
    search = small_search(n_trials=2, **params)
    with pytest.raises(ValueError, match=message):
        search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    assert not hasattr(search, "study_")


# ----------------------------------------------------------------------------- labels and baselines
@pytest.mark.parametrize("labels", [("benign", "malignant"), (1, 2)])
def test_search_and_score_with_non_01_labels(data, labels):
    y = np.where(data.target == 1, labels[1], labels[0])
    search = small_search(n_trials=2, pruner="none", baselines=("linear",), n_bootstrap=10)
    search.fit(data.images, y, sensitive_features=data.sensitive_features)
    assert (search.cv_results_["state"] == "complete").all()
    assert list(search.classes_) == list(labels)
    assert set(search.predict(data.images)) <= set(labels)
    score = search.score(data.images, y, sensitive_features=data.sensitive_features)
    # The positive class is classes_[1], as for the classifier's own predict_proba column.
    proba = search.predict_proba(data.images)[:, 1]
    assert score == pytest.approx(min_group_auc(y, proba, sensitive_features=data.sensitive_features,
                                                pos_label=labels[1]))


def test_erm_baseline_trains_every_parameter(data):
    clf = tiny_classifier(model_kwargs=dict(SMALL), max_epochs=1, batch_size=64, mask="full")
    clf.fit(data.images, data.target)
    assert clf.n_trainable_params_ == clf.n_params_
    assert {"pos_embed", "cls_token", "norm.weight", "patch_embed.proj.weight"} <= set(clf.trainable_parameter_names_)
    units_only = tiny_classifier(model_kwargs=dict(SMALL), max_epochs=1, batch_size=64, mask="111111")
    units_only.fit(data.images, data.target)
    assert "pos_embed" not in units_only.trainable_parameter_names_
    assert units_only.n_trainable_params_ < clf.n_trainable_params_


def test_enqueued_baselines_train_their_presets(data):
    search = small_search(n_trials=3, pruner="none", baselines=("full", "linear"), baseline_lrs=(1e-3,),
                          n_bootstrap=0, max_epochs=1)
    search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    results = search.cv_results_
    assert list(results["param_mask"][:2]) == ["full", "linear"]
    assert list(results["param_lr"][:2]) == [1e-3, 1e-3]
    n_params = tiny_classifier(model_kwargs=dict(SMALL), mask="full", max_epochs=1).fit(
        data.images, data.target).n_params_
    assert results["n_trainable_params"][0] == n_params  # ERM: nothing frozen
    study = search.study_
    assert isinstance(study.pruner, optuna.pruners.NopPruner)
