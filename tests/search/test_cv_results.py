"""``cv_results_`` keeps scikit-learn's keys and meanings: checked against ``RandomizedSearchCV``.

The comparison runs both on the same scorer (``skfairtune.scorers``): scikit-learn's
search on a tiny logistic regression, FairTune's table from Optuna trials holding
the very same split scores, then a real FairTune search for the keys.
"""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pytest
import sklearn
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from skfairtune import FairTuneSearchCV
from skfairtune.distributed._trial_record import TrialRecord
from skfairtune.scorers import get_fairness_scorer
from skfairtune.search._results import rank_min, results_table

from ..conftest import tiny_classifier
from .test_search import _Diverge  # NaN loss for masks that train the first block's attention

optuna.logging.set_verbosity(optuna.logging.WARNING)
SMALL = dict(embed_dim=16, depth=2, num_heads=2, img_size=16, patch_size=4)
#: What RandomizedSearchCV always has (return_train_score=False), besides param_<name>.
SKLEARN_KEYS = {"mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time", "params",
                "mean_test_score", "std_test_score", "rank_test_score"}


@pytest.fixture(scope="module")
def sklearn_search():
    """RandomizedSearchCV with ties (two tiny C give the same ranking) and a failing fit (C < 0)."""
    rng = np.random.default_rng(0)
    n = 120
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + rng.normal(size=n) > 0).astype(int)
    s = np.tile(["a", "b"], n // 2)
    search = RandomizedSearchCV(LogisticRegression(), {"C": [1e-6, 2e-6, 1.0, -1.0]}, n_iter=4,
                                scoring=get_fairness_scorer("min_group_auc"), cv=StratifiedKFold(3),
                                error_score=0.0, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", FitFailedWarning)
        return search.fit(X, y, sensitive_features=s)


class _NoSpace:
    def from_trial(self, params):
        return params


def _mirror(results: dict, n_splits: int) -> list:
    """Optuna trials holding what each row of a scikit-learn search measured."""
    trials = []
    for i, params in enumerate(results["params"]):
        splits = [float(results[f"split{k}_test_score"][i]) for k in range(n_splits)]
        failed = results["mean_test_score"][i] == 0.0 and not any(splits)
        record = TrialRecord(params=params, n_epochs=1, fit_time=1.0, split_fit_times=[0.1] * n_splits,
                             split_score_times=[0.01] * n_splits, epoch_split_scores=[splits])
        if failed:
            record.error_score, record.fail_reason = 0.0, "InvalidParameterError: C must be > 0"
        trials.append(optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE,
            value=None if failed else float(results["mean_test_score"][i]),
            user_attrs=record.as_user_attrs()))
    return trials


def test_same_keys_scores_and_tied_ranks_as_randomized_search(sklearn_search):
    expected = sklearn_search.cv_results_
    n_splits = sklearn_search.n_splits_
    assert list(expected["rank_test_score"]) == [1, 1, 3, 4]  # the case has ties and a failure
    ours = results_table(_mirror(expected, n_splits), _NoSpace(), n_splits)
    assert set(expected) <= set(ours)  # every key a scikit-learn user reads, param_C included
    for key in ("mean_test_score", "std_test_score", *(f"split{k}_test_score" for k in range(n_splits))):
        np.testing.assert_allclose(ours[key], expected[key], err_msg=key)
    np.testing.assert_array_equal(ours["rank_test_score"], expected["rank_test_score"])
    assert ours["rank_test_score"].dtype == expected["rank_test_score"].dtype == np.int32
    assert list(ours["param_C"]) == list(expected["param_C"])
    np.testing.assert_allclose(ours["mean_fit_time"], 0.1)
    np.testing.assert_allclose(ours["std_score_time"], 0.0)


@pytest.mark.parametrize("scores, states, expected", [
    ([0.8, 0.9, 0.8, 0.7], ["complete"] * 4, [2, 1, 2, 4]),  # "min": ties share the smallest rank
    ([0.8, np.nan, np.nan], ["complete", "fail", "fail"], [1, 2, 2]),  # no score: last, tied
    ([np.nan, np.nan], ["fail", "fail"], [1, 1]),  # nothing scored: all first, as scikit-learn
    ([0.7, 0.95, 0.9, 0.0], ["complete", "pruned", "pruned", "fail"], [1, 3, 4, 2]),  # pruned after finished
])
def test_rank_min_table(scores, states, expected):
    assert rank_min(np.array(scores), np.array(states, dtype=object)).tolist() == expected
    # With scikit-learn's own rule where it applies (no pruned trial): rankdata(-score, "min"), NaN last.
    if "pruned" not in states:
        from scipy.stats import rankdata

        filled = np.nan_to_num(np.array(scores), nan=np.nanmin(np.r_[scores, 0.0]) - 1)
        ranks = np.ones(len(scores), int) if np.isnan(scores).all() else rankdata(-filled, method="min")
        assert ranks.tolist() == expected


# ----------------------------------------------------------------------------- a real search
@pytest.fixture(scope="module")
def data():
    from skfairtune.datasets import make_biased_images

    return make_biased_images(160, image_size=16, random_state=0)


def _classifier(**overrides):
    return tiny_classifier(**dict(dict(model_kwargs=dict(SMALL), max_epochs=2, batch_size=64), **overrides))


@pytest.fixture(scope="module")
def failing_search(data):
    search = FairTuneSearchCV(_classifier(callbacks=[_Diverge()]), n_trials=4, cv=2, error_score=0.0,
                              baseline_lrs=(1e-3,), pruner="none", n_bootstrap=20, random_state=0)
    with pytest.warns(FitFailedWarning, match=r"(?s)2 trials' fits failed out of a total of 4.*set to 0.0"):
        return search.fit(data.images, data.target, sensitive_features=data.sensitive_features)


def test_a_search_has_sklearn_keys_and_meanings(failing_search):
    results = failing_search.cv_results_
    assert SKLEARN_KEYS | {"split0_test_score", "split1_test_score", "param_mask", "param_lr"} <= set(results)
    assert {"bootstrap_std_test_score", "ci_low_test_score", "ci_high_test_score"} <= set(results)
    complete = results["state"] == "complete"
    splits = np.column_stack([results["split0_test_score"], results["split1_test_score"]])
    np.testing.assert_allclose(results["std_test_score"], splits.std(axis=1))  # spread over splits
    assert (results["bootstrap_std_test_score"][complete] > 0).all()
    for key in ("mean_fit_time", "mean_score_time"):
        assert (results[key][complete] > 0).all(), key
    assert np.isfinite(results["std_fit_time"][complete]).all()
    assert failing_search.refit_time_ > 0
    assert results["rank_test_score"][failing_search.best_index_] == 1


def test_numeric_error_score_is_shown_not_told_to_the_sampler(failing_search):
    results = failing_search.cv_results_
    failed = results["state"] == "fail"
    assert failed.sum() == 2 and "loss became nan" in results["fail_reason"][failed][0]
    # cv_results_ shows error_score on every split, as scikit-learn does, and ranks it as a score...
    np.testing.assert_array_equal(results["mean_test_score"][failed], 0.0)
    np.testing.assert_array_equal(results["split1_test_score"][failed], 0.0)
    assert len(set(results["rank_test_score"][failed])) == 1  # tied
    # ...but the study holds them as failed: TPE never sees 0.0 as a result.
    states = {t.number: t.state for t in failing_search.study_.trials}
    for number in results["trial_number"][failed]:
        assert states[number] == optuna.trial.TrialState.FAIL
        assert failing_search.study_.trials[number].values is None


def test_every_fit_failing_raises_as_sklearn(data):
    search = FairTuneSearchCV(_classifier(callbacks=[_Diverge()]), n_trials=1, baselines=("full",),
                              baseline_lrs=(1e-3,), error_score=0.0, pruner="none", refit=False, random_state=0)
    with pytest.raises(ValueError, match=r"(?s)All the 1 trials' fits failed.*error_score='raise'"):
        search.fit(data.images, data.target, sensitive_features=data.sensitive_features)


def test_several_objectives_get_the_multi_metric_layout(data):
    search = FairTuneSearchCV(_classifier(max_epochs=1), scoring=["min_group_auc", "n_trainable_params"], cv=2,
                              n_trials=2, baselines=("linear", "layernorm"), baseline_lrs=(1e-3,),
                              pruner="none", refit=False, random_state=0)
    results = search.fit(data.images, data.target, sensitive_features=data.sensitive_features).cv_results_
    for name in ("min_group_auc", "n_trainable_params"):
        for key in ("split0_test_", "split1_test_", "mean_test_", "std_test_", "rank_test_"):
            assert f"{key}{name}" in results, f"{key}{name}"
    costs = np.column_stack([results["split0_test_n_trainable_params"], results["split1_test_n_trainable_params"]])
    np.testing.assert_array_equal(costs[:, 0], results["mean_test_n_trainable_params"])  # a cost: same on each split
    assert results["rank_test_n_trainable_params"].tolist() == [1, 2]  # linear trains fewer: minimised
    assert "mean_test_score" not in results


# ----------------------------------------------------------------------------- fit(**params) and random_state
class _Recorder(TransformerMixin, BaseEstimator):
    """Passes images through; remembers the length of the ``weight`` each fit received."""

    seen: list = []

    def fit(self, X, y=None, weight=None):
        type(self).seen.append(None if weight is None else len(weight))
        self.n_features_in_ = 1  # fitted, for Pipeline.transform's check
        return self

    def transform(self, X):
        return X


def _pipeline_search(**params):
    pipe = Pipeline([("rec", _Recorder()), ("clf", _classifier(max_epochs=1))])
    return FairTuneSearchCV(pipe, n_trials=1, cv=2, baselines=("linear",), baseline_lrs=(1e-3,), pruner="none",
                            random_state=0, **params)


def test_fit_params_reach_the_pipeline_steps_per_fold_and_in_the_refit(data):
    _Recorder.seen = []
    n = len(data.target)
    _pipeline_search().fit(data.images, data.target, sensitive_features=data.sensitive_features,
                           rec__weight=np.ones(n))
    folds, refit = _Recorder.seen[:-1], _Recorder.seen[-1]
    assert len(folds) == 2 and sum(folds) == n  # each fold's training part (2 folds: each half)
    assert refit == n


def test_fit_params_follow_metadata_routing(data):
    _Recorder.seen = []
    n = len(data.target)
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = Pipeline([("rec", _Recorder().set_fit_request(weight=True)), ("clf", _classifier(max_epochs=1))])
        search = FairTuneSearchCV(pipe, n_trials=1, cv=2, baselines=("linear",), baseline_lrs=(1e-3,),
                                  pruner="none", random_state=0)
        search.fit(data.images, data.target, sensitive_features=data.sensitive_features, weight=np.ones(n))
        assert _Recorder.seen[-1] == n and sum(_Recorder.seen[:-1]) == n
        with pytest.raises(TypeError, match="unexpected argument"):
            search.fit(data.images, data.target, sensitive_features=data.sensitive_features, nobody=1)


@pytest.mark.parametrize("estimator, params, message", [
    ("plain", {"sample_weight": np.ones(160)}, r"got sample_weight, which FairTuneClassifier does not support"),
    ("pipeline", {"clf__sample_weight": np.ones(160)}, r"got clf__sample_weight, which FairTuneClassifier"),
    ("pipeline", {"weight": np.ones(160)}, r"got 'weight', which its Pipeline cannot route.*<step>__<parameter>"),
    ("pipeline", {"scaler__weight": np.ones(160)}, r"got 'scaler__weight'.*among \['rec', 'clf'\]"),
])
def test_bad_fit_params_fail_before_training(data, monkeypatch, estimator, params, message):
    from skfairtune._training._trainer import Trainer

    monkeypatch.setattr(Trainer, "step", lambda *a, **k: pytest.fail("training started"))
    search = _pipeline_search() if estimator == "pipeline" else FairTuneSearchCV(_classifier(), n_trials=1)
    with pytest.raises(ValueError, match=message):
        search.fit(data.images, data.target, sensitive_features=data.sensitive_features, **params)


def test_random_state_accepts_a_randomstate(data):
    def run(random_state):
        search = FairTuneSearchCV(_classifier(max_epochs=1), n_trials=2, baselines=("linear",),
                                  baseline_lrs=(1e-3,), pruner="none", refit=False, random_state=random_state)
        return search.fit(data.images, data.target, sensitive_features=data.sensitive_features)

    seed = int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))
    from_state, from_int = run(np.random.RandomState(0)), run(seed)
    # The same int seed drawn from a fresh RandomState(0): the same search, trial for trial.
    np.testing.assert_allclose(from_state.cv_results_["mean_test_score"], from_int.cv_results_["mean_test_score"])
    assert from_state.cv_results_["params"] == from_int.cv_results_["params"]
