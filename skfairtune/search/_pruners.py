"""Successive halving for several objectives, which Optuna lacks.

Optuna's ``Trial.report`` and ``Trial.should_prune`` raise for a
multi-objective study, so this pruner is not an Optuna pruner: the objective
consults it after every epoch with the trial's vector of objective values.
The vectors live in the trial's user attributes, written through the study's
storage, so trials running in other processes (a journal file or a database)
see each other's vectors.

The rule, at each rung (the epochs of the single-objective pruner: the first
at :func:`skfairtune.distributed._study.first_rung_epoch`, then times ``reduction_factor``,
never the last epoch): among the ``n`` trials that reached the rung (this one
included; running, complete and pruned trials, not failed ones), count the
``d`` trials whose vector at that epoch Pareto-dominates this trial's. The
trial stops when ``n >= min_trials`` and ``d >= floor(prune_share * n) >= 1``.

With one objective "dominates" is "scores higher" and, with the default
``prune_share = 1 / reduction_factor``, the rule is Optuna's
``SuccessiveHalvingPruner`` (a trial continues when it is among the top
``n // reduction_factor``); the tests check that they agree. With several
objectives a trial that no other trial dominates at the rung is never
stopped, whatever the share, so a trial on the rung's front always continues;
when the trials' learning curves keep their Pareto order (a trial that
dominates another at the rung still does at the end) the pruned search ends
with the same front as the unpruned one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from ._pareto import check_directions, dominance_counts, oriented
from ..distributed._study import first_rung_epoch
from ._trial_record import TrialRecord

__all__ = ["ParetoSuccessiveHalving", "EPOCH_VALUES_ATTR", "RUNGS_ATTR", "pareto_prune_decision",
           "record_epoch_values"]

EPOCH_VALUES_ATTR = "epoch_objective_values"
RUNGS_ATTR = "pareto_rungs"


def pareto_prune_decision(vector, competitors, directions, *, prune_share: float, min_trials: int) -> tuple[bool, int, int]:
    """The pruning rule on given vectors, without a study.

    Parameters
    ----------
    vector : array-like of shape (n_objectives,)
        The trial's values at the rung.
    competitors : array-like of shape (n_others, n_objectives)
        The other trials' values at the same rung.
    directions : sequence of {"maximize", "minimize"}
    prune_share : float in (0, 1]
        Stop when at least this share of the ``n`` trials at the rung
        (the trial included) dominates the trial.
    min_trials : int
        Never stop with fewer than this many trials at the rung.

    Returns
    -------
    prune : bool
    dominated_by : int
        How many competitors dominate the trial.
    n : int
        Trials at the rung, the trial included.

    Examples
    --------
    >>> pareto_prune_decision([0.6, 0.6], [[0.7, 0.7], [0.8, 0.65], [0.9, 0.1]],
    ...                       ["maximize", "maximize"], prune_share=0.25, min_trials=4)
    (True, 2, 4)
    """
    directions = check_directions(directions)
    own = oriented(np.asarray(vector, dtype=float).reshape(1, -1), directions)
    others = np.asarray(competitors, dtype=float).reshape(-1, len(directions))
    others = oriented(others, directions) if len(others) else others
    n = len(others) + 1
    dominated_by = int(dominance_counts(own, others)[0])
    needed = math.floor(prune_share * n + 1e-9)
    return bool(n >= min_trials and needed >= 1 and dominated_by >= needed), dominated_by, n


def record_epoch_values(trial, values, epoch: int) -> None:
    """Store a trial's objective vector after ``epoch`` in its ``epoch_objective_values`` user attribute.

    :meth:`ParetoSuccessiveHalving.report` stores through this; a search
    without a pruner calls it directly, so that every multi-objective trial
    keeps its learning curves (and a pruned one the values it stopped with).

    Parameters
    ----------
    trial : optuna.Trial
        The running trial.
    values : sequence of float
        One value per objective, in the objectives' units.
    epoch : int
        The epoch just trained (1-based).

    Examples
    --------
    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> trial = optuna.create_study(directions=["maximize", "minimize"]).ask()
    >>> record_epoch_values(trial, [0.71, 5000.0], 1)
    >>> trial.user_attrs["epoch_objective_values"]
    {'1': [0.71, 5000.0]}
    """
    stored = dict(trial.user_attrs.get(EPOCH_VALUES_ATTR) or {})
    # JSON storages turn int keys into strings: use strings from the start.
    stored[str(int(epoch))] = [float(v) for v in values]
    TrialRecord.write(trial, epoch_objective_values=stored)


class ParetoSuccessiveHalving:
    """Stop a trial whose vector a set share of the trials at its rung dominate.

    See the module docstring for the rule. The objective calls
    :meth:`report` after every epoch and :meth:`should_prune` right after;
    the pruner keeps no state of its own (it is picklable and can be shared
    by worker processes).

    Parameters
    ----------
    directions : sequence of {"maximize", "minimize"}
        The study's directions, one per objective.
    max_epochs : int
        Epochs of a complete trial; no trial is stopped after the last.
    warmup_fraction : float, default=0.0
        The learning-rate warm-up's share of training; the first rung waits
        for its end (:func:`skfairtune.distributed._study.first_rung_epoch`), as the
        single-objective pruner does.
    reduction_factor : int, default=4
        Rungs are ``first * reduction_factor ** k`` (the paper's 4).
    prune_share : float, default=None
        Share of the trials at a rung that must dominate a trial to stop it;
        None means ``1 / reduction_factor`` (successive halving's own rule
        with one objective). A larger share prunes less.
    min_trials : int, default=None
        Trials that must have reached a rung before it stops any; None means
        ``reduction_factor``.

    Attributes
    ----------
    rungs : tuple of int
        The epochs at which trials are judged.

    Examples
    --------
    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> pruner = ParetoSuccessiveHalving(["maximize", "maximize"], max_epochs=20)
    >>> pruner.rungs
    (1, 4, 16)
    >>> study = optuna.create_study(directions=["maximize", "maximize"])
    >>> stopped = []
    >>> for quality in [0.9, 0.8, 0.7, 0.6, 0.5]:
    ...     trial = study.ask()
    ...     pruner.report(trial, [quality, quality], epoch=1)
    ...     stopped.append(pruner.should_prune(trial, epoch=1))
    >>> stopped
    [False, False, False, True, True]
    """

    def __init__(self, directions: Sequence[str], *, max_epochs: int, warmup_fraction: float = 0.0,
                 reduction_factor: int = 4, prune_share: float | None = None, min_trials: int | None = None):
        self.directions = check_directions(directions)
        if not isinstance(reduction_factor, numbers.Integral) or isinstance(reduction_factor, bool) \
                or reduction_factor < 2:
            raise ValueError(f"`reduction_factor` must be an int >= 2; got {reduction_factor!r}.")
        if not isinstance(max_epochs, numbers.Integral) or isinstance(max_epochs, bool) or max_epochs < 1:
            raise ValueError(f"`max_epochs` must be an int >= 1; got {max_epochs!r}.")
        if not isinstance(warmup_fraction, numbers.Real) or not 0 <= warmup_fraction < 1:
            raise ValueError(f"`warmup_fraction` must be in [0, 1); got {warmup_fraction!r}.")
        if prune_share is None:
            prune_share = 1.0 / reduction_factor
        if not isinstance(prune_share, numbers.Real) or isinstance(prune_share, bool) or not 0 < prune_share <= 1:
            raise ValueError(f"`prune_share` must be in (0, 1] or None; got {prune_share!r}.")
        if min_trials is None:
            min_trials = int(reduction_factor)
        if not isinstance(min_trials, numbers.Integral) or isinstance(min_trials, bool) or min_trials < 2:
            raise ValueError(f"`min_trials` must be an int >= 2 (a trial needs others to be dominated); "
                             f"got {min_trials!r}.")
        self.max_epochs = int(max_epochs)
        self.warmup_fraction = float(warmup_fraction)
        self.reduction_factor = int(reduction_factor)
        self.prune_share = float(prune_share)
        self.min_trials = int(min_trials)
        rungs, epoch = [], first_rung_epoch(self.max_epochs, self.warmup_fraction)
        while epoch < self.max_epochs:
            rungs.append(epoch)
            epoch *= self.reduction_factor
        self.rungs = tuple(rungs)

    def __repr__(self) -> str:
        return (f"ParetoSuccessiveHalving({self.directions!r}, max_epochs={self.max_epochs}, "
                f"rungs={self.rungs}, prune_share={self.prune_share:g}, min_trials={self.min_trials})")

    def _check_vector(self, values) -> list[float]:
        vector = np.asarray(values, dtype=float).reshape(-1)
        if vector.size != len(self.directions):
            raise ValueError(f"got {vector.size} values for {len(self.directions)} objectives "
                             f"({self.directions}); report one value per objective.")
        if not np.isfinite(vector).all():
            raise ValueError(f"objective values must be finite to be compared; got {vector.tolist()}.")
        return vector.tolist()

    def report(self, trial, values, epoch: int) -> None:
        """Store the trial's objective vector after ``epoch`` in its user attributes.

        Parameters
        ----------
        trial : optuna.Trial
            The running trial.
        values : array-like of shape (n_objectives,)
            Its validation values after this epoch, in the objectives' units.
        epoch : int
            The epoch just trained (1-based).
        """
        record_epoch_values(trial, self._check_vector(values), epoch)

    def should_prune(self, trial, epoch: int) -> bool:
        """Whether the trial stops after ``epoch`` (only ever True at a rung).

        Parameters
        ----------
        trial : optuna.Trial
            The running trial, whose vector for ``epoch`` was reported.
        epoch : int
            The epoch just trained.

        Returns
        -------
        bool
        """
        if epoch not in self.rungs or epoch >= self.max_epochs:
            return False
        import optuna

        key = str(int(epoch))
        own = (trial.user_attrs.get(EPOCH_VALUES_ATTR) or {}).get(key)
        if own is None:
            raise RuntimeError(f"should_prune(epoch={epoch}) before report(..., epoch={epoch}); report first.")
        competitors = [
            t.user_attrs[EPOCH_VALUES_ATTR][key]
            for t in trial.study.get_trials(deepcopy=False)
            # A failed attempt is retried as a new trial: counting both would count one twice.
            if t.number != trial.number and t.state != optuna.trial.TrialState.FAIL
            and key in (t.user_attrs.get(EPOCH_VALUES_ATTR) or {})
        ]
        prune, dominated_by, n = pareto_prune_decision(
            own, competitors, self.directions, prune_share=self.prune_share, min_trials=self.min_trials)
        rungs = dict(trial.user_attrs.get(RUNGS_ATTR) or {})
        rungs[key] = [dominated_by, n]  # why a trial stopped (or not), for reports
        TrialRecord.write(trial, pareto_rungs=rungs)
        return prune
