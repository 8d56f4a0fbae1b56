"""Running a study's trials: in this process, or in worker processes that share its storage.

One loop (:func:`_work`) serves ``n_jobs=1``, each local worker process of
``n_jobs > 1`` and every machine of a multi-machine search. Its rules, which
keep the study at exactly ``n_trials`` trials with any number of workers
(docs/distributed.md explains them for users):

* **Slots**: non-retry trials fill the ``n_trials`` slots in number order; one
  created after they are full is *surplus*, a baseline enqueued twice a
  *duplicate*; both are failed unrun and do not count (:func:`counted_trials`).
* **Dead workers**: a RUNNING trial whose worker died (heartbeat stale on RDB
  storages; owner process gone from this host otherwise; no owner record after
  ``UNCLAIMED_GRACE_S``) is failed and retried with its parameters
  (:class:`RetryDeadTrial`); the retry takes its slot.
* **Finishing**: a worker leaves when the slots are full and nothing waits, after
  the RUNNING trials it can judge have ended, so every retry runs.
* **Seeds**: with a seed the sampler is re-seeded from ``(seed, slot)`` before
  each trial, so draws do not depend on which worker runs the trial.
"""

from __future__ import annotations

import copy
import math
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from datetime import datetime
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "run_trials",
    "TrialRun",
    "counted_trials",
    "recover_dead_trials",
    "resolve_n_jobs",
    "worker_devices",
    "RetryDeadTrial",
    "OWNER_ATTR",
    "SURPLUS_ATTR",
]

OWNER_ATTR = "skfairtune:worker"
SURPLUS_ATTR = "skfairtune:not_run"
MAX_RETRY = 3
UNCLAIMED_GRACE_S = 120.0
_STOP_GRACE_S = 10.0

# Trial ids this process is running right now: its own RUNNING trials are alive
# even though its pid is alive for trials it abandoned (e.g. after Ctrl-C).
_ACTIVE_TRIAL_IDS: set[int] = set()


class TrialRun(NamedTuple):
    """What :func:`run_trials` hands back."""

    study: optuna.Study
    """The study holding the trials (a fresh in-memory copy when workers shared a temp file)."""
    interrupted: bool
    """True when the user interrupted the run (Ctrl-C); finished trials are kept."""


# --------------------------------------------------------------------------- n_jobs and devices
def resolve_n_jobs(n_jobs) -> int:
    """Number of worker processes for ``n_jobs``, with joblib's conventions.

    Parameters
    ----------
    n_jobs : int or None
        ``None`` or ``1``: run in this process; ``k > 1``: ``k`` processes;
        ``-1``: one per core; ``-k``: all cores but ``k - 1``.

    Returns
    -------
    n_workers : int
        At least 1.

    Examples
    --------
    >>> resolve_n_jobs(None), resolve_n_jobs(3)
    (1, 3)
    >>> resolve_n_jobs(-1) == _n_cpus()
    True
    """
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise ValueError(
            f"`n_jobs` must be a positive int, -1 (one worker per core) or None; got {n_jobs!r}."
        )
    if n_jobs < 0:
        return max(1, _n_cpus() + 1 + int(n_jobs))
    return int(n_jobs)


def _n_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_devices(n_workers: int, device) -> list:
    """Device of each local worker: one GPU each when several exist and ``device="auto"``.

    Parameters
    ----------
    n_workers : int
        Local worker processes.
    device : str or None
        The estimator's ``device``; only ``"auto"`` (or None) is spread.

    Returns
    -------
    devices : list of str or None
        ``"cuda:i"`` per worker, round robin over the GPUs, or None
        (keep the estimator's own setting) for every worker.

    Examples
    --------
    >>> worker_devices(2, "cpu")
    [None, None]
    """
    if device not in ("auto", None):  # an explicit device, or no estimator at all ("n/a")
        return [None] * n_workers
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return [None] * n_workers
    if not torch.cuda.is_available():
        return [None] * n_workers
    n_gpus = torch.cuda.device_count()
    if n_gpus < 2:
        return [None] * n_workers
    return [f"cuda:{i % n_gpus}" for i in range(n_workers)]


def _estimator_device(objective):
    """The template's ``device``, or "n/a" for objectives without an estimator."""
    estimator = getattr(objective, "estimator", None)
    if estimator is None or not hasattr(estimator, "get_params"):
        return "n/a"
    step = getattr(objective, "step", None)
    return estimator.get_params().get(f"{step}__device" if step else "device")


def _assign_device(objective, device):
    """The objective with its estimator template sent to ``device`` (None: unchanged)."""
    if device is None or getattr(objective, "estimator", None) is None:
        return objective
    step = getattr(objective, "step", None)
    objective.estimator.set_params(**{f"{step}__device" if step else "device": device})
    return objective


# --------------------------------------------------------------------------- trial accounting
def _is_retry(trial: FrozenTrial) -> bool:
    return "failed_trial" in trial.system_attrs


def _superseded(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of trials that a retry replaced."""
    out: set[int] = set()
    for trial in trials:
        out.update(trial.system_attrs.get("retry_history", ()))
    return out


def _roles(trials: Sequence[FrozenTrial], n_trials: int | None) -> dict[int, str]:
    """Role of each trial: "slot", "retry", "surplus" or "duplicate" (see the module doc).

    A pure function of the trials' numbers and creation-time attributes, so every
    worker, on every machine, computes the same roles.
    """
    roles: dict[int, str] = {}
    baselines: set[tuple] = set()
    n_slots = 0
    for trial in sorted(trials, key=lambda t: t.number):
        marked = trial.system_attrs.get(SURPLUS_ATTR)
        if _is_retry(trial):
            roles[trial.number] = "retry"
            continue
        # A baseline is enqueued once per learning rate of its grid.
        baseline = trial.user_attrs.get("baseline")
        key = None if baseline is None else (baseline, trial.user_attrs.get("baseline_lr"))
        if marked == "duplicate" or (key is not None and key in baselines):
            roles[trial.number] = "duplicate"
            continue
        if key is not None:
            baselines.add(key)
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
    in :mod:`skfairtune._parallel`.

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
    roles = _roles(trials, n_trials)
    superseded = _superseded(trials)
    return [t for t in sorted(trials, key=lambda t: t.number)
            if roles[t.number] in ("slot", "retry") and t.number not in superseded]


def _slot_index(trials: Sequence[FrozenTrial], number: int) -> int | None:
    """Slot of trial ``number`` (a retry takes the slot of the trial it retries)."""
    by_number = {t.number: t for t in trials}
    trial = by_number.get(number)
    if trial is not None and _is_retry(trial):
        number = trial.system_attrs["failed_trial"]
    slots = [t.number for t in sorted(trials, key=lambda t: t.number)
             if not _is_retry(t)]
    roles = _roles(trials, None)
    slots = [n for n in slots if roles[n] == "slot"]
    return slots.index(number) if number in slots else None


# --------------------------------------------------------------------------- owners and death
def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; fields restart after the last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_record() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _process_start(pid), "boot": _boot_id()}


def _owner_state(owner: dict) -> str:
    """"alive", "dead" or "unknown" (another host: nothing to check here)."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return "unknown"
    boot = _boot_id()
    if owner.get("boot") and boot and owner["boot"] != boot:
        return "dead"  # the machine rebooted since
    pid = int(owner.get("pid", -1))
    if pid <= 0:
        return "unknown"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        pass  # exists, owned by another user
    started = owner.get("start")
    if started is not None:
        now = _process_start(pid)
        if now is not None and now != started:
            return "dead"  # the pid was reused by another process
    return "alive"


def _heartbeat_interval(storage) -> int | None:
    getter = getattr(storage, "get_heartbeat_interval", None)
    return getter() if callable(getter) else None


class RetryDeadTrial:
    """Re-enqueue a trial whose worker died, with the same parameters, at most ``max_retry`` times.

    Optuna's ``RetryHeartbeatStaleTrialCallback`` with one difference: the
    retry keeps only the attributes that describe *what* to run (the
    parameters, the ``baseline`` name), not the dead attempt's results
    (scores, ``fail_reason``), which would otherwise stick to a retry that
    completes; its user attribute ``requeued_from`` names the attempt it
    replaces. Optuna's ``failed_trial`` and ``retry_history`` system attributes
    are kept, so ``RetryHeartbeatStaleTrialCallback.retry_history`` works.

    Parameters
    ----------
    max_retry : int or None, default=3
        Retries of one original trial; None retries forever.
    """

    _KEEP_USER_ATTRS = ("baseline", "baseline_lr")

    def __init__(self, max_retry: int | None = MAX_RETRY):
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        system_attrs = {k: v for k, v in trial.system_attrs.items() if k not in (OWNER_ATTR, SURPLUS_ATTR)}
        history = list(system_attrs.get("retry_history", [])) + [trial.number]
        if self.max_retry is not None and len(history) > self.max_retry:
            return
        system_attrs.setdefault("failed_trial", trial.number)
        system_attrs["retry_history"] = history
        user_attrs = {k: v for k, v in trial.user_attrs.items() if k in self._KEEP_USER_ATTRS}
        user_attrs["requeued_from"] = trial.number
        study.add_trial(optuna.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs=user_attrs, system_attrs=system_attrs,
        ))


def _retry(study: optuna.Study, trial: FrozenTrial) -> None:
    RetryDeadTrial(MAX_RETRY)(study, copy.deepcopy(trial))


def _fail_and_retry(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """Fail a dead trial and enqueue its retry; False when another worker did it first."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            return False
    except UpdateFinishedTrialError:
        return False
    _retry(study, storage.get_trial(trial._trial_id))
    return True


def _age_seconds(trial: FrozenTrial) -> float:
    if trial.datetime_start is None:
        return 0.0
    return (datetime.now() - trial.datetime_start).total_seconds()


def recover_dead_trials(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials whose worker died and enqueue their retries.

    Storages with heartbeats (Optuna's RDB storage with
    ``heartbeat_interval``) use Optuna's own stale-trial check and retry
    callback. Others use the owner record: the trial's process is gone from
    this host. Trials with no owner record older than ``UNCLAIMED_GRACE_S``
    are dead on any storage.

    Parameters
    ----------
    study : optuna.Study
        The study to repair.

    Returns
    -------
    numbers : list of int
        Trials this call failed (their retries are enqueued).
    """
    storage = study._storage
    heartbeat = _heartbeat_interval(storage)
    failed: list[int] = []
    if heartbeat:
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        retried = _superseded(trials)
        failed.extend(t.number for t in trials if t.number in before and t.number in retried)
    for trial in study.get_trials(deepcopy=True, states=(TrialState.RUNNING,)):
        if trial._trial_id in _ACTIVE_TRIAL_IDS:
            continue
        owner = trial.system_attrs.get(OWNER_ATTR)
        reason = None
        if owner is None:
            if _age_seconds(trial) > UNCLAIMED_GRACE_S:
                reason = (f"its worker died before claiming it (no owner record after "
                          f"{UNCLAIMED_GRACE_S:.0f} s); retried")
        elif owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            reason = "abandoned by this process (interrupted); retried"
        elif not heartbeat and _owner_state(owner) == "dead":
            reason = (f"worker process {owner.get('pid')} on {owner.get('host')} died during "
                      "the trial; retried")
        if reason is not None and _fail_and_retry(study, trial, reason):
            failed.append(trial.number)
    return failed


def _worth_waiting(trial: FrozenTrial, heartbeat) -> bool:
    """Whether a RUNNING trial of another worker may still need this worker (its retry)."""
    owner = trial.system_attrs.get(OWNER_ATTR)
    if owner is None or heartbeat:
        return True
    return _owner_state(owner) == "alive"


# --------------------------------------------------------------------------- seeding
def _reseed(sampler, seed: int, slot: int) -> bool:
    """Seed every random state of ``sampler`` from ``(seed, slot)``; False when it has none known."""
    try:
        from optuna.samplers._lazy_random_state import LazyRandomState
    except ImportError:  # pragma: no cover - moved in a future Optuna
        return False
    states: list = []

    def visit(obj, depth):
        for value in vars(obj).values():
            if isinstance(value, LazyRandomState):
                states.append(value)
            elif isinstance(value, optuna.samplers.BaseSampler) and depth < 3:
                visit(value, depth + 1)

    visit(sampler, 0)
    children = np.random.SeedSequence([int(seed) % 2**32, slot]).spawn(len(states))
    for state, child in zip(states, children):
        state.rng.seed(int(child.generate_state(1)[0]))
    return bool(states)


# --------------------------------------------------------------------------- one worker
class _Heartbeat:
    """Record heartbeats of a trial from a thread while it runs (storages with heartbeats)."""

    def __init__(self, storage, trial_id: int, interval):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        if self.interval:
            # The first beat is synchronous: a trial is never RUNNING without one for long.
            self.storage.record_heartbeat(self.trial_id)
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def _beat(self):
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # noqa: BLE001 - a lost beat is retried next interval
                pass

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _mark_not_run(study, trial, role: str, n_trials: int) -> None:
    storage = study._storage
    reason = (f"not run: the study already had its n_trials={n_trials} trials when this one was created"
              if role == "surplus" else
              f"not run: baseline {trial.user_attrs.get('baseline')!r} was already enqueued")
    try:
        storage.set_trial_system_attr(trial._trial_id, SURPLUS_ATTR, role)
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except UpdateFinishedTrialError:
        pass


def _run_one(study, trial, objective, *, heartbeat, callbacks) -> bool:
    """Run and tell one trial; True when a sampler or callback asked the study to stop."""
    storage = study._storage
    _ACTIVE_TRIAL_IDS.add(trial._trial_id)
    value = None
    state = TrialState.COMPLETE
    try:
        with _Heartbeat(storage, trial._trial_id, heartbeat):
            storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, _owner_record())
            try:
                value = objective(trial)
            except optuna.TrialPruned:
                state = TrialState.PRUNED
    except UpdateFinishedTrialError:
        _warn_lost(trial)
        return False
    except (KeyboardInterrupt, SystemExit):
        # Leave nothing RUNNING: fail it and enqueue a retry, so a resumed search re-runs it.
        _fail_and_retry(study, storage.get_trial(trial._trial_id), "interrupted; retried")
        raise
    except BaseException as exc:
        try:
            storage.set_trial_user_attr(trial._trial_id, "fail_reason", f"{type(exc).__name__}: {exc}"[:2000])
            storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            pass
        raise
    finally:
        _ACTIVE_TRIAL_IDS.discard(trial._trial_id)
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
        # result before the sampler's after_trial raised.
        if not _is_stop_request(exc):
            raise
        stop, frozen = True, storage.get_trial(trial._trial_id)
    for callback in callbacks:
        try:
            callback(study, frozen)
        except RuntimeError as exc:
            if not _is_stop_request(exc):
                raise
            stop = True
    return stop


def _is_stop_request(exc: RuntimeError) -> bool:
    """Whether ``exc`` is ``Study.stop()`` refusing to run outside ``Study.optimize``.

    Our trial loop is ask/tell, so a sampler or callback asking the study to stop
    lands here; it is honoured like ``optimize`` does: after the current trial.
    """
    return "Study.stop" in str(exc)


def _warn_lost(trial) -> None:
    warnings.warn(
        f"trial {trial.number} was declared dead by another worker (no heartbeat within the grace "
        "period) and re-queued; this worker's result for it is dropped. Raise `grace_period` if "
        "workers are alive but too busy to beat.", RuntimeWarning, stacklevel=3,
    )


def _work(study: optuna.Study, objective, *, n_trials: int, timeout=None, callbacks=(),
          seed=None, poll_s=None) -> None:
    """Run trials until the study has ``n_trials`` counted trials, all finished."""
    started = time.monotonic()
    storage = study._storage
    heartbeat = _heartbeat_interval(storage)
    if poll_s is None:
        poll_s = min(2.0, float(heartbeat)) if heartbeat else 0.5
    while True:
        if timeout is not None and time.monotonic() - started >= timeout:
            return
        recover_dead_trials(study)
        trials = study.get_trials(deepcopy=False)
        roles = _roles(trials, n_trials)
        waiting = [t for t in trials if t.state == TrialState.WAITING]
        n_slots = sum(role == "slot" for role in roles.values())
        if not waiting and n_slots >= n_trials:
            running = [t for t in trials if t.state == TrialState.RUNNING
                       and t._trial_id not in _ACTIVE_TRIAL_IDS]
            if any(_worth_waiting(t, heartbeat) for t in running):
                time.sleep(poll_s)
                continue
            return
        with warnings.catch_warnings():
            # Optuna expects heartbeats only inside Study.optimize; _run_one records them itself.
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = study.ask()
        try:
            trials = study.get_trials(deepcopy=False)
            role = _roles(trials, n_trials)[trial.number]
            if role in ("surplus", "duplicate"):
                _mark_not_run(study, trial, role, n_trials)
                continue
            if seed is not None:
                slot = _slot_index(trials, trial.number)
                if slot is not None:
                    _reseed(study.sampler, seed, slot)
        except (KeyboardInterrupt, SystemExit):
            # Stopped between claiming the trial and running it: hand it back.
            _fail_and_retry(study, study._storage.get_trial(trial._trial_id), "interrupted; retried")
            raise
        if _run_one(study, trial, objective, heartbeat=heartbeat, callbacks=callbacks):
            return


def _work_left(study: optuna.Study, n_trials: int) -> int:
    trials = study.get_trials(deepcopy=False)
    roles = _roles(trials, n_trials)
    n_slots = sum(role == "slot" for role in roles.values())
    n_waiting = sum(t.state == TrialState.WAITING for t in trials)
    return max(0, n_trials - n_slots) + n_waiting


# --------------------------------------------------------------------------- public entry
def run_trials(study: optuna.Study, objective: Callable, *, n_trials: int, n_jobs=1, timeout=None,
               callbacks: Sequence[Callable] = (), seed: int | None = None) -> TrialRun:
    """Run the trials the study still misses, until it holds ``n_trials``.

    Parameters
    ----------
    study : optuna.Study
        The study; its storage may be shared with other processes or machines
        running the same search.
    objective : callable
        ``objective(trial) -> float``; must pickle (cloudpickle) when
        ``n_jobs > 1``.
    n_trials : int
        Total budget of the study, counting trials that earlier runs and
        other workers finished.
    n_jobs : int or None, default=1
        Worker processes on this machine (see :func:`resolve_n_jobs`). With
        more than one, each process divides the cores' torch threads and, on
        a machine with several GPUs and ``device="auto"``, gets its own GPU.
    timeout : float, default=None
        Stop starting new trials after this many seconds.
    callbacks : sequence of callable, default=()
        ``callback(study, frozen_trial)`` once per trial finished in the run, always in
        this process (which follows the workers' study: :class:`skfairtune._follow.TrialFeed`).
    seed : int, default=None
        Re-seed the sampler from ``(seed, slot)`` before each trial.

    Returns
    -------
    run : TrialRun
        ``(study, interrupted)``.

    Examples
    --------
    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(direction="maximize")
    >>> run = run_trials(study, lambda t: t.suggest_float("x", 0, 1), n_trials=4, seed=0)
    >>> len(run.study.trials), run.interrupted
    (4, False)
    """
    from ._follow import TrialFeed

    n_workers = resolve_n_jobs(n_jobs)
    feed = TrialFeed(callbacks, study)
    try:
        recover_dead_trials(study)
        work = _work_left(study, n_trials)
        if n_workers == 1 or work <= 1:
            _work(study, objective, n_trials=n_trials, timeout=timeout, callbacks=[feed], seed=seed)
            return TrialRun(study, False)
    except KeyboardInterrupt:
        return TrialRun(study, True)
    return _run_processes(study, objective, n_workers=min(n_workers, work), n_trials=n_trials,
                          timeout=timeout, feed=feed, seed=seed)


# --------------------------------------------------------------------------- worker processes
def _copy_study(source: optuna.Study, storage, *, sampler, pruner) -> optuna.Study:
    """A copy of ``source`` in ``storage`` (None: memory), trials renumbered identically."""
    target = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner,
                                 study_name=source.study_name, directions=source.directions)
    for key, value in source.user_attrs.items():
        target.set_user_attr(key, value)
    for trial in sorted(source.get_trials(deepcopy=True), key=lambda t: t.number):
        if trial.state == TrialState.RUNNING:
            # Cut short by an interrupt; the retry enqueued for it (if any) follows.
            trial.state = TrialState.FAIL
            trial.datetime_complete = datetime.now()
            trial.user_attrs.setdefault("fail_reason", "interrupted")
        target.add_trial(trial)
    return target


def _dumps(obj) -> bytes:
    try:
        import cloudpickle  # joblib's dependency: pickles functions defined in __main__ too
    except ImportError:  # pragma: no cover
        return pickle.dumps(obj)
    return cloudpickle.dumps(obj)


def _run_processes(study, objective, *, n_workers, n_trials, timeout, feed, seed) -> TrialRun:
    workdir = Path(tempfile.mkdtemp(prefix="skfairtune-workers-"))
    processes: list[subprocess.Popen] = []
    interrupted = False
    shared = study
    try:
        storage = study._storage
        temporary = isinstance(storage, optuna.storages.InMemoryStorage)
        if temporary:
            # Worker processes cannot see this process's memory: share a journal file instead.
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            storage = JournalStorage(JournalFileBackend(str(workdir / "study.log")))
            shared = _copy_study(study, storage, sampler=study.sampler, pruner=study.pruner)
        storage = getattr(storage, "_backend", storage) if type(storage).__name__ == "_CachedStorage" else storage

        # Big image tensors go to a file the workers memory-map, instead of one pickled copy each.
        x_path = None
        shipped = objective
        x = getattr(objective, "X", None)
        if x is not None and hasattr(x, "numpy"):
            x_path = workdir / "X.npy"
            np.save(x_path, x.detach().cpu().numpy())
            shipped = copy.copy(objective)
            shipped.X = None
        threads = max(1, _n_cpus() // n_workers)
        devices = worker_devices(n_workers, _estimator_device(objective))
        body = _dumps({
            "study_name": shared.study_name, "storage": storage, "sampler": study.sampler,
            "pruner": study.pruner, "objective": shipped, "x_path": None if x_path is None else str(x_path),
            "n_trials": n_trials, "timeout": timeout, "callbacks": [], "seed": seed,
            "threads": threads, "verbosity": optuna.logging.get_verbosity(),
        })
        payload = workdir / "payload.pkl"
        with open(payload, "wb") as handle:
            pickle.dump({"sys_path": [p for p in sys.path if p], "body": body}, handle)
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
        for index in range(n_workers):
            command = [sys.executable, "-c", _BOOTSTRAP, str(payload), str(index), devices[index] or "",
                       str(os.getpid()), str(Path(__file__).resolve().parent)]
            # A session of their own: Ctrl-C reaches the parent only, which then stops them.
            processes.append(subprocess.Popen(command, env=env, start_new_session=True))
        try:
            died = _watch(processes, workdir, poll=lambda: feed.poll(shared))
        except KeyboardInterrupt:
            interrupted = True
            died = []
            _stop(processes)
        if died:
            warnings.warn(
                f"{len(died)} worker process(es) died ({'; '.join(died)}); their trials are retried "
                "and this process finishes whatever the others left.", RuntimeWarning, stacklevel=3,
            )
            if not interrupted:
                try:
                    _work(shared, objective, n_trials=n_trials, timeout=timeout, callbacks=[feed], seed=seed)
                except KeyboardInterrupt:
                    interrupted = True
        feed.poll(shared, force=True)
        if temporary:
            shared = _copy_study(shared, None, sampler=study.sampler, pruner=study.pruner)
        else:
            shared = study
        return TrialRun(shared, interrupted)
    finally:
        _stop(processes)
        shutil.rmtree(workdir, ignore_errors=True)


def _watch(processes, workdir: Path, poll=lambda: None) -> list[str]:
    """Wait for every worker (calling ``poll`` meanwhile); raise the first worker error, return the killed."""
    died: list[str] = []
    pending = dict(enumerate(processes))
    while pending:
        for index, process in list(pending.items()):
            code = process.poll()
            if code is None:
                continue
            del pending[index]
            error_file = workdir / f"error-{index}.pkl"
            if error_file.exists():
                _stop(processes)
                _raise_worker_error(error_file, index, process.pid)
            if code != 0:
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                died.append(f"worker {index} (pid {process.pid}): {how}")
        poll()
        time.sleep(0.1)
    return died


def _raise_worker_error(error_file: Path, index: int, pid: int):
    with open(error_file, "rb") as handle:
        report = pickle.load(handle)
    note = f"raised in worker process {index} (pid {pid}):\n{report['traceback']}"
    exc = None
    if report.get("exception") is not None:
        try:
            exc = pickle.loads(report["exception"])
        except Exception:  # noqa: BLE001 - an exception type the parent cannot rebuild
            exc = None
    if isinstance(exc, BaseException):
        exc.add_note(note)
        raise exc
    raise RuntimeError(f"worker process {index} (pid {pid}) failed: {report['summary']}\n\n{note}")


def _stop(processes) -> None:
    """Ask running workers to stop (SIGTERM: they fail and re-enqueue their trial), then kill."""
    alive = [p for p in processes if p.poll() is None]
    for process in alive:
        try:
            process.terminate()
        except OSError:
            pass
    deadline = time.monotonic() + _STOP_GRACE_S
    for process in alive:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# The worker's entry point. The package is registered with a lazy namespace first:
# `skfairtune/__init__` imports torch and timm (seconds per process), which a worker
# only needs when its objective does; submodules import as usual. Import errors
# (a broken install) are reported like any other worker error.
_BOOTSTRAP = """
import importlib.util, pickle, sys, traceback
from pathlib import Path
try:
    root = Path(sys.argv[5])
    spec = importlib.util.spec_from_file_location(
        "skfairtune", root / "__init__.py", submodule_search_locations=[str(root)])
    package = importlib.util.module_from_spec(spec)
    state = {"loaded": False}
    def _lazy(name, package=package, spec=spec, state=state):
        if state["loaded"]:
            raise AttributeError(f"module 'skfairtune' has no attribute {name!r}")
        state["loaded"] = True
        spec.loader.exec_module(package)
        return getattr(package, name)
    package.__getattr__ = _lazy
    sys.modules["skfairtune"] = package
    from skfairtune._parallel import _child_main
except BaseException as exc:
    report = {"traceback": traceback.format_exc(), "exception": None,
              "summary": f"{type(exc).__name__}: {exc}"}
    with open(Path(sys.argv[1]).parent / f"error-{sys.argv[2]}.pkl", "wb") as handle:
        pickle.dump(report, handle)
    sys.exit(1)
_child_main()
"""


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _watch_parent(parent: int) -> None:
    # An orphaned worker (its parent was killed) stops instead of training for nobody.
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _child_main() -> None:
    """Entry point of a local worker process (argv: payload, index, device, parent pid, package dir)."""
    payload_path, index, device, parent = sys.argv[1], int(sys.argv[2]), sys.argv[3] or None, int(sys.argv[4])
    # SIGTERM (from the parent) means: fail and re-enqueue the running trial, then exit.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    error_file = Path(payload_path).parent / f"error-{index}.pkl"
    try:
        with open(payload_path, "rb") as handle:
            header = pickle.load(handle)
        sys.path[:0] = [p for p in header["sys_path"] if p not in sys.path]
        payload = pickle.loads(header["body"])
        optuna.logging.set_verbosity(payload["verbosity"])
        objective = payload["objective"]
        if payload["x_path"] is not None:
            import torch

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # read-only memory map; trials copy slices
                objective.X = torch.from_numpy(np.load(payload["x_path"], mmap_mode="r"))
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(payload["threads"])
        objective = _assign_device(objective, device)
        study = optuna.load_study(study_name=payload["study_name"], storage=payload["storage"],
                                  sampler=payload["sampler"], pruner=payload["pruner"])
        if payload["seed"] is None and hasattr(study.sampler, "reseed_rng"):
            study.sampler.reseed_rng()  # unseeded: independent draws per worker
        _work(study, objective, n_trials=payload["n_trials"], timeout=payload["timeout"],
              callbacks=payload["callbacks"], seed=payload["seed"])
    except KeyboardInterrupt:
        sys.exit(130)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        try:
            pickled = pickle.dumps(exc)
        except Exception:  # noqa: BLE001
            pickled = None
        report = {"traceback": traceback.format_exc(), "exception": pickled,
                  "summary": f"{type(exc).__name__}: {exc}"}
        with open(error_file, "wb") as handle:
            pickle.dump(report, handle)
        sys.exit(1)
    sys.exit(0)
