import pickle
import re

import numpy as np
import optuna
import pandas as pd
import pytest
import sklearn
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from skorch.callbacks import Callback

from skfairtune import FairTuneSearchCV, get_fairness_scorer

from ..conftest import tiny_classifier

SMALL = dict(embed_dim=16, depth=2, num_heads=2, img_size=16, patch_size=4)


def small_classifier(**overrides):
    params = dict(model_kwargs=dict(SMALL), max_epochs=4, batch_size=64)
    params.update(overrides)
    return tiny_classifier(**params)


@pytest.fixture(scope="module")
def data():
    from skfairtune.datasets import make_biased_images

    return make_biased_images(240, image_size=16, random_state=0)


def fit_search(data, **params):
    params.setdefault("n_trials", 8)
    params.setdefault("random_state", 0)
    estimator = params.pop("estimator", None) or small_classifier()
    search = FairTuneSearchCV(estimator, **params)
    return search.fit(data.images, data.target, sensitive_features=data.sensitive_features)


def test_results_layout_and_baselines(data):
    search = fit_search(data)
    results = search.cv_results_
    assert len(results["params"]) == search.n_trials_ == 8
    for key in ("param_mask", "param_lr", "split0_test_score", "mean_test_score", "std_test_score",
                "rank_test_score", "state", "n_epochs", "mean_fit_time"):
        assert len(results[key]) == 8, key
    # The paper's baselines run first, under their preset names, each at the middle of the
    # learning-rate grid first ("auto": one rate per decade of lr_range), then the higher neighbour.
    assert list(results["baseline"][:8]) == ["full", "linear", "attention", "layernorm"] * 2
    assert list(results["param_mask"][:4]) == ["full", "linear", "attention", "layernorm"]
    assert list(results["param_lr"][:8]) == pytest.approx([1e-3] * 4 + [1e-2] * 4)
    # ERM trains every parameter; the all-ones bits ("every block unit") do not train the embeddings.
    assert results["n_trainable_params"][0] == search.study_.trials[0].user_attrs["n_trainable_params"]
    assert results["n_trainable_params"][0] > results["n_trainable_params"][2] > results["n_trainable_params"][1]
    assert set(search.best_params_) == {"mask", "lr"}
    assert search.best_mask_ == search.mask_space_.resolve(search.best_params_["mask"])
    assert 1e-5 <= search.best_params_["lr"] <= 1e-2
    assert results["rank_test_score"][search.best_index_] == 1
    assert search.best_score_ == results["mean_test_score"][search.best_index_]
    assert isinstance(search.study_, optuna.Study)
    assert len(search.trials_dataframe()) == 8


def test_best_is_at_least_every_complete_baseline(data):
    search = fit_search(data, n_trials=10)
    results = search.cv_results_
    for i, name in enumerate(results["baseline"]):
        if name is not None and results["state"][i] == "complete":
            assert search.best_score_ >= results["mean_test_score"][i]


def test_pruning_stops_trials_early(data):
    search = fit_search(data, n_trials=12, estimator=small_classifier(max_epochs=8))
    results = search.cv_results_
    pruned = results["state"] == "pruned"
    assert pruned.any(), "successive halving pruned nothing"
    assert (results["n_epochs"][pruned] < 8).all()
    assert (results["n_epochs"][results["state"] == "complete"] == 8).all()
    epochs = [t.user_attrs["epoch_split_scores"] for t in search.study_.trials]
    assert all(len(e) == n for e, n in zip(epochs, results["n_epochs"]))


def test_no_pruning_trains_every_trial_fully(data):
    search = fit_search(data, n_trials=6, pruner="none")
    assert (search.cv_results_["state"] == "complete").all()
    assert (search.cv_results_["n_epochs"] == 4).all()


def test_same_random_state_gives_identical_results(data):
    a = fit_search(data, n_trials=6)
    b = fit_search(data, n_trials=6)
    assert a.cv_results_["params"] == b.cv_results_["params"]
    np.testing.assert_array_equal(a.cv_results_["mean_test_score"], b.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(a.predict_proba(data.images), b.predict_proba(data.images))


def test_kfold_trains_in_lockstep(data):
    search = fit_search(data, n_trials=4, cv=3, pruner="none", fold_scoring="mean")
    assert search.n_splits_ == 3
    scores = np.column_stack([search.cv_results_[f"split{k}_test_score"] for k in range(3)])
    np.testing.assert_allclose(scores.mean(axis=1), search.cv_results_["mean_test_score"])
    for trial in search.study_.trials:
        assert all(len(epoch) == 3 for epoch in trial.user_attrs["epoch_split_scores"])
        # The reported intermediate value is the mean over folds, per epoch.
        for step, value in trial.intermediate_values.items():
            assert value == pytest.approx(np.mean(trial.user_attrs["epoch_split_scores"][step - 1]))


def test_groups_reach_the_splitter(data):
    lesion = np.arange(len(data.target)) // 2  # two images per lesion
    seen = {}

    class RecordingGroupKFold(GroupKFold):
        def split(self, X, y=None, groups=None):
            for train, valid in super().split(X, y, groups):
                seen.setdefault("overlap", []).append(np.intersect1d(groups[train], groups[valid]).size)
                yield train, valid

    search = FairTuneSearchCV(small_classifier(max_epochs=1), n_trials=1, cv=RecordingGroupKFold(2),
                              baselines=None, random_state=0)
    search.fit(data.images, data.target, sensitive_features=data.sensitive_features, groups=lesion)
    assert seen["overlap"] == [0, 0]
    default = FairTuneSearchCV(small_classifier(max_epochs=1), n_trials=1, baselines=None, random_state=0)
    default.fit(data.images, data.target, sensitive_features=data.sensitive_features, groups=lesion)
    assert default.n_splits_ == 1


def test_validation_fold_without_both_classes_fails_before_training(data):
    s = np.array(["a"] * len(data.target), dtype=object)
    positives = np.flatnonzero(data.target == 1)
    s[positives[:2]] = "rare"  # a group with positives only
    search = FairTuneSearchCV(small_classifier(), n_trials=2, cv=2, fold_scoring="mean", random_state=0)
    with pytest.raises(ValueError, match=r"fold \d: group 'rare' has 0: 0, 1: 1"):
        search.fit(data.images, data.target, sensitive_features=s)
    # Pooled folds need both classes in the union of the validation folds only.
    pooled = FairTuneSearchCV(small_classifier(), n_trials=2, cv=2, random_state=0)
    with pytest.raises(ValueError, match=r"the pooled validation folds: group 'rare' has 0: 0, 1: 2"):
        pooled.fit(data.images, data.target, sensitive_features=s)


def test_subsample_searches_on_a_fraction_then_refits_on_all(data):
    search = fit_search(data, n_trials=2, subsample=0.5, baselines=None)
    trial = search.study_.trials[0]
    assert trial.user_attrs["n_epochs"] >= 1
    # The refit saw every image: its training history has all batches of the full data.
    assert search.best_estimator_.history_[-1, "train_batch_count"] == int(np.ceil(len(data.target) / 64))


class _Diverge(Callback):
    """Make the loss NaN for masks that train the first block's attention."""

    def on_batch_begin(self, net, training=False, **kwargs):
        model = net.module_.vit
        if training and model.blocks[0].attn.qkv.weight.requires_grad:
            with __import__("torch").no_grad():
                model.head.weight.fill_(float("nan"))


def test_failed_trial_is_recorded_and_search_goes_on(data):
    search = fit_search(data, n_trials=6, estimator=small_classifier(callbacks=[_Diverge()]))
    results = search.cv_results_
    failed = results["state"] == "fail"
    assert failed[0] and failed[2]  # "full" and "attention" train block 0's attention
    assert "loss became nan" in results["fail_reason"][0]
    assert np.isnan(results["mean_test_score"][failed]).all()
    assert results["state"][1] == "complete"
    with pytest.raises(Exception, match="loss became nan"):
        fit_search(data, n_trials=2, error_score="raise", estimator=small_classifier(callbacks=[_Diverge()]))


class _InterruptAfter(Callback):
    """Simulate Ctrl-C after a number of epochs across all trials."""

    budget = {"epochs": 0}

    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, net, **kwargs):
        _InterruptAfter.budget["epochs"] += 1
        if _InterruptAfter.budget["epochs"] == self.epochs:
            raise KeyboardInterrupt


def test_interrupt_keeps_completed_trials_and_resume_runs_only_the_missing(data, tmp_path):
    storage = str(tmp_path / "search.log")
    _InterruptAfter.budget["epochs"] = 0
    interrupted = FairTuneSearchCV(small_classifier(callbacks=[_InterruptAfter(10)]), n_trials=6, pruner="none",
                                   storage=storage, study_name="resume", random_state=0)
    with pytest.warns(UserWarning, match="interrupted"):
        interrupted.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    assert interrupted.interrupted_
    first = {t.number: t.value for t in interrupted.study_.trials if t.state.name == "COMPLETE"}
    assert len(first) == 2  # 10 epochs = two complete 4-epoch trials, the third cut short
    assert hasattr(interrupted, "best_estimator_")  # the best so far is usable

    resumed = FairTuneSearchCV(small_classifier(), n_trials=6, pruner="none", storage=storage,
                               study_name="resume", random_state=0)
    resumed.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    trials = resumed.study_.trials
    assert {t.number: t.value for t in trials if t.number in first} == first
    counted = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(counted) == 6
    interrupted_trial = next(t for t in trials if t.user_attrs.get("interrupted"))
    rerun = [t for t in trials if t.user_attrs.get("requeued_from") == interrupted_trial.number]
    assert len(rerun) == 1 and rerun[0].params == interrupted_trial.params
    assert rerun[0].user_attrs.get("baseline") == interrupted_trial.user_attrs.get("baseline")

    again = FairTuneSearchCV(small_classifier(), n_trials=6, pruner="none", storage=storage,
                             study_name="resume", random_state=0)
    again.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    assert len(again.study_.trials) == len(trials)  # nothing left to run


def test_resuming_a_different_search_fails_before_training(data, tmp_path):
    storage = str(tmp_path / "search.log")
    fit_search(data, n_trials=1, storage=storage, study_name="s", baselines=None)
    with pytest.raises(ValueError, match="different search.*scoring"):
        fit_search(data, n_trials=2, storage=storage, study_name="s", scoring="neg_auc_gap")
    with pytest.raises(ValueError, match="different search.*space"):
        fit_search(data, n_trials=2, storage=storage, study_name="s", mask_space="attn")


def test_pipeline_estimator_is_addressed_by_step(data):
    pipe = Pipeline([("identity", FunctionTransformer()), ("vit", small_classifier(max_epochs=2))])
    search = fit_search(data, n_trials=3, estimator=pipe, baselines=("linear",))
    assert search.cv_results_["param_mask"][0] == "linear"
    assert isinstance(search.best_estimator_, Pipeline)
    assert search.best_estimator_[-1].mask_ == search.mask_space_.resolve(search.best_params_["mask"])


def test_search_in_pipeline_clone_pickle_and_routing(data):
    X, y, s = data.images, data.target, data.sensitive_features
    search = FairTuneSearchCV(small_classifier(max_epochs=1), n_trials=2, baselines=None, random_state=0)
    pipe = Pipeline([("identity", FunctionTransformer()), ("search", search)])
    pipe.fit(X, y, search__sensitive_features=s)  # routing off: step-prefixed fit params
    assert pipe.predict(X).shape == y.shape
    fitted = pipe[-1]
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    assert clone(search).get_params()["n_trials"] == 2
    with sklearn.config_context(enable_metadata_routing=True):
        result = cross_validate(clone(search), X, y, cv=2, scoring=get_fairness_scorer("min_group_auc"),
                                params={"sensitive_features": s})
        assert np.isfinite(result["test_score"]).all()
        routed = Pipeline([("identity", FunctionTransformer()), ("search", clone(search))])
        routed.fit(X, y, sensitive_features=s)
        assert routed[-1].n_trials_ == 2


def test_report_and_score_delegate_to_best_estimator(data):
    search = fit_search(data, n_trials=2, baselines=None)
    report = search.fairness_report(data.images, data.target, sensitive_features=data.sensitive_features)
    assert "roc_auc" in report.by_group.columns
    score = search.score(data.images, data.target, sensitive_features=data.sensitive_features)
    assert score == pytest.approx(report.group_min()["roc_auc"])
    with pytest.raises(ValueError, match="sensitive_features"):
        search.score(data.images, data.target)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(n_trials=0), "`n_trials` must be an int >= 1"),
        (dict(lr_range=(1e-3, 1e-5)), "`lr_range` must satisfy 0 < low < high"),
        (dict(scoring="fairest"), "`scoring='fairest'`"),
        (dict(pruner="median"), "`pruner` must be one of"),
        (dict(baselines=("lora",)), "`baselines` contains 'lora'"),
        (dict(mask_space="heads"), "heads"),
        (dict(cv=1), "`cv` must be an int >= 2"),
        (dict(subsample=1.5), "`subsample` must be a number in (0, 1]"),
        (dict(error_score="ignore"), "`error_score` must be 'raise' or a number"),
        (dict(estimator=object()), "`estimator` must be a FairTuneClassifier"),
    ],
)
def test_bad_parameters(data, params, message):
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        fit_search(data, **params)


def test_sensitive_features_required_for_group_scoring(data):
    search = FairTuneSearchCV(small_classifier(), n_trials=1)
    with pytest.raises(ValueError, match="needs group labels"):
        search.fit(data.images, data.target)
    overall = FairTuneSearchCV(small_classifier(max_epochs=1), n_trials=1, scoring="overall_auc",
                               baselines=None, random_state=0).fit(data.images, data.target)
    assert overall.n_trials_ == 1


def test_intersectional_groups_and_dataframe(data):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"group": data.sensitive_features["group"],
                          "sex": rng.choice(["f", "m"], len(data.target))})
    search = FairTuneSearchCV(small_classifier(max_epochs=1), n_trials=1, baselines=None, random_state=0)
    search.fit(data.images, data.target, sensitive_features=frame)
    assert np.isfinite(search.best_score_)


def test_grid_sampler_stops_the_search_when_its_grid_is_exhausted(data):
    # GridSampler asks the study to stop once every grid point ran; the search honours
    # that like Study.optimize does instead of failing in Study.stop().
    grid = {"mask__blocks.0.block": [0, 1], "mask__blocks.1.block": [1], "lr": [1e-3]}
    search = fit_search(data, mask_space="block", baselines=None, n_trials=6, pruner="none",
                        sampler=optuna.samplers.GridSampler(grid, seed=0))
    params = search.cv_results_["params"]
    assert len(params) == 2
    assert sorted(p["mask"] for p in params) == ["01", "11"]
    assert set(search.cv_results_["state"]) == {"complete"}
    # The search's space, not the estimator's default ln-attn-mlp, reads the sampled bits.
    assert search.best_estimator_.mask_space == "block"
    assert search.best_mask_.to_string() == search.best_params_["mask"]


def test_space_is_the_deprecated_name_of_mask_space(data):
    with pytest.warns(FutureWarning, match="`space` was renamed `mask_space`"):
        search = fit_search(data, n_trials=1, space="attn", baselines=None)
    assert search.mask_space_.name == "attn"
    with pytest.raises(ValueError, match="both `mask_space='block'` and its deprecated name `space='attn'`"):
        fit_search(data, n_trials=1, space="attn", mask_space="block")


def test_default_search_draws_random_masks_after_the_baselines(data, caplog):
    """The issue-22 contract: 24 trials on a 12-block space = 16 baselines, then random masks."""
    import logging

    estimator = small_classifier(model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16, depth=12, num_heads=2),
                                 max_epochs=1)
    with caplog.at_level(logging.INFO, logger="skfairtune"):
        search = fit_search(data, n_trials=24, estimator=estimator)
    assert "n_trials=24: 16 baseline trials, 8 random start-up masks, 0 TPE-guided masks" in caplog.text
    results = search.cv_results_
    presets = ["full", "linear", "attention", "layernorm"]
    # Every preset's trials sit under its name, in cv_results_ and in the study (no bit labels).
    for name in presets:
        rows = [i for i, b in enumerate(results["baseline"]) if b == name]
        assert len(rows) == 4 and all(results["params"][i]["mask"] == name for i in rows)
    for trial in search.study_.trials[:16]:
        assert set(trial.params) == {"baseline", "lr"}
    # The new masks are random: no near-copy of any preset's bits (36 bits each).
    preset_bits = [search.mask_space_.resolve(name).to_string() for name in presets]
    new = [p["mask"] for p, b in zip(results["params"], results["baseline"]) if b is None]
    assert len(new) == 8 and len(set(new)) == 8
    for mask in new:
        assert len(mask) == 36
        assert min(sum(a != b for a, b in zip(mask, bits)) for bits in preset_bits) >= 6, mask


def test_budget_without_searched_masks_warns(data):
    # The fix names the number of baseline trials, not the (smaller) budget that truncated them.
    with pytest.warns(UserWarning, match=r"n_trials=3 leaves no searched mask.*: 4\) .*Set n_trials above 4"):
        fit_search(data, n_trials=3, baseline_lrs=(1e-3,))


def test_unprunable_baselines_train_to_the_end_and_still_compete(data):
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=4)
    search = fit_search(data, n_trials=8, pruner=pruner, prune_baselines=False, baseline_lrs=(1e-5,),
                        estimator=small_classifier(max_epochs=3))
    for trial in search.study_.trials:
        if trial.user_attrs.get("baseline"):
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert "completed_rung_0" in trial.system_attrs  # a competitor at the first rung
    assert search.cv_results_["n_epochs"][:4].tolist() == [3] * 4


@pytest.mark.parametrize("name", ["tpe", "independent_tpe", "random"])
def test_named_samplers(data, name):
    search = fit_search(data, n_trials=6, sampler=name, baselines=("linear",), baseline_lrs=(1e-3,))
    assert len(search.cv_results_["params"]) == 6
    sampler = search.study_.sampler
    if name == "random":
        assert isinstance(sampler, optuna.samplers.RandomSampler)
    else:
        assert sampler._n_startup_trials == 1 + 10 and sampler._multivariate == (name == "tpe")


def test_late_successive_halving_first_rung_at_half_of_training():
    from skfairtune.search._pruners import make_pruner

    assert make_pruner("late_successive_halving", 15, 1 / 3)._min_resource == 8
    assert make_pruner("successive_halving", 15, 1 / 3)._min_resource == 5
