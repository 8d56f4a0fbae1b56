"""A seeded two-objective toy problem whose "learning curves" are synthetic.

A whole multi-objective study of it runs in a second, so the Pareto pruner and the Pareto helpers
are tested on real Optuna studies without training a model.
"""

import math

import optuna

from skfairtune.search._pareto import pareto_front_frame

MAXMAX = ["maximize", "maximize"]
MAX_EPOCHS = 20


def final_values(x: float, y: float) -> tuple[float, float]:
    """Two AUC-like objectives in conflict: y < 1 is dominated, x trades one for the other."""
    return 0.5 + 0.45 * x, 0.5 + 0.45 * (1 - x ** 2) * y


def correlated_values(x: float, y: float) -> tuple[float, float]:
    """Two objectives that mostly rise together, as worst-group and overall AUC do."""
    return 0.5 + 0.45 * x * y, 0.5 + 0.4 * x * (0.5 + 0.5 * y) ** 2


def curve(final: float, epoch: int, speed: float = 4.0) -> float:
    """A learning curve from chance (0.5) towards ``final``."""
    return 0.5 + (final - 0.5) * (1 - math.exp(-epoch / speed))


def run_toy_study(params_list, *, pruner=None, sampler=None, n_trials=None, speed=None, directions=MAXMAX,
         finals=final_values):
    """A multi-objective study of the toy problem; returns (study, epochs trained in all)."""
    study = optuna.create_study(directions=directions, sampler=sampler or optuna.samplers.RandomSampler(seed=0))
    for params in params_list or ():
        study.enqueue_trial(params)
    epochs = [0]

    def objective(trial):
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        values_at_end = finals(x, y)
        # speed(x, y): per-trial learning speed; curves that cross break the Pareto order.
        rate = speed(x, y) if speed else 4.0
        for epoch in range(1, MAX_EPOCHS + 1):
            epochs[0] += 1
            values = [curve(f, epoch, rate) for f in values_at_end]
            if pruner is not None:
                pruner.report(trial, values, epoch)
                if pruner.should_prune(trial, epoch):
                    raise optuna.TrialPruned()
        return tuple(values)

    study.optimize(objective, n_trials=n_trials or len(params_list))
    return study, epochs[0]


def front_numbers(study) -> set:
    return set(pareto_front_frame(study)["trial_number"])
