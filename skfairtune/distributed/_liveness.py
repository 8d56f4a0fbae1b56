"""Whether the worker running a trial is alive; failing and retrying the trials of dead ones.

A RUNNING trial's worker is dead when (see :func:`recover_dead_trials`):

* its heartbeat is stale, on storages with heartbeats (Optuna's RDB storage
  with ``heartbeat_interval``; :class:`TrialHeartbeat` beats for a trial);
* otherwise, its owner record (:data:`OWNER_ATTR`: host, pid, process start
  time, boot id) names a process gone from this host;
* on any storage, it has no owner record ``UNCLAIMED_GRACE_S`` seconds after
  it started (its worker died between creating and claiming it).

Such a trial is failed and retried with its parameters (:class:`RetryDeadTrial`,
at most :data:`MAX_RETRY` retries of one original trial).

What Optuna does and what remains here: on RDB storages with heartbeats,
Optuna's ``fail_stale_trials`` finds dead trials and its
``RetryHeartbeatStaleTrialCallback`` (the base of :class:`RetryDeadTrial`)
re-queues them. Optuna's journal file has no heartbeat, so the owner records
remain for it. :class:`TrialHeartbeat` remains because Optuna's heartbeat
thread is started only inside ``Study.optimize`` (this loop is ask/tell) and
ends at the first beat that fails, which a database restart causes; this one
beats once before the trial runs and keeps beating through an outage.
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import threading
import warnings
from datetime import datetime
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from ._budget import SURPLUS_ATTR, superseded_numbers
from ._optuna_compat import RetryCallback, StoredTrial, storage_of, trial_id
from ._trial_record import TrialRecord

__all__ = [
    "MAX_RETRY",
    "OWNER_ATTR",
    "UNCLAIMED_GRACE_S",
    "RetryDeadTrial",
    "TrialHeartbeat",
    "fail_and_retry",
    "heartbeat_interval",
    "is_running_here",
    "owner_record",
    "owner_state",
    "recover_dead_trials",
    "running_here",
    "worth_waiting",
]

#: System attribute holding the owner record of a trial (who runs it).
OWNER_ATTR = "skfairtune:worker"
#: Retries of one original trial whose worker died.
MAX_RETRY = 3
#: Seconds a RUNNING trial may go without an owner record before it counts as dead.
UNCLAIMED_GRACE_S = 120.0

# Trial ids this process is running right now: its own RUNNING trials are alive
# even though its pid is alive for trials it abandoned (e.g. after Ctrl-C).
_ACTIVE_TRIAL_IDS: set[int] = set()


@contextlib.contextmanager
def running_here(storage_trial_id: int):
    """Mark a trial as run by this process for the block (see :func:`is_running_here`)."""
    _ACTIVE_TRIAL_IDS.add(storage_trial_id)
    try:
        yield
    finally:
        _ACTIVE_TRIAL_IDS.discard(storage_trial_id)


def is_running_here(trial) -> bool:
    """Whether this process is running ``trial`` right now."""
    return trial_id(trial) in _ACTIVE_TRIAL_IDS


# --------------------------------------------------------------------------- owner records
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


def owner_record() -> dict:
    """This process as a trial's owner: ``{"host", "pid", "start", "boot"}``.

    Examples
    --------
    >>> import os
    >>> owner_record()["pid"] == os.getpid()
    True
    """
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _process_start(pid), "boot": _boot_id()}


def owner_state(owner: dict) -> str:
    """``"alive"``, ``"dead"`` or ``"unknown"`` (another host: nothing to check here).

    Examples
    --------
    >>> owner_state(owner_record())
    'alive'
    """
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


# --------------------------------------------------------------------------- heartbeats
def heartbeat_interval(storage) -> int | None:
    """Seconds between heartbeats of ``storage``, or None when it has none."""
    getter = getattr(storage, "get_heartbeat_interval", None)
    return getter() if callable(getter) else None


class TrialHeartbeat:
    """Record heartbeats of a trial from a thread while the block runs (storages with heartbeats).

    Parameters
    ----------
    storage : optuna storage
        The study's storage.
    storage_trial_id : int
        The trial's id in ``storage``.
    interval : int or None
        Seconds between beats; None or 0 records none.
    """

    def __init__(self, storage, storage_trial_id: int, interval):
        self.storage, self.trial_id, self.interval = storage, storage_trial_id, interval
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


# --------------------------------------------------------------------------- failing and retrying
class RetryDeadTrial(RetryCallback):
    """Re-enqueue a trial whose worker died, with the same parameters, at most ``max_retry`` times.

    Optuna's ``RetryHeartbeatStaleTrialCallback`` (its retry history and
    bound), given the dead attempt without what the retry must not inherit:
    only the user attributes that describe *what* to run
    (:meth:`TrialRecord.retry_attrs <skfairtune.distributed._trial_record.TrialRecord.retry_attrs>`)
    are kept, not the attempt's results (scores, ``fail_reason``), which would
    otherwise stick to a retry that completes, nor its owner and surplus
    marks; the retry's ``requeued_from`` names the attempt it replaces.
    Optuna's ``failed_trial`` and ``retry_history`` system attributes are
    kept, so ``RetryHeartbeatStaleTrialCallback.retry_history`` works.

    Parameters
    ----------
    max_retry : int or None, default=3
        Retries of one original trial; None retries forever.
    """

    def __init__(self, max_retry: int | None = MAX_RETRY):
        with warnings.catch_warnings():
            # Optuna marks the callback experimental; the package pins the behaviour it relies on.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(max_retry=max_retry)
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        attempt = copy.deepcopy(trial)
        attempt.system_attrs = {k: v for k, v in attempt.system_attrs.items() if k not in (OWNER_ATTR, SURPLUS_ATTR)}
        attempt.user_attrs = {**TrialRecord.retry_attrs(attempt),
                              **TrialRecord(requeued_from=trial.number).as_user_attrs()}
        super().__call__(study, attempt)


def fail_and_retry(study: optuna.Study, trial, reason: str) -> bool:
    """Fail a RUNNING trial and enqueue its retry; False when another worker did it first.

    Parameters
    ----------
    study : optuna.Study
        The trial's study.
    trial : optuna.trial.Trial or optuna.trial.FrozenTrial
        The trial to fail.
    reason : str
        Its ``fail_reason`` (:class:`~skfairtune.distributed._trial_record.TrialRecord`).
    """
    stored = StoredTrial(study, trial)
    try:
        TrialRecord.write(stored, fail_reason=reason)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    if not stored.finish(TrialState.FAIL):
        return False
    RetryDeadTrial(MAX_RETRY)(study, copy.deepcopy(stored.get()))
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
    heartbeat = heartbeat_interval(storage_of(study))
    failed: list[int] = []
    if heartbeat:
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        retried = superseded_numbers(trials)
        failed.extend(t.number for t in trials if t.number in before and t.number in retried)
    for trial in study.get_trials(deepcopy=True, states=(TrialState.RUNNING,)):
        if is_running_here(trial):
            continue
        owner = trial.system_attrs.get(OWNER_ATTR)
        reason = None
        if owner is None:
            if _age_seconds(trial) > UNCLAIMED_GRACE_S:
                reason = (f"its worker died before claiming it (no owner record after "
                          f"{UNCLAIMED_GRACE_S:.0f} s); retried")
        elif owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            reason = "abandoned by this process (interrupted); retried"
        elif not heartbeat and owner_state(owner) == "dead":
            reason = (f"worker process {owner.get('pid')} on {owner.get('host')} died during "
                      "the trial; retried")
        if reason is not None and fail_and_retry(study, trial, reason):
            failed.append(trial.number)
    return failed


def worth_waiting(trial: FrozenTrial, heartbeat) -> bool:
    """Whether a RUNNING trial of another worker may still need this worker (its retry)."""
    owner = trial.system_attrs.get(OWNER_ATTR)
    if owner is None or heartbeat:
        return True
    return owner_state(owner) == "alive"
