"""Multi-objective machinery: scorings, Pareto fronts, hypervolume, refit rules and the search.

The Pareto pruner is tested in test_pareto_pruner.py.
"""

import math

import numpy as np
import optuna
import pytest

from skfairtune.search._multiobjective import TrialCost, resolve_refit, resolve_scorings, utopia_index
from skfairtune.search._pareto import (
    check_directions,
    hypervolume,
    hypervolume_history,
    non_dominated_sort,
    pareto_front_frame,
)
from skfairtune.distributed._trial_record import TrialRecord
from skfairtune.scorers import get_fairness_scorer_names

from ._toy_study import MAXMAX, run_toy_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ---------------------------------------------------------------------- Pareto helpers
def test_non_dominated_sort_ranks_and_directions():
    values = [[0.9, 0.1], [0.5, 0.5], [0.4, 0.4], [0.1, 0.9], [0.3, 0.3], [np.nan, 0.9]]
    assert non_dominated_sort(values, MAXMAX).tolist() == [0, 0, 1, 0, 2, -1]
    # Minimising both reverses the order.
    assert non_dominated_sort(values, ["minimize", "minimize"]).tolist() == [0, 2, 1, 0, 0, -1]
    # Equal vectors do not dominate each other.
    assert non_dominated_sort([[0.5, 0.5], [0.5, 0.5]], MAXMAX).tolist() == [0, 0]


@pytest.mark.parametrize("seed", range(3))
def test_non_dominated_sort_agrees_with_optuna(seed):
    study, _ = run_toy_study(None, sampler=optuna.samplers.RandomSampler(seed=seed), n_trials=50)
    ranks = non_dominated_sort([t.values for t in study.trials], MAXMAX)
    assert {t.number for t in study.best_trials} == set(np.flatnonzero(ranks == 0).tolist())


def test_pareto_front_frame_has_params_and_values():
    study = optuna.create_study(directions=["maximize", "minimize"])
    rows = [("1100", 1e-3, 0.80, 20, None), ("1000", 2e-3, 0.70, 10, "linear"), ("1110", 1e-4, 0.75, 30, None)]
    for mask, lr, auc, cost, baseline in rows:
        trial = study.ask()
        trial.set_user_attr("params", {"mask": mask, "lr": lr})
        if baseline:
            trial.set_user_attr("baseline", baseline)
        study.tell(trial, [auc, cost])
    pruned = study.ask()
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(["min_group_auc", "n_trainable_params"])
    frame = pareto_front_frame(study)
    assert list(frame.columns) == ["trial_number", "mask", "lr", "baseline", "min_group_auc", "n_trainable_params"]
    assert frame["mask"].tolist() == ["1100", "1000"] and frame["baseline"].tolist() == [None, "linear"]
    # From a list of trials the directions are needed.
    frame = pareto_front_frame(study.trials, directions=["maximize", "maximize"])
    assert frame["trial_number"].tolist() == [0, 2]
    with pytest.raises(ValueError, match="`directions` is required"):
        pareto_front_frame(study.trials)
    assert pareto_front_frame([], directions=MAXMAX).empty


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_matches_optunas_exact_computation(dims):
    compute = pytest.importorskip("optuna._hypervolume").compute_hypervolume
    rng = np.random.default_rng(dims)
    values = rng.uniform(0.5, 1.0, size=(40, dims))
    reference = np.full(dims, 0.5)
    ours = hypervolume(values, ["maximize"] * dims, reference)
    assert ours == pytest.approx(compute(-values, -reference), rel=1e-9)
    # A minimised column is the same volume.
    flipped = values.copy()
    flipped[:, 0] = -flipped[:, 0]
    assert hypervolume(flipped, ["minimize"] + ["maximize"] * (dims - 1), [-0.5] + [0.5] * (dims - 1)) == \
        pytest.approx(ours)


def test_hypervolume_edge_cases_and_history():
    assert hypervolume([[0.8, 0.6]], MAXMAX, [0.5, 0.5]) == pytest.approx(0.03)
    # Points at or behind the reference add nothing; NaN rows are skipped.
    assert hypervolume([[0.8, 0.6], [0.4, 0.9], [np.nan, 1.0]], MAXMAX, [0.5, 0.5]) == pytest.approx(0.03)
    # Default reference: the worst value per objective.
    assert hypervolume([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], MAXMAX) == pytest.approx(0.25)
    history = hypervolume_history([[0.6, 0.6], [np.nan, np.nan], [0.7, 0.7], [0.55, 0.55]], MAXMAX, [0.5, 0.5])
    assert history == pytest.approx([0.01, 0.01, 0.04, 0.04])
    assert (np.diff(hypervolume_history(np.random.default_rng(0).uniform(size=(30, 3)), ["maximize"] * 3)) >= 0).all()


@pytest.mark.parametrize("dims", [2, 3])
def test_hypervolume_history_is_the_volume_of_each_prefix(dims):
    values = np.random.default_rng(dims).uniform(size=(40, dims))
    values[[0, 7, 8]] = np.nan
    directions = ["maximize", "minimize", "maximize"][:dims]
    reference = [0.2, 0.8, 0.2][:dims]
    expected = [hypervolume(values[: k + 1], directions, reference) for k in range(len(values))]
    assert hypervolume_history(values, directions, reference) == pytest.approx(expected)


@pytest.mark.parametrize("call, message", [
    (lambda: non_dominated_sort([], MAXMAX), "non-empty 2-D array"),
    (lambda: non_dominated_sort([[0.1, 0.2, 0.3]], MAXMAX), "3 columns but `directions` names 2"),
    (lambda: non_dominated_sort([[0.1, 0.2]], ["maximize", "largest"]), "each direction must be one of"),
    (lambda: hypervolume([[0.1, 0.2]], MAXMAX, [np.inf, 0]), "`reference_point` must be finite"),
    (lambda: hypervolume([[np.nan, 0.2]], MAXMAX), "no row without NaN"),
    (lambda: utopia_index([[np.nan, 0.2]], MAXMAX), "no row without NaN"),
    (lambda: utopia_index([], MAXMAX), "non-empty 2-D array"),
    (lambda: check_directions(None), "non-empty list"),
])
def test_helper_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------- refit choice
def test_utopia_index_rules():
    # The balanced trial is closest to (best, best).
    assert utopia_index([[0.9, 0.6], [0.8, 0.8], [0.6, 0.9]], MAXMAX) == 1
    # Directions apply before scaling: a cheap trial with nearly the best AUC wins.
    assert utopia_index([[0.75, 5000], [0.80, 90000], [0.74, 4000]], ["maximize", "minimize"]) == 0
    # A constant objective does not matter; NaN rows are skipped.
    assert utopia_index([[0.7, 1.0], [0.8, 1.0], [np.nan, 1.0]], MAXMAX) == 1
    # Ties go to the earlier row.
    assert utopia_index([[0.9, 0.8], [0.8, 0.9]], MAXMAX) == 0


@pytest.mark.parametrize("seed", range(5))
def test_utopia_pick_is_non_dominated(seed):
    values = np.random.default_rng(seed).uniform(size=(30, 3))
    directions = ["maximize", "minimize", "maximize"]
    assert non_dominated_sort(values, directions)[utopia_index(values, directions)] == 0


def _results():
    return {"mean_test_min_group_auc": np.array([0.70, 0.78, 0.72, 0.99, 0.78]),
            "mean_test_overall_auc": np.array([0.90, 0.80, 0.88, 0.99, 0.85]),
            "state": np.array(["complete", "complete", "complete", "pruned", "complete"], dtype=object)}


NAMES = ["min_group_auc", "overall_auc"]


def test_refit_rules():
    results = _results()
    # The best on min_group_auc, tie broken by overall_auc; the pruned row never counts.
    assert resolve_refit("min_group_auc", NAMES, MAXMAX)(results) == 4
    assert resolve_refit("overall_auc", NAMES, MAXMAX)(results) == 0
    assert resolve_refit("utopia", NAMES, MAXMAX)(results) == resolve_refit(True, NAMES, MAXMAX)(results)
    assert resolve_refit(False, NAMES, MAXMAX) is None
    assert resolve_refit(lambda r: 2, NAMES, MAXMAX)(results) == 2
    # The utopia rule over the complete rows only.
    matrix = np.column_stack([results["mean_test_min_group_auc"], results["mean_test_overall_auc"]])[[0, 1, 2, 4]]
    assert resolve_refit("utopia", NAMES, MAXMAX)(results) == [0, 1, 2, 4][utopia_index(matrix, MAXMAX)]


@pytest.mark.parametrize("refit, error, message", [
    ("min_group_acu", ValueError, r"`refit='min_group_acu'` is not an objective of this search; use 'utopia', one "
                                  r"of \['min_group_auc', 'overall_auc'\]"),
    (3.5, TypeError, "`refit` must be True, False, 'utopia'"),
    (lambda r: 7, ValueError, r"returned 7, outside cv_results_'s rows 0..4"),
    (lambda r: "0", TypeError, "must return the index of a row"),
    (lambda r: 3, ValueError, "chose row 3, a pruned trial"),
])
def test_refit_bad_inputs(refit, error, message):
    with pytest.raises(error, match=message):
        resolve_refit(refit, NAMES, MAXMAX)(_results())


def test_refit_needs_objective_columns():
    with pytest.raises(KeyError, match="mean_test_overall_auc"):
        resolve_refit("utopia", NAMES, MAXMAX)({"mean_test_min_group_auc": np.array([0.7])})


# ---------------------------------------------------------------------- scorings
def test_resolve_scorings_kinds():
    from sklearn.metrics import get_scorer

    names, scorers, directions = resolve_scorings(["min_group_auc", "roc_auc", "n_trainable_params"])
    assert names == ["min_group_auc", "roc_auc", "n_trainable_params"]
    assert directions == ["maximize", "maximize", "minimize"]
    assert repr(scorers[0]).startswith("make_fairness_scorer(min_group_auc")
    assert repr(scorers[1]) == repr(get_scorer("roc_auc"))
    assert scorers[2] == TrialCost("n_trainable_params", "n_trainable_params_")
    # A dict names custom scorers, as scikit-learn's multi-metric scoring.
    custom = lambda est, X, y: 0.0  # noqa: E731
    names, scorers, directions = resolve_scorings({"gap": "neg_auc_gap", "mine": custom})
    assert names == ["gap", "mine"] and scorers[1] is custom and directions == ["maximize"] * 2


def test_every_fairness_scorer_resolves():
    names, _, directions = resolve_scorings(get_fairness_scorer_names())
    assert names == get_fairness_scorer_names() and set(directions) == {"maximize"}


def test_trial_cost_reads_the_trial():
    study = optuna.create_study(directions=MAXMAX)
    trial = study.ask()
    trial.set_user_attr("n_trainable_params", 4321)
    cost = TrialCost("n_trainable_params", "n_trainable_params_")
    assert cost.from_trial(trial) == 4321.0
    assert math.isnan(cost.from_trial(study.ask()))


@pytest.mark.parametrize("scoring, error, message", [
    ([], ValueError, "empty list"),
    ("min_group_auc", TypeError, "must be a list of scorer names"),
    (["min_group_acu"], ValueError, r"'min_group_acu', which is not a known scorer. Did you mean 'min_group_auc'\?"),
    (["min_group_auc", "min_group_auc"], ValueError, "lists 'min_group_auc' twice"),
    (["min_group_auc", 3], TypeError, "names must be strings"),
    ({"a": 3}, TypeError, r"`scoring\['a'\]` must be a scorer name or a callable"),
])
def test_resolve_scorings_bad_inputs(scoring, error, message):
    with pytest.raises(error, match=message):
        resolve_scorings(scoring)


def test_unknown_scoring_lists_valid_names():
    with pytest.raises(ValueError) as info:
        resolve_scorings(["min_group_auc", "fairness_please"])
    text = str(info.value)
    assert all(repr(name) in text for name in [*get_fairness_scorer_names(), "n_trainable_params", "roc_auc"])


# ---------------------------------------------------------------------- figures
def _fitted(n=12, seed=0, scoring=("min_group_auc", "overall_auc", "n_trainable_params")):
    """A stand-in for a fitted multi-objective search: what the figures read."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    state = np.array(["complete"] * n, dtype=object)
    state[[2, 5]] = "pruned", "fail"
    baseline = np.array([None] * n, dtype=object)
    baseline[:2] = "linear", "full_ft"
    results = {"mean_test_min_group_auc": rng.uniform(0.6, 0.8, n),
               "mean_test_overall_auc": rng.uniform(0.75, 0.9, n),
               "mean_test_n_trainable_params": rng.integers(1_000, 50_000, n).astype(float),
               "state": state, "trial_number": np.arange(n), "baseline": baseline}
    results["mean_test_min_group_auc"][5] = np.nan
    scoring = scoring if isinstance(scoring, str) else list(scoring)
    return SimpleNamespace(scoring=scoring, cv_results_=results, best_index_=3)


def test_plot_pareto_front_marks_front_baselines_and_refit():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from skfairtune.plotting._pareto import plot_pareto_front

    search = _fitted()
    ax = plot_pareto_front(search, x="min_group_auc", y="n_trainable_params")
    labels = ax.get_legend_handles_labels()[1]
    results = search.cv_results_
    complete = [i for i in range(12) if results["state"][i] == "complete"]
    matrix = np.column_stack([results[f"mean_test_{n}"] for n in search.scoring])[complete]
    n_front = int((non_dominated_sort(matrix, ["maximize", "maximize", "minimize"]) == 0).sum())
    assert f"Pareto-optimal trial ({n_front})" in labels and f"trial ({len(complete) - n_front})" in labels
    assert {"baseline: linear", "baseline: full_ft", "refit trial"} <= set(labels)
    assert ax.get_ylabel() == "Validation n_trainable_params (lower is better)"
    plt.close("all")


def test_plot_hypervolume_history_compares_searches():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from skfairtune.plotting._pareto import plot_hypervolume_history

    a, b = _fitted(seed=0), _fitted(seed=1)
    ax = plot_hypervolume_history({"tpe": a, "random": b})
    assert [line.get_label() for line in ax.lines] == ["tpe", "random"]
    for line in ax.lines:
        assert (np.diff(line.get_ydata()) >= 0).all() and line.get_ydata()[-1] > 0
    plt.close("all")


@pytest.mark.parametrize("call, message", [
    (lambda f: f["front"](_fitted(), x="roc_auc"), r"`x='roc_auc'` is not an objective of this search"),
    (lambda f: f["front"](_fitted(), x="overall_auc", y="overall_auc"), "both 'overall_auc'"),
    (lambda f: f["front"](type("S", (), {"scoring": ["min_group_auc"]})()), "needs a fitted"),
    (lambda f: f["front"](_fitted(scoring="min_group_auc")), "needs a search with several objectives"),
    (lambda f: f["hv"]({}), "`searches` is empty"),
    (lambda f: f["hv"](_fitted(), reference_point=[0.5]), "`reference_point` has 1 entries"),
    (lambda f: f["hv"]({"a": _fitted(), "b": _fitted(scoring=["overall_auc", "min_group_auc",
                                                           "n_trainable_params"])}), "with the same objectives"),
])
def test_plot_bad_inputs(call, message):
    import matplotlib

    matplotlib.use("Agg")
    from skfairtune.plotting._pareto import plot_hypervolume_history, plot_pareto_front

    with pytest.raises(ValueError, match=message):
        call({"front": plot_pareto_front, "hv": plot_hypervolume_history})


# ----------------------------------------------------------------------------- through FairTuneSearchCV
def _mo_search(**params):
    from skfairtune import FairTuneSearchCV

    from ..conftest import tiny_classifier

    params = {"n_trials": 6, "scoring": ["min_group_auc", "overall_auc", "n_trainable_params"],
              "baselines": ("linear", "full"), "baseline_lrs": None, "n_bootstrap": 0, "random_state": 0,
              **params}
    return FairTuneSearchCV(tiny_classifier(max_epochs=params.pop("max_epochs", 3)), **params)


@pytest.fixture(scope="module")
def mo_data():
    from skfairtune.datasets import make_biased_images

    return make_biased_images(160, image_size=16, random_state=0)


def test_search_with_several_objectives_finds_a_front_and_refits_one_of_it(mo_data):
    search = _mo_search(refit="min_group_auc").fit(mo_data.images, mo_data.target,
                                                  sensitive_features=mo_data.sensitive_features)
    results = search.cv_results_
    assert [d.name for d in search.study_.directions] == ["MAXIMIZE", "MAXIMIZE", "MINIMIZE"]
    assert "mean_test_score" not in results
    complete = results["state"] == "complete"
    front = set(results["trial_number"][results["pareto_rank"] == 0])
    assert set(search.pareto_front_["trial_number"]) == front
    # The refit objective's best complete trial, and best_score_ is its value (scikit-learn's rule).
    best = np.nanmax(np.where(complete, results["mean_test_min_group_auc"], np.nan))
    assert search.best_score_ == best == results["mean_test_min_group_auc"][search.best_index_]
    assert results["trial_number"][search.best_index_] in front
    # The cost is read from the model: "linear" trains the head only, "full" everything.
    n_params = dict(zip(results["param_mask"], results["mean_test_n_trainable_params"]))
    assert n_params["linear"] < n_params["full"]
    assert 0 <= search.score(mo_data.images, mo_data.target, sensitive_features=mo_data.sensitive_features) <= 1


def test_utopia_refit_and_pareto_pruning_in_the_search(mo_data):
    search = _mo_search(n_trials=10, max_epochs=5, refit="utopia", scoring=["min_group_auc", "overall_auc"])
    search.fit(mo_data.images, mo_data.target, sensitive_features=mo_data.sensitive_features)
    results = search.cv_results_
    assert not hasattr(search, "best_score_")
    assert results["pareto_rank"][search.best_index_] == 0
    # The rungs are recorded on every trial that reached one, pruned or not.
    rungs = [TrialRecord.of(t).pareto_rungs for t in search.study_.trials]
    assert any(rungs), "no trial reached a rung: the test does not exercise the pruner"
    pruned = results["state"] == "pruned"
    assert (results["n_epochs"][pruned] < 5).all()


@pytest.mark.parametrize("params, message", [
    ({"scoring": ["min_group_auc", "fairest"]}, r"fairest"),
    ({"refit": "accuracy"}, r"`refit='accuracy'` is not an objective of this search"),
    ({"selection": "reeval"}, r"selection='reeval' applies to one objective"),
    ({"pruner": "hyperband"}, r"pruner='hyperband' prunes one objective"),
])
def test_bad_multi_objective_settings_fail_before_training(mo_data, params, message, monkeypatch):
    from skfairtune._training._trainer import Trainer

    monkeypatch.setattr(Trainer, "step", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises((ValueError, TypeError), match=message):
        _mo_search(**params).fit(mo_data.images, mo_data.target, sensitive_features=mo_data.sensitive_features)


def test_single_objective_refit_must_be_boolean(mo_data):
    with pytest.raises(ValueError, match=r"`refit` must be True or False for one objective"):
        _mo_search(scoring="min_group_auc", refit="utopia").fit(
            mo_data.images, mo_data.target, sensitive_features=mo_data.sensitive_features)
