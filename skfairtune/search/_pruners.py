"""The search's pruners and samplers: Optuna's, configured by name, and successive halving for several objectives.

Named samplers and pruners (:func:`make_sampler`, :func:`make_pruner`, their
names in :data:`SAMPLERS` and :data:`PRUNERS`) are Optuna's with the paper's
settings; :func:`first_rung_epoch` places every pruner's first rung after the
learning-rate warm-up; :func:`rung_system_attrs` gives a trial trained
elsewhere the rung records successive halving ranks by. The rest of this
module is successive halving for several objectives, which Optuna lacks.

Optuna's ``Trial.report`` and ``Trial.should_prune`` raise for a
multi-objective study, so this pruner is not an Optuna pruner: the objective
consults it after every epoch with the trial's vector of objective values.
The vectors live in the trial's user attributes, written through the study's
storage, so trials running in other processes (a journal file or a database)
see each other's vectors.

The rule, at each rung (the epochs of the single-objective pruner: the first
at :func:`first_rung_epoch`, then times ``reduction_factor``,
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
import warnings
from collections.abc import Sequence

import numpy as np
import optuna

from ..distributed._trial_record import TrialRecord
from ._pareto import check_directions, dominance_counts, oriented

__all__ = ["ParetoSuccessiveHalving", "EPOCH_VALUES_ATTR", "RUNGS_ATTR", "pareto_prune_decision",
           "record_epoch_values", "make_sampler", "make_pruner", "pareto_pruner", "first_rung_epoch",
           "rung_system_attrs", "PRUNERS", "SAMPLERS"]

PRUNERS = ("successive_halving", "late_successive_halving", "hyperband", "none")
#: Samplers named by a string; the default is ``"tpe"``.
SAMPLERS = ("tpe", "independent_tpe", "random")

EPOCH_VALUES_ATTR = "epoch_objective_values"
RUNGS_ATTR = "pareto_rungs"


def make_sampler(sampler, seed: int | None, *, n_baseline_trials: int = 0, n_startup_trials: int = 10):
    """The Optuna sampler for ``sampler`` (a name, None for ``"tpe"``, or an Optuna sampler).

    Optuna's TPE counts every finished trial of the study toward its random
    start-up, the enqueued or copied baselines included; so the named TPE
    samplers start TPE only after ``n_baseline_trials + n_startup_trials``
    trials, and the first ``n_startup_trials`` searched masks are random.

    ``"tpe"`` is multivariate TPE with ``group=True`` (the baselines carry a
    ``baseline`` choice instead of mask bits, so the space is conditional and
    only grouping keeps the bits modelled jointly) and the constant liar for
    parallel workers; ``"independent_tpe"`` models every bit and the learning
    rate on its own (the paper's Optuna 3 default); ``"random"`` draws every
    mask at random. Variants are named, not inherited from Optuna's version
    default, so a search means the same thing on every Optuna release.

    Examples
    --------
    >>> sampler = make_sampler(None, 0, n_baseline_trials=12)
    >>> type(sampler).__name__, sampler._n_startup_trials, sampler._multivariate, sampler._group
    ('TPESampler', 22, True, True)
    """
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    startup = int(n_baseline_trials) + int(n_startup_trials)
    if sampler in (None, "tpe"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # group=True
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True,
                                              group=True, constant_liar=True)
    if sampler == "independent_tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=False,
                                          constant_liar=True)
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise TypeError(f"`sampler` must be None, one of {SAMPLERS} or an optuna sampler; got {sampler!r}.")


def first_rung_epoch(max_epochs: int, warmup_fraction: float) -> int:
    """The first epoch at which the learning-rate warm-up is over (at least 1).

    Optuna's ``min_resource="auto"`` puts successive halving's first rung at
    epoch 1, when the learning rate is still a fraction of its peak and every
    trial scores by its initialisation; judging there prunes good masks (the
    enqueued baselines above all) for noise.
    """
    # The warm-up lasts round(warmup_fraction * total_steps) optimizer steps, so it is over
    # by the end of epoch ceil(warmup_fraction * max_epochs); the tolerance keeps 1/3 * 30 at 10.
    return max(1, min(int(max_epochs), math.ceil(warmup_fraction * max_epochs - 1e-9)))


def make_pruner(pruner, max_epochs: int, warmup_fraction: float = 0.0):
    """The Optuna pruner for ``pruner``; built-in pruners judge no earlier than the warm-up's end.

    ``"successive_halving"``: the paper's reduction factor 4, first rung at the
    end of the warm-up. ``"late_successive_halving"``: the same, first rung at
    half of training (so trials are judged once the train-to-test gap has had
    time to open). ``"none"``: no pruning; every trial is judged fully trained.
    """
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    min_resource = first_rung_epoch(max_epochs, warmup_fraction)
    if pruner == "late_successive_halving":
        min_resource = max(min_resource, math.ceil(int(max_epochs) / 2))
    if pruner in PRUNERS[:3] and min_resource >= max_epochs:
        # The warm-up fills the whole training: a rung would judge finished trials only.
        return optuna.pruners.NopPruner()
    if pruner in ("successive_halving", "late_successive_halving"):
        # The paper's settings (appendix A.5: reduction factor 4, no bootstrap), except that
        # the first rung waits for the end of the warm-up (or half of training) instead of "auto".
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=min_resource, reduction_factor=4, min_early_stopping_rate=0, bootstrap_count=0
        )
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min_resource, max_resource=max_epochs,
                                              reduction_factor=4)
    if pruner in ("none", None):
        return optuna.pruners.NopPruner()
    raise ValueError(
        f"`pruner` must be one of {PRUNERS}, None or an optuna pruner; got {pruner!r}."
    )


def rung_system_attrs(pruner, intermediate_values: dict, max_epochs: int) -> dict:
    """The rung records successive halving would have written for a trial trained elsewhere.

    A trial copied into a study (e.g. a baseline trained once and shared)
    carries no ``completed_rung_k`` attributes, and Optuna's
    ``SuccessiveHalvingPruner`` ranks a trial only against trials that have
    them; without these records the copies are invisible competitors. The
    pruner is asked only before the last epoch, so no rung at ``max_epochs``.

    Examples
    --------
    >>> pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=4)
    >>> rung_system_attrs(pruner, {1: 0.5, 2: 0.6, 8: 0.7, 9: 0.71}, max_epochs=9)
    {'completed_rung_0': 0.6, 'completed_rung_1': 0.7}
    """
    if not isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner):
        return {}
    min_resource = pruner._min_resource
    if min_resource is None:  # "auto": nothing to align with
        return {}
    attrs, rung = {}, 0
    while True:
        step = min_resource * pruner._reduction_factor ** (pruner._min_early_stopping_rate + rung)
        if step >= max_epochs or step not in intermediate_values:
            return attrs
        attrs[f"completed_rung_{rung}"] = float(intermediate_values[step])
        rung += 1


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
        for its end (:func:`first_rung_epoch`), as the
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


def pareto_pruner(pruner, scoring, classifier):
    """The objective-side pruner of a multi-objective search (None: no pruning, or one objective).

    Optuna's pruners judge one objective; ``"successive_halving"`` becomes its
    Pareto version with the same rungs.

    Parameters
    ----------
    pruner : str, ParetoSuccessiveHalving or None
        The search's ``pruner``.
    scoring : skfairtune.search._multiobjective.Scoring
        The search's resolved scoring (its ``multi`` and ``directions``).
    classifier : FairTuneClassifier
        Its ``max_epochs`` and ``warmup_fraction`` place the rungs.

    Returns
    -------
    pruner : ParetoSuccessiveHalving or None
    """
    if not scoring.multi or pruner in (None, "none"):
        return None
    if isinstance(pruner, ParetoSuccessiveHalving):
        return pruner
    if pruner != "successive_halving":
        raise ValueError(f"pruner={pruner!r} prunes one objective; a multi-objective search takes "
                         "'successive_halving' (its Pareto version), 'none' or a ParetoSuccessiveHalving.")
    return ParetoSuccessiveHalving(scoring.directions, max_epochs=classifier.max_epochs,
                                   warmup_fraction=classifier.warmup_fraction)
