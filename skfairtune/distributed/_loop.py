"""One worker's trial loop: ask, run, tell, until the study holds ``n_trials`` trials.

:func:`run_trial_loop` serves ``n_jobs=1``, each local worker process of
``n_jobs > 1`` and every machine of a multi-machine search; the rules it keeps
are in :mod:`skfairtune.distributed._run`. It is Optuna's ask/tell, not
``Study.optimize``, because each trial is first placed in the budget
(:mod:`skfairtune.distributed._budget`), claimed with an owner record and kept alive
with heartbeats (:mod:`skfairtune.distributed._liveness`), and the sampler is re-seeded from
the trial's slot.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Sequence

import numpy as np
import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from ._budget import SURPLUS_ATTR, slot_index, trial_roles
from ._liveness import (
    OWNER_ATTR,
    TrialHeartbeat,
    fail_and_retry,
    heartbeat_interval,
    is_running_here,
    owner_record,
    recover_dead_trials,
    running_here,
    worth_waiting,
)
from ._optuna_compat import (
    StoredTrial,
    ask,
    is_stop_request,
    sampler_random_states,
    storage_of,
)
from ._trial_record import TrialRecord

__all__ = ["reseed_sampler", "run_trial_loop"]


def reseed_sampler(sampler: optuna.samplers.BaseSampler, seed: int, slot: int) -> bool:
    """Seed every random state of ``sampler`` from ``(seed, slot)``.

    Parameters
    ----------
    sampler : optuna.samplers.BaseSampler
        The study's sampler.
    seed : int
        The search's seed.
    slot : int
        The trial's slot in the budget.

    Returns
    -------
    reseeded : bool
        False when the sampler holds no random state known here.

    Examples
    --------
    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> sampler = optuna.samplers.RandomSampler()
    >>> def draw(slot):
    ...     reseed_sampler(sampler, 0, slot)
    ...     return optuna.create_study(sampler=sampler).ask().suggest_float("x", 0, 1)
    >>> draw(5) == draw(5) != draw(6)
    True
    """
    states = sampler_random_states(sampler)
    children = np.random.SeedSequence([int(seed) % 2**32, slot]).spawn(len(states))
    for state, child in zip(states, children):
        state.seed(int(child.generate_state(1)[0]))
    return bool(states)


def _mark_not_run(study, trial, role: str, n_trials: int) -> None:
    stored = StoredTrial(study, trial)
    reason = (f"not run: the study already had its n_trials={n_trials} trials when this one was created"
              if role == "surplus" else
              f"not run: {TrialRecord.describe_identity(TrialRecord.identity(trial) or (None,))} was already "
              "enqueued")
    try:
        stored.set_system_attr(SURPLUS_ATTR, role)
        TrialRecord.write(stored, fail_reason=reason)
    except UpdateFinishedTrialError:
        return
    stored.finish(TrialState.FAIL)


def _run_one(study, trial, objective, *, heartbeat, callbacks) -> bool:
    """Run and tell one trial; True when a sampler or callback asked the study to stop."""
    stored = StoredTrial(study, trial)
    value = None
    state = TrialState.COMPLETE
    try:
        with running_here(stored.trial_id), TrialHeartbeat(stored.storage, stored.trial_id, heartbeat):
            stored.set_system_attr(OWNER_ATTR, owner_record())
            try:
                value = objective(trial)
            except optuna.TrialPruned:
                state = TrialState.PRUNED
    except UpdateFinishedTrialError:
        _warn_lost(trial)
        return False
    except (KeyboardInterrupt, SystemExit):
        # Leave nothing RUNNING: fail it and enqueue a retry, so a resumed search re-runs it.
        fail_and_retry(study, trial, "interrupted; retried")
        raise
    except BaseException as exc:
        try:
            TrialRecord.write(stored, fail_reason=f"{type(exc).__name__}: {exc}"[:2000])
            stored.finish(TrialState.FAIL)
        except UpdateFinishedTrialError:
            pass
        raise
    stop = False
    try:
        if state == TrialState.PRUNED:
            frozen = study.tell(trial, state=TrialState.PRUNED)
        elif value is None or not all(math.isfinite(float(v)) for v in np.atleast_1d(value)):
            frozen = study.tell(trial, state=TrialState.FAIL)
        else:
            # One value, or one per objective of a multi-objective study.
            frozen = study.tell(trial, [float(v) for v in value] if np.ndim(value) else float(value))
    except UpdateFinishedTrialError:
        _warn_lost(trial)
        return False
    except RuntimeError as exc:
        # GridSampler calls study.stop() once its grid is exhausted; tell() has stored the
        # result before the sampler's after_trial raised. Honoured like optimize() does:
        # after the current trial.
        if not is_stop_request(exc):
            raise
        stop, frozen = True, stored.get()
    for callback in callbacks:
        try:
            callback(study, frozen)
        except RuntimeError as exc:
            if not is_stop_request(exc):
                raise
            stop = True
    return stop


def _warn_lost(trial) -> None:
    warnings.warn(
        f"trial {trial.number} was declared dead by another worker (no heartbeat within the grace "
        "period) and re-queued; this worker's result for it is dropped. Raise `grace_period` if "
        "workers are alive but too busy to beat.", RuntimeWarning, stacklevel=3,
    )


def run_trial_loop(study: optuna.Study, objective: Callable, *, n_trials: int, timeout: float | None = None,
                   callbacks: Sequence[Callable] = (), seed: int | None = None,
                   poll_s: float | None = None) -> None:
    """Run trials until the study has ``n_trials`` counted trials, all finished.

    Parameters
    ----------
    study : optuna.Study
        The study, possibly shared with other workers through its storage.
    objective : callable
        ``objective(trial) -> float`` (None or a non-finite value fails the trial).
    n_trials : int
        The study's budget.
    timeout : float, default=None
        Start no trial after this many seconds.
    callbacks : sequence of callable, default=()
        ``callback(study, frozen_trial)`` after each trial this loop runs.
    seed : int, default=None
        Re-seed the sampler from ``(seed, slot)`` before each trial.
    poll_s : float, default=None
        Seconds between looks at trials other workers run, once the slots are
        full; None: 0.5, or up to 2 on storages with heartbeats.

    Examples
    --------
    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study()
    >>> run_trial_loop(study, lambda t: t.suggest_float("x", 0, 1), n_trials=3, seed=0)
    >>> len(study.trials)
    3
    """
    started = time.monotonic()
    heartbeat = heartbeat_interval(storage_of(study))
    if poll_s is None:
        poll_s = min(2.0, float(heartbeat)) if heartbeat else 0.5
    while True:
        if timeout is not None and time.monotonic() - started >= timeout:
            return
        recover_dead_trials(study)
        trials = study.get_trials(deepcopy=False)
        roles = trial_roles(trials, n_trials)
        waiting = [t for t in trials if t.state == TrialState.WAITING]
        n_slots = sum(role == "slot" for role in roles.values())
        if not waiting and n_slots >= n_trials:
            running = [t for t in trials if t.state == TrialState.RUNNING and not is_running_here(t)]
            if any(worth_waiting(t, heartbeat) for t in running):
                time.sleep(poll_s)
                continue
            return
        trial = ask(study)  # _run_one records the trial's heartbeats itself
        try:
            trials = study.get_trials(deepcopy=False)
            role = trial_roles(trials, n_trials)[trial.number]
            if role in ("surplus", "duplicate"):
                _mark_not_run(study, trial, role, n_trials)
                continue
            if seed is not None:
                slot = slot_index(trials, trial.number)
                if slot is not None:
                    reseed_sampler(study.sampler, seed, slot)
        except (KeyboardInterrupt, SystemExit):
            # Stopped between claiming the trial and running it: hand it back.
            fail_and_retry(study, trial, "interrupted; retried")
            raise
        if _run_one(study, trial, objective, heartbeat=heartbeat, callbacks=callbacks):
            return
