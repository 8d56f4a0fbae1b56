"""Every Optuna internal the package relies on, in one place.

Checked against Optuna 5.0.0, the version installed when this module was
written (its doctests exercise each internal, so a test run against another
version says which still hold). When Optuna changes one of them, this module is
the only one to adapt. Each internal is used because Optuna's public API offers
no equivalent:

* ``Study._storage`` (:func:`storage_of`, :class:`StoredTrial`): the trial loop is ask/tell with
  its own bookkeeping (owner records, failing a dead worker's trial, marking
  surplus trials), which writes trial attributes and states through the
  storage; ``Study`` exposes no public handle on it. The storage methods
  called on it (``set_trial_user_attr``, ``set_trial_system_attr``,
  ``set_trial_state_values``, ``get_trial``, ``record_heartbeat``) are
  Optuna's public ``BaseStorage`` API.
* ``Trial._trial_id`` / ``FrozenTrial._trial_id`` (:func:`trial_id`, :class:`StoredTrial`):
  those storage methods take the storage's trial id, which neither class exposes.
* ``optuna.storages._cached_storage._CachedStorage`` (``storage_of(..., unwrap=True)``):
  ``create_study`` wraps an ``RDBStorage`` in this cache; worker processes are
  sent the wrapped storage (the cache holds this process's state), and the
  URL of a database lives on the wrapped storage only.
* ``optuna.samplers._lazy_random_state.LazyRandomState``
  (:func:`sampler_random_states`): re-seeding a sampler before each trial, so
  a trial's draws depend on its slot and not on which worker runs it, needs
  the sampler's random states; ``BaseSampler.reseed_rng`` draws a fresh,
  unseeded state instead.
* The text of the ``RuntimeError`` raised by ``Study.stop`` outside
  ``Study.optimize`` (:func:`is_stop_request`): Optuna raises no dedicated
  exception type for it, and an ask/tell loop is "outside optimize", so a
  sampler (``GridSampler``, once its grid is exhausted) or a callback asking
  the study to stop arrives as that error.
* The text of the warning ``Study.ask`` gives on a storage with heartbeats
  outside ``Study.optimize`` (:func:`ask`): the trial loop records the
  heartbeats itself, so the warning is wrong there, and it has no category of
  its own to filter by.
* ``JournalFileBackend._lock`` and ``optuna.storages.journal._file.get_lock_file``
  (:func:`journal_lock`): cutting a torn record off a journal file must hold
  the very lock Optuna's appends hold.
* ``RDBStorage._get_trials`` and ``RDBStorage._get_stale_trial_ids``
  (:data:`RDB_INTERNAL_QUERIES`): storage methods that talk to the database
  and are called by Optuna itself (``get_all_trials``, ``fail_stale_trials``),
  so a storage retrying lost connections must wrap them too.

One public name moved between the Optuna versions the package accepts:
:data:`RetryCallback` is ``RetryHeartbeatStaleTrialCallback`` (Optuna 4.9 and
later) or its earlier name ``RetryFailedTrialCallback``.
"""

from __future__ import annotations

import contextlib
import warnings

import optuna
from optuna.trial import FrozenTrial

__all__ = [
    "RDB_INTERNAL_QUERIES",
    "RetryCallback",
    "StoredTrial",
    "ask",
    "is_stop_request",
    "journal_lock",
    "sampler_random_states",
    "storage_of",
    "trial_id",
]

#: Internal ``RDBStorage`` methods that query the database (see the module docstring).
RDB_INTERNAL_QUERIES = ("_get_trials", "_get_stale_trial_ids")

# Optuna's text: "Heartbeat of storage is supposed to be used with Study.optimize."
_HEARTBEAT_WARNING = "Heartbeat of storage"
# Optuna's text: "`Study.stop` is supposed to be invoked inside an objective function or a callback."
_STOP_TEXT = "Study.stop"

try:  # pragma: no branch
    from optuna.storages._cached_storage import _CachedStorage
except ImportError:  # pragma: no cover - a future Optuna without the cache
    _CachedStorage = None
try:  # pragma: no branch
    from optuna.samplers._lazy_random_state import LazyRandomState
except ImportError:  # pragma: no cover - moved in a future Optuna
    LazyRandomState = None
try:  # pragma: no branch
    from optuna.storages.journal._file import get_lock_file
except ImportError:  # pragma: no cover - Optuna before 4.0 kept the journal elsewhere
    get_lock_file = None

#: Optuna's retry of a trial failed for a stale heartbeat (renamed in Optuna 4.9).
RetryCallback = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) \
    or optuna.storages.RetryFailedTrialCallback


def storage_of(obj, *, unwrap: bool = False):
    """The storage of a study (Optuna's ``Study._storage``); a storage or anything else unchanged.

    Parameters
    ----------
    obj : optuna.Study, optuna storage or object
        A study, a storage, or a storage spec (a URL, None) returned as is.
    unwrap : bool, default=False
        Return the storage inside Optuna's ``_CachedStorage`` wrapper:
        worker processes are sent that one (the cache holds this process's
        state), and the URL of a database lives on it only.

    Examples
    --------
    >>> import optuna
    >>> study = optuna.create_study(storage="sqlite:///:memory:")
    >>> type(storage_of(study)).__name__, type(storage_of(study, unwrap=True)).__name__
    ('_CachedStorage', 'RDBStorage')
    >>> storage_of("journal.log")
    'journal.log'
    """
    storage = obj._storage if isinstance(obj, optuna.Study) else obj
    if unwrap and _CachedStorage is not None and isinstance(storage, _CachedStorage):
        return storage._backend
    return storage


def trial_id(trial) -> int:
    """The storage's id of a ``Trial`` or ``FrozenTrial`` (Optuna's ``_trial_id``).

    Examples
    --------
    >>> import optuna
    >>> study = optuna.create_study()
    >>> trial = study.ask()
    >>> storage_of(study).get_trial(trial_id(trial)).number == trial.number
    True
    """
    return trial._trial_id


class StoredTrial:
    """One trial, written through its study's storage (Optuna's ``Study._storage``, ``_trial_id``).

    The process layer fails, marks and claims trials that are not the
    ``Trial`` handed to an objective (another worker's, or one being
    abandoned), which Optuna's ``Trial`` API cannot reach. This handle has the
    ``set_user_attr`` of a trial, so ``TrialRecord.write`` writes through it.

    Parameters
    ----------
    study : optuna.Study
        The trial's study.
    trial : optuna.trial.Trial or optuna.trial.FrozenTrial
        The trial.

    Examples
    --------
    >>> import optuna
    >>> study = optuna.create_study()
    >>> stored = StoredTrial(study, study.ask())
    >>> stored.set_user_attr("note", 1)
    >>> stored.finish(optuna.trial.TrialState.FAIL), stored.finish(optuna.trial.TrialState.FAIL)
    (True, False)
    >>> stored.get().user_attrs
    {'note': 1}
    """

    def __init__(self, study: optuna.Study, trial):
        self.storage = storage_of(study)
        self.trial_id = trial_id(trial)
        self.number = trial.number

    def set_user_attr(self, key: str, value) -> None:
        """Set a user attribute (raises ``UpdateFinishedTrialError`` once the trial finished)."""
        self.storage.set_trial_user_attr(self.trial_id, key, value)

    def set_system_attr(self, key: str, value) -> None:
        """Set a system attribute (raises ``UpdateFinishedTrialError`` once the trial finished)."""
        self.storage.set_trial_system_attr(self.trial_id, key, value)

    def finish(self, state) -> bool:
        """Move the trial to ``state``; False when it had already finished (another worker did it)."""
        try:
            return bool(self.storage.set_trial_state_values(self.trial_id, state=state))
        except optuna.exceptions.UpdateFinishedTrialError:
            return False

    def get(self) -> FrozenTrial:
        """The trial as stored now."""
        return self.storage.get_trial(self.trial_id)


def sampler_random_states(sampler: optuna.samplers.BaseSampler, max_depth: int = 3) -> list:
    """The ``numpy.random.RandomState`` objects of ``sampler`` and of the samplers it holds.

    Parameters
    ----------
    sampler : optuna.samplers.BaseSampler
        E.g. TPE, which holds its own state and that of its random sampler.
    max_depth : int, default=3
        How deep to follow samplers held by samplers.

    Returns
    -------
    states : list of numpy.random.RandomState
        Empty when Optuna keeps its random states elsewhere (a future version).

    Examples
    --------
    >>> import optuna
    >>> len(sampler_random_states(optuna.samplers.TPESampler(seed=0)))
    2
    """
    if LazyRandomState is None:  # pragma: no cover - moved in a future Optuna
        return []
    states: list = []

    def visit(obj, depth):
        for value in vars(obj).values():
            if isinstance(value, LazyRandomState):
                states.append(value.rng)
            elif isinstance(value, optuna.samplers.BaseSampler) and depth < max_depth:
                visit(value, depth + 1)

    visit(sampler, 0)
    return states


def is_stop_request(exc: BaseException) -> bool:
    """Whether ``exc`` is ``Study.stop()`` refusing to run outside ``Study.optimize``.

    Examples
    --------
    >>> import optuna
    >>> try:
    ...     optuna.create_study().stop()
    ... except RuntimeError as exc:
    ...     is_stop_request(exc)
    True
    >>> is_stop_request(RuntimeError("CUDA out of memory"))
    False
    """
    return isinstance(exc, RuntimeError) and _STOP_TEXT in str(exc)


def ask(study: optuna.Study) -> optuna.trial.Trial:
    """``study.ask()`` without the warning that heartbeats belong to ``Study.optimize``.

    Examples
    --------
    >>> import optuna
    >>> ask(optuna.create_study()).number
    0
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_HEARTBEAT_WARNING)
        return study.ask()


def journal_lock(backend):
    """A context manager holding the file lock of a ``JournalFileBackend`` (a no-op for None).

    Examples
    --------
    >>> with journal_lock(None):
    ...     pass
    """
    lock = getattr(backend, "_lock", None)
    if lock is None or get_lock_file is None:
        return contextlib.nullcontext()
    return get_lock_file(lock)
