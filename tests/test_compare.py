"""compare_methods: every method on the same outer split, with paired bootstrap intervals."""

import numpy as np
import pandas as pd
import pytest

from skfairtune import FairTuneSearchCV, compare_methods, min_group_auc
from skfairtune.compare import COMPARISON_COLUMNS

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


def test_documented_columns_and_rows(table):
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert list(table.index) == ["linear", "attention", "FairTune"]
    for column in ("overall_auc", "min_group_auc", "auc_gap", "equalized_odds_difference",
                   "demographic_parity_difference", "n_trainable_params", "fit_time_s", "validation_score"):
        assert np.isfinite(table[column].astype(float)).all(), column
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
    for name in ("linear", "attention"):
        low, high = table.loc[name, ["min_group_auc_diff_ci_low", "min_group_auc_diff_ci_high"]]
        assert table.loc[name, "within_noise"] == (low <= 0 <= high)


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
    assert list(table.index) == ["linear", "FairTune"]


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
