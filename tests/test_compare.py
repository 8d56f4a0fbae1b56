"""compare_methods: every method on the same outer split, with paired bootstrap intervals."""

import numpy as np
import pandas as pd
import pytest

from skfairtune import FairTuneSearchCV, compare_methods
from skfairtune.search._selection import cluster_bootstrap_indices
from skfairtune.compare import COMPARISON_COLUMNS, FAIRTUNE_SEARCHED, VALIDATION_SELECTED

from .conftest import tiny_classifier

SMALL = dict(embed_dim=16, depth=2, num_heads=2, img_size=16, patch_size=4)


@pytest.fixture(scope="module")
def data():
    from skfairtune.datasets import make_biased_images

    return make_biased_images(300, image_size=16, random_state=1)


def small_search(**params):
    clf = tiny_classifier(model_kwargs=dict(SMALL), max_epochs=1, batch_size=64)
    params.setdefault("random_state", 0)
    return FairTuneSearchCV(clf, **params)


@pytest.fixture(scope="module")
def compared(data):
    search = small_search(n_trials=5, baselines=("linear", "attention"), baseline_lrs=(1e-4, 1e-3),
                          pruner="none", n_bootstrap=0)
    return compare_methods(search, data.images, data.target, sensitive_features=data.sensitive_features,
                           methods=("linear", "attention"), n_boot=100, random_state=0, return_searches=True)


@pytest.fixture(scope="module")
def table(compared):
    return compared[0]


def test_fairtune_starts_from_the_tuned_baselines(compared):
    table, searches = compared
    fairtune = searches["FairTune"][0]
    copied = [t for t in fairtune.study_.trials if "copied_from" in t.user_attrs]
    assert len(copied) == 4 and len(fairtune.study_.trials) == 5  # 2 presets x 2 rates, then 1 new trial
    for name in ("linear", "attention"):
        tuned = sorted(t.value for t in searches[name][0].study_.trials)
        assert sorted(t.value for t in copied if t.user_attrs["baseline"] == name) == tuned
    # So FairTune's validation choice is at least every tuned baseline's.
    assert fairtune.best_score_ >= max(searches[n][0].best_score_ for n in ("linear", "attention"))
    # Stored as the search stores its own preset trials: under the preset's name, not as bits.
    assert all(set(t.params) == {"baseline", "lr"} for t in copied)
    # The copies count toward TPE's start-up, so the first new mask is still a random one.
    assert fairtune.study_.sampler._n_startup_trials == 4 + fairtune.n_startup_trials


def test_copied_baselines_compete_at_the_rungs(data):
    """Copies carry successive halving's rung records: without them the pruner does not see them."""
    search = small_search(n_trials=5, baselines=("linear",), baseline_lrs=(1e-3,), n_bootstrap=0,
                          pruner="successive_halving")
    search.estimator.set_params(max_epochs=3, warmup_fraction=0.0)
    _, searches = compare_methods(search, data.images, data.target, sensitive_features=data.sensitive_features,
                                  methods=("linear",), n_boot=20, random_state=0, return_searches=True)
    copied = [t for t in searches["FairTune"][0].study_.trials if "copied_from" in t.user_attrs]
    assert copied and all(t.system_attrs.get("completed_rung_0") == t.intermediate_values[1] for t in copied)


def test_documented_columns_and_rows(table):
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert list(table.index) == ["linear", "attention", VALIDATION_SELECTED, FAIRTUNE_SEARCHED, "FairTune"]
    for column in ("overall_auc", "min_group_auc", "auc_gap", "equalized_odds_difference",
                   "demographic_parity_difference", "n_trainable_params", "fit_time_s", "validation_score"):
        assert np.isfinite(table[column].astype(float)).all(), column
    assert "within_noise" not in table.columns  # renamed ci_contains_zero, no alias
    assert (table["min_group_auc"] <= table["overall_auc"] + 0.2).all()
    assert table.loc["linear", "n_trainable_params"] < table.loc["attention", "n_trainable_params"]
    # Each baseline's rate comes from its grid, chosen on the inner validation.
    assert table.loc["linear", "lr"] in (1e-4, 1e-3) and table.loc["attention", "lr"] in (1e-4, 1e-3)
    assert table.loc["linear", "mask"] == "linear"


def test_differences_and_intervals(table):
    assert table.loc["FairTune", "min_group_auc_diff"] == 0.0
    assert table.loc["FairTune", "min_group_auc_diff_ci_low"] == table.loc["FairTune", "min_group_auc_diff_ci_high"] == 0
    diff = table["min_group_auc_diff"]
    np.testing.assert_allclose(diff, table["min_group_auc"] - table.loc["FairTune", "min_group_auc"])
    assert (table["min_group_auc_diff_ci_low"] <= table["min_group_auc_diff_ci_high"]).all()
    for name in ("linear", "attention", VALIDATION_SELECTED, FAIRTUNE_SEARCHED):
        low, high = table.loc[name, ["min_group_auc_diff_ci_low", "min_group_auc_diff_ci_high"]]
        assert table.loc[name, "ci_contains_zero"] == (low <= 0 <= high)


METRICS = ["overall_auc", "min_group_auc", "auc_gap", "equalized_odds_difference",
           "demographic_parity_difference", "n_trainable_params", "validation_score", "lr", "mask",
           "min_group_auc_diff", "min_group_auc_diff_ci_low", "min_group_auc_diff_ci_high"]


def test_validation_selected_baseline_is_the_best_baseline_on_validation(compared):
    table, searches = compared
    validation = {name: searches[name][0].best_score_ for name in ("linear", "attention")}
    chosen = max(validation, key=validation.get)
    assert table.loc[VALIDATION_SELECTED, "chosen"] == chosen
    pd.testing.assert_series_equal(table.loc[VALIDATION_SELECTED, METRICS], table.loc[chosen, METRICS],
                                   check_names=False)
    # Choosing needs every baseline tuned.
    assert table.loc[VALIDATION_SELECTED, "fit_time_s"] == pytest.approx(
        table.loc["linear", "fit_time_s"] + table.loc["attention", "fit_time_s"])


def test_fairtune_searched_is_the_best_searched_mask(compared, data):
    table, searches = compared
    fairtune = searches["FairTune"][0]
    results = fairtune.cv_results_
    searched = [i for i in range(len(results["params"])) if results["baseline"][i] is None
                and results["state"][i] == "complete"]
    assert searched, "the fixture's search ran no searched mask"
    best = max(searched, key=lambda i: results["mean_test_score"][i])
    assert table.loc[FAIRTUNE_SEARCHED, "mask"] == results["params"][best]["mask"]
    assert table.loc[FAIRTUNE_SEARCHED, "validation_score"] == pytest.approx(results["mean_test_score"][best])
    assert table.loc[FAIRTUNE_SEARCHED, "chosen"] == "searched"
    assert set(table.loc[FAIRTUNE_SEARCHED, "mask"]) <= {"0", "1"}  # never a preset
    kept = results["baseline"][fairtune.best_index_]
    assert table.loc["FairTune", "chosen"] == (kept if isinstance(kept, str) else "searched")
    if kept is None:  # FairTune chose that very mask: the same model and predictions
        assert table.loc[FAIRTUNE_SEARCHED, "min_group_auc_diff"] == 0.0


def test_fairtune_searched_is_nan_without_a_searched_trial(data, caplog):
    # Every trial is an enqueued baseline: FairTune has no searched mask to report.
    search = small_search(n_trials=1, baselines=("linear",), baseline_lrs=(1e-3,), pruner="none", n_bootstrap=0)
    with caplog.at_level("WARNING", logger="skfairtune"):
        table = compare_methods(search, data.images, data.target, sensitive_features=data.sensitive_features,
                                methods=("linear",), n_boot=20, random_state=0)
    assert table.loc[FAIRTUNE_SEARCHED, METRICS].isna().all()
    assert "completed no trial of a searched (non-preset) mask" in caplog.text
    assert table.loc["FairTune", "chosen"] == "linear"
    assert table.loc["linear", "min_group_auc_diff"] == 0.0  # FairTune re-picked the preset


def test_outer_folds_hold_every_image_out_once(data):
    search = small_search(n_trials=1, baselines=None, baseline_lrs=(1e-3,), pruner="none", n_bootstrap=0)
    seen = []

    class Recording:
        def split(self, X, y, groups=None):
            for train, test in [(np.arange(0, 300, 2), np.arange(1, 300, 2)),
                                (np.arange(1, 300, 2), np.arange(0, 300, 2))]:
                seen.append(test)
                yield train, test

    table = compare_methods(search, data.images, data.target, sensitive_features=data.sensitive_features,
                            methods=("linear",), cv=Recording(), n_boot=20)
    assert sorted(np.concatenate(seen)) == list(range(300))
    assert list(table.index) == ["linear", VALIDATION_SELECTED, FAIRTUNE_SEARCHED, "FairTune"]
    assert table.loc[VALIDATION_SELECTED, "chosen"] == "linear,linear"  # one choice per outer fold


def test_groups_make_the_intervals_resample_whole_patients(data, monkeypatch):
    import skfairtune.compare as compare

    calls = []

    def spy(clusters, n_boot, random_state, *, strata=None):
        calls.append(np.asarray(clusters))
        return cluster_bootstrap_indices(clusters, n_boot, random_state, strata=strata)

    monkeypatch.setattr(compare, "cluster_bootstrap_indices", spy)
    patients = np.arange(len(data.target)) // 3
    search = small_search(n_trials=1, baselines=None, baseline_lrs=(1e-3,), pruner="none", n_bootstrap=0)
    table = compare_methods(search, data.images, data.target, sensitive_features=data.sensitive_features,
                            groups=patients, methods=("linear",), n_boot=20, random_state=0)
    assert len(calls) == 1
    held_out = calls[0]
    assert set(np.unique(held_out, return_counts=True)[1]) == {3}  # the outer split keeps patients whole
    assert np.isfinite(table.loc["linear", ["min_group_auc_diff_ci_low", "min_group_auc_diff_ci_high"]]
                       .astype(float)).all()


def test_a_resample_that_leaves_a_group_one_class_drops_out_instead_of_failing(data, monkeypatch):
    """Patients spanning label x group cells can give such a resample; it must not end the comparison."""
    import skfairtune.compare as compare

    def with_a_degenerate_resample(clusters, n_boot, random_state, *, strata=None):
        return cluster_bootstrap_indices(clusters, n_boot, random_state, strata=strata) + [np.array([0, 0])]

    monkeypatch.setattr(compare, "cluster_bootstrap_indices", with_a_degenerate_resample)
    search = small_search(n_trials=1, baselines=None, baseline_lrs=(1e-3,), pruner="none", n_bootstrap=0)
    table = compare_methods(search, data.images, data.target, sensitive_features=data.sensitive_features,
                            groups=np.arange(len(data.target)) // 3, methods=("linear",), n_boot=20, random_state=0)
    assert np.isfinite(table.loc["linear", ["min_group_auc_diff_ci_low", "min_group_auc_diff_ci_high"]]
                       .astype(float)).all()


@pytest.mark.parametrize("pure", [True, False])
def test_cluster_bootstrap_resamples_whole_clusters(pure):
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 6, size=40)
    clusters = np.repeat(np.arange(40) * 7 + 3, sizes)  # ids need not be 0..n-1
    # Pure: each cluster in one stratum (one label, one group); mixed: strata vary within clusters.
    strata = np.repeat(np.arange(40) % 4, sizes) if pure else rng.integers(0, 4, size=len(clusters))
    resamples = cluster_bootstrap_indices(clusters, 30, random_state=1, strata=strata)
    assert len(resamples) == 30
    size = dict(zip(*np.unique(clusters, return_counts=True)))
    stratum_of = {c: strata[clusters == c][0] for c in size}
    clusters_per_stratum = np.bincount([stratum_of[c] for c in size], minlength=4)
    for index in resamples:
        times = np.bincount(index, minlength=len(clusters))
        drawn = np.unique(clusters[index])
        for c in drawn:  # a drawn cluster brings every one of its samples, each as often
            assert len(set(times[clusters == c])) == 1
        if pure:  # drawn within strata: every stratum keeps its number of clusters
            draws = np.zeros(4, dtype=int)
            for c in drawn:
                draws[stratum_of[c]] += times[clusters == c][0]
            np.testing.assert_array_equal(draws, clusters_per_stratum)
        else:
            assert sum(times[clusters == c][0] for c in drawn) == len(size)
    again = cluster_bootstrap_indices(clusters, 30, random_state=1, strata=strata)
    assert all(np.array_equal(a, b) for a, b in zip(resamples, again))  # paired across methods


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"methods": ("sparse",)}, ValueError, r"`methods` contains \['sparse'\]"),
    ({"test_size": 1.5}, ValueError, r"`test_size` must be in \(0, 1\); got 1.5"),
    ({"n_boot": 3}, ValueError, r"`n_boot` must be an int >= 10; got 3"),
    ({"cv": 1}, ValueError, r"`cv` must be None, an int >= 2"),
])
def test_bad_arguments(data, kwargs, error, message):
    with pytest.raises(error, match=message):
        compare_methods(small_search(n_trials=1), data.images, data.target,
                        sensitive_features=data.sensitive_features, **kwargs)


def test_search_must_be_a_fairtune_search(data):
    with pytest.raises(TypeError, match="`search` must be a FairTuneSearchCV"):
        compare_methods(tiny_classifier(), data.images, data.target, sensitive_features=data.sensitive_features)
