"""The Pareto successive-halving pruner, on the seeded toy problem of ``_toy_study``."""

import numpy as np
import optuna
import pytest

from skfairtune.search._pareto import hypervolume
from skfairtune.search._pruners import EPOCH_VALUES_ATTR, RUNGS_ATTR, ParetoSuccessiveHalving, pareto_prune_decision

from ._toy_study import MAX_EPOCHS, MAXMAX, correlated_values, curve, final_values, front_numbers, run_toy_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("sampler", [
    optuna.samplers.TPESampler(seed=0), optuna.samplers.NSGAIISampler(seed=0, population_size=10),
], ids=["tpe", "nsga2"])
def test_pruner_prunes_and_keeps_the_unpruned_front(sampler):
    unpruned, epochs_unpruned = run_toy_study(None, sampler=sampler, n_trials=40)
    params = [t.params for t in unpruned.trials]
    pruner = ParetoSuccessiveHalving(MAXMAX, max_epochs=MAX_EPOCHS)
    pruned, epochs_pruned = run_toy_study(params, pruner=pruner)
    # Same trials in the same order: the comparison is of pruning only.
    assert [t.params for t in pruned.trials] == params
    n_pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in pruned.trials)
    assert n_pruned > 0 and epochs_pruned < epochs_unpruned
    # The learning curves keep their Pareto order, so no front trial can be pruned.
    assert front_numbers(pruned) == front_numbers(unpruned)
    # Pruned trials stopped at a rung, never after the last epoch.
    for t in pruned.trials:
        if t.state == optuna.trial.TrialState.PRUNED:
            assert max(map(int, t.user_attrs[EPOCH_VALUES_ATTR])) in pruner.rungs


def test_pruner_saves_epochs_when_objectives_agree():
    """Objectives that rise together (worst-group and overall AUC) leave most trials dominated.

    The issue's target, at most 60% of the unpruned epochs, then holds; with
    objectives in conflict most trials are on or near the front and few stop.
    """
    unpruned, epochs_unpruned = run_toy_study(None, sampler=optuna.samplers.RandomSampler(seed=0), n_trials=60,
                                     finals=correlated_values)
    pruned, epochs_pruned = run_toy_study([t.params for t in unpruned.trials], finals=correlated_values,
                                 pruner=ParetoSuccessiveHalving(MAXMAX, max_epochs=MAX_EPOCHS))
    assert epochs_pruned <= 0.6 * epochs_unpruned
    assert front_numbers(pruned) == front_numbers(unpruned)
    # Hypervolume of the complete trials is unchanged: the front is the same.
    values = lambda s: [t.values for t in s.trials if t.state == optuna.trial.TrialState.COMPLETE]  # noqa: E731
    assert hypervolume(values(pruned), MAXMAX, [0.5, 0.5]) == pytest.approx(
        hypervolume(values(unpruned), MAXMAX, [0.5, 0.5]))


def test_larger_share_prunes_less():
    base, _ = run_toy_study(None, n_trials=40)
    params = [t.params for t in base.trials]
    counts = []
    for share in (0.25, 0.5, 0.75):
        pruner = ParetoSuccessiveHalving(MAXMAX, max_epochs=MAX_EPOCHS, prune_share=share)
        study, _ = run_toy_study(params, pruner=pruner)
        counts.append(sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials))
    assert counts[0] >= counts[1] >= counts[2] and counts[0] > counts[2]


def test_pruner_with_a_minimised_cost():
    """A cost to minimise (as n_trainable_params): the direction is applied before comparing."""
    base, _ = run_toy_study(None, n_trials=30, directions=["maximize", "minimize"])
    params = [t.params for t in base.trials]

    def run(pruner):
        study = optuna.create_study(directions=["maximize", "minimize"])
        for p in params:
            study.enqueue_trial(p)

        def objective(trial):
            x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
            auc, cost = final_values(x, y)[0], 1000 * (1 + x + y)  # a better AUC costs parameters
            for epoch in range(1, MAX_EPOCHS + 1):
                values = [curve(auc, epoch), cost]
                if pruner:
                    pruner.report(trial, values, epoch)
                    if pruner.should_prune(trial, epoch):
                        raise optuna.TrialPruned()
            return tuple(values)

        study.optimize(objective, n_trials=len(params))
        return study

    unpruned = run(None)
    pruned = run(ParetoSuccessiveHalving(["maximize", "minimize"], max_epochs=MAX_EPOCHS))
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in pruned.trials)
    assert front_numbers(pruned) == front_numbers(unpruned)


def test_front_trials_survive_when_never_dominated_at_a_rung():
    """With crossing curves, a pruned trial was always dominated at its rung: the rule itself."""
    base, _ = run_toy_study(None, n_trials=40)
    speed = lambda x, y: 1.0 + 6.0 * x  # noqa: E731 - high-x trials learn slowly
    pruner = ParetoSuccessiveHalving(MAXMAX, max_epochs=MAX_EPOCHS)
    study, _ = run_toy_study([t.params for t in base.trials], pruner=pruner, speed=speed)
    for t in study.trials:
        for epoch, (dominated_by, n) in t.user_attrs.get(RUNGS_ATTR, {}).items():
            stopped = t.state == optuna.trial.TrialState.PRUNED and str(max(map(int, t.user_attrs[
                EPOCH_VALUES_ATTR]))) == epoch
            assert stopped == (n >= 4 and dominated_by >= n // 4 >= 1)


def test_one_objective_is_optunas_successive_halving():
    """With one objective and the default share, decisions equal Optuna's SuccessiveHalvingPruner."""
    rng = np.random.default_rng(0)
    qualities = rng.uniform(0.55, 0.95, size=40)
    noise = rng.normal(0, 0.03, size=(40, MAX_EPOCHS))
    ours = ParetoSuccessiveHalving(["maximize"], max_epochs=MAX_EPOCHS)
    optuna_pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=4,
                                                           min_early_stopping_rate=0, bootstrap_count=0)
    study = optuna.create_study(direction="maximize", pruner=optuna_pruner)
    compared = []

    def objective(trial):
        i = trial.number
        for epoch in range(1, MAX_EPOCHS + 1):
            value = curve(qualities[i], epoch) + noise[i, epoch - 1]
            trial.report(value, epoch)
            ours.report(trial, [value], epoch)
            theirs = trial.should_prune()
            mine = ours.should_prune(trial, epoch)
            n = trial.user_attrs.get(RUNGS_ATTR, {}).get(str(epoch), [0, 0])[1]
            if epoch in ours.rungs and n >= ours.min_trials:
                compared.append((mine, theirs))
            if theirs:
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=40)
    assert len(compared) > 30 and any(m for m, _ in compared)
    assert all(m == t for m, t in compared)


def test_pruner_shares_vectors_through_the_storage(tmp_path):
    """Two study handles on one journal file (two processes in practice) see each other's vectors."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = str(tmp_path / "mo.log")
    first = optuna.create_study(study_name="s", directions=MAXMAX,
                                storage=JournalStorage(JournalFileBackend(path)))
    second = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(path)))
    pruner = ParetoSuccessiveHalving(MAXMAX, max_epochs=10)
    for quality in (0.9, 0.85, 0.8):
        trial = first.ask()
        pruner.report(trial, [quality, quality], 1)
        assert not pruner.should_prune(trial, 1)
    trial = second.ask()
    pruner.report(trial, [0.6, 0.6], 1)
    assert pruner.should_prune(trial, 1)
    assert first.trials[-1].user_attrs[RUNGS_ATTR] == {"1": [3, 4]}


def test_pruner_rungs_follow_the_single_objective_pruner():
    from skfairtune.search._pruners import first_rung_epoch

    pruner = ParetoSuccessiveHalving(MAXMAX, max_epochs=30, warmup_fraction=1 / 3)
    assert pruner.rungs == (first_rung_epoch(30, 1 / 3),) == (10,)
    assert ParetoSuccessiveHalving(MAXMAX, max_epochs=4, warmup_fraction=0.9).rungs == ()
    assert ParetoSuccessiveHalving(MAXMAX, max_epochs=64).rungs == (1, 4, 16)
    assert ParetoSuccessiveHalving(MAXMAX, max_epochs=65).rungs == (1, 4, 16, 64)


def test_no_pruning_after_the_last_epoch_or_between_rungs():
    study = optuna.create_study(directions=MAXMAX)
    pruner = ParetoSuccessiveHalving(MAXMAX, max_epochs=4, min_trials=2, prune_share=0.5)
    first = study.ask()
    for epoch in range(1, 5):
        pruner.report(first, [0.9, 0.9], epoch)
    loser = study.ask()
    for epoch in range(1, 5):
        pruner.report(loser, [0.1, 0.1], epoch)
    assert pruner.rungs == (1,)
    assert pruner.should_prune(loser, 1)
    assert not pruner.should_prune(loser, 2) and not pruner.should_prune(loser, 4)


def test_too_few_trials_prune_nothing():
    assert pareto_prune_decision([0.1, 0.1], [[0.9, 0.9]] * 2, MAXMAX, prune_share=0.25, min_trials=4)[0] is False
    assert pareto_prune_decision([0.1, 0.1], [[0.9, 0.9]] * 3, MAXMAX, prune_share=0.25, min_trials=4)[0] is True
    # A non-dominated trial is never pruned, however many trials reached the rung.
    others = [[0.9, 0.1]] * 20
    assert pareto_prune_decision([0.2, 0.5], others, MAXMAX, prune_share=0.05, min_trials=2) == (False, 0, 21)


@pytest.mark.parametrize("kwargs, message", [
    (dict(directions=["maximize", "up"]), "each direction must be one of"),
    (dict(directions=[]), "non-empty list"),
    (dict(directions="maximize"), "non-empty list"),
    (dict(reduction_factor=1), r"`reduction_factor` must be an int >= 2; got 1"),
    (dict(reduction_factor=2.5), r"`reduction_factor` must be an int >= 2"),
    (dict(max_epochs=0), r"`max_epochs` must be an int >= 1; got 0"),
    (dict(warmup_fraction=1.0), r"`warmup_fraction` must be in \[0, 1\)"),
    (dict(prune_share=0.0), r"`prune_share` must be in \(0, 1\]"),
    (dict(prune_share=1.5), r"`prune_share` must be in \(0, 1\]"),
    (dict(min_trials=1), r"`min_trials` must be an int >= 2"),
])
def test_pruner_bad_inputs(kwargs, message):
    args = dict(directions=MAXMAX, max_epochs=10) | kwargs
    with pytest.raises(ValueError, match=message):
        ParetoSuccessiveHalving(args.pop("directions"), **args)


def test_pruner_bad_reports():
    study = optuna.create_study(directions=MAXMAX)
    trial = study.ask()
    pruner = ParetoSuccessiveHalving(MAXMAX, max_epochs=10)
    with pytest.raises(ValueError, match="got 3 values for 2 objectives"):
        pruner.report(trial, [0.1, 0.2, 0.3], 1)
    with pytest.raises(ValueError, match="must be finite"):
        pruner.report(trial, [0.1, float("nan")], 1)
    with pytest.raises(RuntimeError, match="report first"):
        pruner.should_prune(trial, 1)
