"""Which trials of a study count toward its ``n_trials`` budget.

A pure function of the trials' numbers and creation-time attributes, so every
worker, on every machine, computes the same answer (the rules are in
:mod:`skfairtune.distributed._run`):

* non-retry trials fill the ``n_trials`` *slots* in number order;
* a trial created after the slots are full is *surplus*, an enqueued trial
  whose identity (:meth:`TrialRecord.identity
  <skfairtune.distributed._trial_record.TrialRecord.identity>`: a baseline and
  its learning rate) an earlier trial has a *duplicate*: both are failed unrun
  (their system attribute :data:`SURPLUS_ATTR` says which) and do not count;
* a *retry* (Optuna's ``failed_trial`` system attribute) takes the slot of the
  trial it retries, which is *superseded* and no longer counts.
"""

from __future__ import annotations

from typing import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from ._trial_record import TrialRecord

__all__ = ["SURPLUS_ATTR", "counted_trials", "is_retry", "slot_index", "superseded_numbers", "trial_roles",
           "work_left"]

#: System attribute of a trial failed unrun: ``"surplus"`` or ``"duplicate"``.
SURPLUS_ATTR = "skfairtune:not_run"


def is_retry(trial: FrozenTrial) -> bool:
    """Whether ``trial`` re-runs the parameters of a failed one (Optuna's ``failed_trial``)."""
    return "failed_trial" in trial.system_attrs


def superseded_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of the trials that a retry replaced."""
    out: set[int] = set()
    for trial in trials:
        out.update(trial.system_attrs.get("retry_history", ()))
    return out


def trial_roles(trials: Sequence[FrozenTrial], n_trials: int | None) -> dict[int, str]:
    """Role of each trial number: ``"slot"``, ``"retry"``, ``"surplus"`` or ``"duplicate"``.

    Parameters
    ----------
    trials : sequence of optuna.trial.FrozenTrial
        Every trial of the study.
    n_trials : int or None
        The budget; None makes every non-duplicate, non-retry trial a slot.

    Returns
    -------
    roles : dict of int to str

    Examples
    --------
    >>> import optuna
    >>> study = optuna.create_study()
    >>> linear = TrialRecord(baseline="linear").as_user_attrs()
    >>> for user_attrs in (linear, linear, {}, {}):
    ...     study.enqueue_trial({}, user_attrs=user_attrs)
    >>> trial_roles(study.trials, n_trials=2)
    {0: 'slot', 1: 'duplicate', 2: 'slot', 3: 'surplus'}
    """
    roles: dict[int, str] = {}
    enqueued: set[tuple] = set()
    n_slots = 0
    for trial in sorted(trials, key=lambda t: t.number):
        marked = trial.system_attrs.get(SURPLUS_ATTR)
        if is_retry(trial):
            roles[trial.number] = "retry"
            continue
        # A baseline is enqueued once per learning rate of its grid.
        key = TrialRecord.identity(trial)
        if marked == "duplicate" or (key is not None and key in enqueued):
            roles[trial.number] = "duplicate"
            continue
        if key is not None:
            enqueued.add(key)
        if marked == "surplus" or (n_trials is not None and n_slots >= n_trials):
            roles[trial.number] = "surplus"
            continue
        roles[trial.number] = "slot"
        n_slots += 1
    return roles


def counted_trials(study: optuna.Study, n_trials: int | None = None) -> list[FrozenTrial]:
    """The trials that count toward ``n_trials``, in order.

    Leaves out attempts superseded by a retry (their worker died), trials
    created after the budget was full and duplicate baselines; see the rules
    in :mod:`skfairtune.distributed._run`.

    Parameters
    ----------
    study : optuna.Study
        The search's study.
    n_trials : int, default=None
        The budget; None counts every slot.

    Returns
    -------
    trials : list of optuna.trial.FrozenTrial
        Sorted by trial number.

    Examples
    --------
    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(direction="maximize")
    >>> study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    >>> len(counted_trials(study)), len(counted_trials(study, n_trials=2))
    (3, 2)
    """
    trials = study.get_trials(deepcopy=False)
    roles = trial_roles(trials, n_trials)
    superseded = superseded_numbers(trials)
    return [t for t in sorted(trials, key=lambda t: t.number)
            if roles[t.number] in ("slot", "retry") and t.number not in superseded]


def slot_index(trials: Sequence[FrozenTrial], number: int) -> int | None:
    """Slot of trial ``number`` (a retry takes the slot of the trial it retries); None for no slot."""
    by_number = {t.number: t for t in trials}
    trial = by_number.get(number)
    if trial is not None and is_retry(trial):
        number = trial.system_attrs["failed_trial"]
    roles = trial_roles(trials, None)
    slots = [t.number for t in sorted(trials, key=lambda t: t.number)
             if not is_retry(t) and roles[t.number] == "slot"]
    return slots.index(number) if number in slots else None


def work_left(study: optuna.Study, n_trials: int) -> int:
    """Trials still to run: empty slots plus WAITING (enqueued or retried) trials."""
    trials = study.get_trials(deepcopy=False)
    roles = trial_roles(trials, n_trials)
    n_slots = sum(role == "slot" for role in roles.values())
    n_waiting = sum(t.state == TrialState.WAITING for t in trials)
    return max(0, n_trials - n_slots) + n_waiting
