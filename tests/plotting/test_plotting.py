"""Figures of a search, rendered headless, and the per-epoch group-AUC callback behind one of them."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pytest  # noqa: E402

from skfairtune import FairTuneSearchCV, group_auc  # noqa: E402
from skfairtune.callbacks import GroupAUCScoring  # noqa: E402
from skfairtune.plotting import (  # noqa: E402
    plot_group_auc_curves,
    plot_mask_selection,
    plot_pareto,
    plot_search_convergence,
)

from ..conftest import tiny_classifier  # noqa: E402

DEPTH = 2


class _PruneOddTrials(optuna.pruners.BasePruner):
    """Deterministic pruning: odd-numbered trials stop after their first epoch."""

    def prune(self, study, trial):
        return trial.number % 2 == 1


@pytest.fixture(scope="module")
def data():
    from skfairtune.datasets import make_biased_images

    return make_biased_images(200, image_size=16, random_state=0)


@pytest.fixture(scope="module")
def search(data):
    clf = tiny_classifier(max_epochs=2, batch_size=64, model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16,
                                                                          depth=DEPTH, num_heads=2))
    return FairTuneSearchCV(clf, n_trials=8, baselines=("linear", "full"), baseline_lrs=None, pruner=_PruneOddTrials(),
                            refit=False, random_state=0).fit(
        data.images, data.target, sensitive_features=data.sensitive_features)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _complete_rows(search):
    results = search.cv_results_
    rows = np.flatnonzero(results["state"] == "complete")
    return rows[np.argsort(results["rank_test_score"][rows])]


def test_mask_selection_best_mask(search):
    ax = plot_mask_selection(search)
    shown = ax.images[0].get_array()
    bits = np.array([int(b) for b in search.best_params_["mask"]]).reshape(DEPTH, 3).T
    np.testing.assert_array_equal(shown, bits)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["LayerNorm", "Attention", "MLP"]
    assert ax.get_xlabel() == "Transformer block"
    assert "best mask" in ax.get_title()
    assert sum(t.get_text() == "on" for t in ax.texts) == bits.sum()


def test_mask_selection_top_k_frequencies(search):
    rows = _complete_rows(search)[:3]
    assert len(rows) == 3, "the fixture search should complete at least 3 trials"
    # Baselines are stored by preset name; the figure shows their bits.
    masks = np.array([search.mask_space_.resolve(search.cv_results_["param_mask"][i]).bits for i in rows])
    ax = plot_mask_selection(search, top_k=3)
    np.testing.assert_allclose(ax.images[0].get_array(), masks.mean(axis=0).reshape(DEPTH, 3).T)
    assert "top 3" in ax.get_title()
    assert len(ax.figure.axes) == 2, "a colorbar explains the shares"
    assert {t.get_text() for t in ax.texts} <= {"0%", "33%", "67%", "100%"}


def test_mask_selection_top_k_beyond_complete_uses_all(search):
    n_complete = len(_complete_rows(search))
    ax = plot_mask_selection(search, top_k=100)
    assert f"top {n_complete} " in ax.get_title()


def test_convergence_marks_complete_pruned_and_best(search):
    results = search.cv_results_
    n_complete = int((results["state"] == "complete").sum())
    n_pruned = int((results["state"] == "pruned").sum())
    assert n_pruned >= 3 and n_complete >= 3
    ax = plot_search_convergence(search)
    lines = {line.get_label().split(" (")[0]: line for line in ax.get_lines()}
    assert len(lines["complete"].get_xdata()) == n_complete
    # Pruned trials: crosses at their score, or triangles on the bottom edge when far below.
    pruned = [line for label, line in lines.items() if label.startswith("pruned")]
    pruned_x = np.concatenate([line.get_xdata() for line in pruned])
    assert len(pruned_x) == n_pruned
    assert np.all(pruned_x % 2 == 1)
    for line in pruned:
        assert mcolors.to_hex(line.get_color()) != mcolors.to_hex(lines["complete"].get_color())
    best = np.asarray(lines["best so far"].get_ydata())
    assert np.all(np.diff(best) >= 0)
    assert best[-1] == pytest.approx(search.best_score_)
    assert ax.get_xlabel() == "Trial"
    assert "min-group AUC" in ax.get_ylabel()
    assert {t.get_text() for t in ax.texts} == {"linear", "full"}


def test_pareto_front_is_the_non_dominated_set(search):
    ax = plot_pareto(search)
    points = {line.get_label().split(" (")[0]: line for line in ax.get_lines()}
    others, front = points["trial"], points["Pareto-optimal trial"]
    x = np.concatenate([others.get_xdata(), front.get_xdata()])
    y = np.concatenate([others.get_ydata(), front.get_ydata()])
    assert len(x) == int((search.cv_results_["state"] == "complete").sum())

    def dominated(i):
        return np.any((x >= x[i]) & (y >= y[i]) & ((x > x[i]) | (y > y[i])))

    expected = {(x[i], y[i]) for i in range(len(x)) if not dominated(i)}
    assert set(zip(front.get_xdata(), front.get_ydata())) == expected
    star = points["selected by the search"]
    assert star.get_ydata()[0] == pytest.approx(search.best_score_)
    assert ax.get_xlabel() == "Validation overall AUC"
    assert np.all((x > 0) & (x <= 1))
    # Complete baseline trials are ringed and named in the legend.
    results = search.cv_results_
    complete_baselines = {b for b, state in zip(results["baseline"], results["state"])
                          if isinstance(b, str) and state == "complete"}
    assert {label.removeprefix("baseline: ") for label in points if label.startswith("baseline: ")} \
        == complete_baselines


def test_search_plots_reject_unfitted_and_lr_only_searches(data):
    unfitted = FairTuneSearchCV(tiny_classifier())
    for plot in (plot_mask_selection, plot_search_convergence, plot_pareto):
        with pytest.raises(ValueError, match="needs a fitted FairTuneSearchCV"):
            plot(unfitted)
    lr_only = FairTuneSearchCV(tiny_classifier(max_epochs=1, mask="linear"), mask_space=None, n_trials=1,
                               baselines=None, refit=False, random_state=0).fit(
        data.images, data.target, sensitive_features=data.sensitive_features)
    with pytest.raises(ValueError, match="mask_space=None"):
        plot_mask_selection(lr_only)


@pytest.mark.parametrize("top_k", [0, -1, 1.5, True])
def test_mask_selection_rejects_bad_top_k(search, top_k):
    with pytest.raises(ValueError, match=r"`top_k` must be an int >= 1"):
        plot_mask_selection(search, top_k=top_k)


# ---------------------------------------------------------------- per-epoch group AUC
@pytest.fixture(scope="module")
def watched(data):
    X, y, s = data.images, data.target, data.sensitive_features
    X_tr, y_tr, s_tr, X_va, y_va, s_va = X[:140], y[:140], s[:140], X[140:], y[140:], s[140:]
    fitted = {}
    for name, mask in (("full fine-tuning", "full"), ("linear readout", "linear")):
        clf = tiny_classifier(mask=mask, max_epochs=3, callbacks=[
            GroupAUCScoring(X_tr, y_tr, sensitive_features=s_tr, name="train"),
            GroupAUCScoring(X_va, y_va, sensitive_features=s_va, name="valid"),
        ])
        fitted[name] = clf.fit(X_tr, y_tr)
    return fitted, (X_va, y_va, s_va)


def test_callback_records_whole_set_group_auc_each_epoch(watched):
    fitted, (X_va, y_va, s_va) = watched
    clf = fitted["full fine-tuning"]
    assert len(clf.history_[:, "valid_group_auc"]) == 3
    # The last record is the trained model's per-group AUC on the whole validation set.
    expected = group_auc(y_va, clf.predict_proba(X_va)[:, 1], sensitive_features=s_va)
    recorded = clf.history_[-1, "valid_group_auc"]
    assert recorded == pytest.approx({str(k): v for k, v in expected.items()})
    assert clf.history_[-1, "valid_min_group_auc"] == pytest.approx(expected.min())
    # Linear readout trains from cached activations: the callback must still score raw images.
    linear = fitted["linear readout"]
    assert linear.frozen_prefix_ > 0
    expected = group_auc(y_va, linear.predict_proba(X_va)[:, 1], sensitive_features=s_va)
    assert linear.history_[-1, "valid_group_auc"] == pytest.approx({str(k): v for k, v in expected.items()})


@pytest.mark.parametrize("y, sensitive, message", [
    (np.array([0, 1, 2, 1]), ["a", "b", "a", "b"], "needs binary labels"),
    (np.array([0, 1, 0, 1]), ["a", "b", "a"], "`y` has 4 labels but `sensitive_features` has 3 rows"),
])
def test_callback_rejects_bad_inputs(y, sensitive, message):
    X = np.zeros((4, 16, 16, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=message):
        GroupAUCScoring(X, y, sensitive_features=sensitive).initialize()


def test_group_auc_curves_show_train_and_held_out_per_group(watched):
    fitted, _ = watched
    axes = plot_group_auc_curves(fitted, valid_label="test")
    assert len(axes) == 2
    for ax, (label, clf) in zip(axes, fitted.items()):
        assert ax.get_title().startswith(label)
        assert "test AUC gap" in ax.get_title()
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {"majority, train", "majority, test", "minority, train", "minority, test"}
        assert lines["minority, train"].get_linestyle() == "-"
        assert lines["minority, test"].get_linestyle() == "--"
        assert list(lines["minority, test"].get_xdata()) == [1, 2, 3]
        np.testing.assert_allclose(lines["minority, test"].get_ydata(),
                                   [row["minority"] for row in clf.history_[:, "valid_group_auc"]])
        # A group keeps its colour across the panels.
        assert lines["minority, train"].get_color() == lines["minority, test"].get_color()
    assert axes[0].get_lines()[0].get_color() == axes[1].get_lines()[0].get_color()
    assert axes[0].get_ylabel() == "AUC per group"


def test_group_auc_curves_explain_missing_callbacks(data):
    clf = tiny_classifier(max_epochs=1).fit(data.images[:60], data.target[:60])
    with pytest.raises(ValueError, match=r"no 'train_group_auc' in its history.*GroupAUCScoring"):
        plot_group_auc_curves({"plain": clf})
    with pytest.raises(TypeError, match="non-empty mapping"):
        plot_group_auc_curves([clf])


def test_plot_report_draws_each_group_with_its_interval():
    from skfairtune.plotting import plot_report
    from skfairtune.reports import fairness_report_from_scores

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    score = np.clip(y * 0.4 + rng.random(300) * 0.6, 0, 1)
    groups = rng.choice(["A", "B", "C"], 300)
    report = fairness_report_from_scores(y, score, sensitive_features=groups, n_boot=100, random_state=0)
    ax = plot_report(report)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B", "C", "overall"]
    assert "bootstrap interval" in ax.get_xlabel()
    # Each point's error bar spans the report's interval.
    for i, container in enumerate(ax.containers):
        (x, _), = container.lines[0].get_xydata()
        segments = container.lines[2][0].get_segments()
        (low, _), (high, _) = segments[0]
        expected_low = (list(report.by_group_ci[0]["roc_auc"]) + [report.overall_ci[0]["roc_auc"]])[i]
        expected_high = (list(report.by_group_ci[1]["roc_auc"]) + [report.overall_ci[1]["roc_auc"]])[i]
        assert (low, high) == pytest.approx((expected_low, expected_high))
        assert low <= x <= high
    plain = plot_report(fairness_report_from_scores(y, score, sensitive_features=groups))
    assert plain.get_xlabel() == "ROC AUC"
    with pytest.raises(ValueError, match="not a column"):
        plot_report(report, "auc")
    plt.close("all")


@pytest.fixture(scope="module")
def multi_search(data):
    clf = tiny_classifier(max_epochs=1, batch_size=64, model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16,
                                                                          depth=DEPTH, num_heads=2))
    return FairTuneSearchCV(clf, n_trials=3, scoring=["min_group_auc", "n_trainable_params"], baselines=("linear",),
                            baseline_lrs=None, pruner="none", refit=False, random_state=0).fit(
        data.images, data.target, sensitive_features=data.sensitive_features)


@pytest.mark.parametrize("plot", [plot_mask_selection, plot_search_convergence, plot_pareto])
def test_search_plots_draw_the_first_maximised_objective_of_a_multi_objective_search(multi_search, plot):
    # Issue 27: these raised a bare KeyError: 'mean_test_score'.
    ax = plot(multi_search)
    assert "min-group AUC (1 of 2 objectives" in ax.get_title()
    assert "plot_pareto_front" in ax.get_title()


def test_search_plots_refuse_a_search_that_only_minimises(multi_search):
    from types import SimpleNamespace

    only_costs = SimpleNamespace(cv_results_=multi_search.cv_results_, scoring=["n_trainable_params"])
    with pytest.raises(ValueError, match="plot_search_convergence draws one objective.*plot_pareto_front"):
        plot_search_convergence(only_costs)
