"""Every Optuna internal the package relies on, in one place.

Checked against Optuna 5.0.0, the version installed when this module was
written (its doctests exercise each internal, so a test run against another
version says which still hold). When Optuna changes one of them, this module is
the only one to adapt. Each internal is used because Optuna's public API offers
no equivalent:

* ``Study._storage`` (:func:`study_storage`): the trial loop is ask/tell with
  its own bookkeeping (owner records, failing a dead worker's trial, marking
  surplus trials), which writes trial attributes and states through the
  storage; ``Study`` exposes no public handle on it. The storage methods
  called on it (``set_trial_user_attr``, ``set_trial_system_attr``,
  ``set_trial_state_values``, ``get_trial``, ``record_heartbeat``) are
  Optuna's public ``BaseStorage`` API.
* ``Trial._trial_id`` / ``FrozenTrial._trial_id`` (:func:`trial_id`): those
  storage methods take the storage's trial id, which neither class exposes.
* ``optuna.storages._cached_storage._CachedStorage`` (:func:`storage_backend`):
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
"""

from __future__ import annotations

import contextlib
import warnings

import optuna

__all__ = [
    "RDB_INTERNAL_QUERIES",
    "ask",
    "is_stop_request",
    "journal_lock",
    "sampler_random_states",
    "storage_backend",
    "study_storage",
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


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage object of ``study`` (Optuna's ``Study._storage``).

    Examples
    --------
    >>> import optuna
    >>> isinstance(study_storage(optuna.create_study()), optuna.storages.InMemoryStorage)
    True
    """
    return study._storage


def trial_id(trial) -> int:
    """The storage's id of a ``Trial`` or ``FrozenTrial`` (Optuna's ``_trial_id``).

    Examples
    --------
    >>> import optuna
    >>> study = optuna.create_study()
    >>> trial = study.ask()
    >>> study_storage(study).get_trial(trial_id(trial)).number == trial.number
    True
    """
    return trial._trial_id


def storage_backend(storage):
    """The storage inside Optuna's ``_CachedStorage`` wrapper; any other storage unchanged.

    Examples
    --------
    >>> import optuna
    >>> study = optuna.create_study(storage="sqlite:///:memory:")
    >>> type(storage_backend(study_storage(study))).__name__
    'RDBStorage'
    """
    if _CachedStorage is not None and isinstance(storage, _CachedStorage):
        return storage._backend
    return storage


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
    try:
        from optuna.samplers._lazy_random_state import LazyRandomState
    except ImportError:  # pragma: no cover - moved in a future Optuna
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
    if lock is None:
        return contextlib.nullcontext()
    from optuna.storages.journal._file import get_lock_file

    return get_lock_file(lock)
