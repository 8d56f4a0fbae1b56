"""Optuna plumbing for the search: storage, the resume contract, copies of a study.

The sampler and pruner the search builds are search concepts and live in
:mod:`skfairtune.search._pruners`; URL passwords are handled in
:mod:`skfairtune.distributed._credentials`.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from ._credentials import expand_storage_url, redact_url, scrub
from ._journal import repair_journal
from ._liveness import MAX_RETRY, RetryDeadTrial
from ._optuna_compat import StoredTrial, storage_of
from ._reconnect import DEFAULT_RETRY_TIMEOUT, ReconnectingRDBStorage
from ._trial_record import TrialRecord

__all__ = [
    "make_storage",
    "open_study",
    "copy_study",
    "pickle_safe_study",
]

_ATTR = "skfairtune"


def make_storage(storage, *, heartbeat_interval: int = 30, grace_period: int | None = 90,
                 retry_timeout: float | None = None):
    """The Optuna storage for ``storage``.

    ``None`` keeps the study in memory; a file path is an Optuna journal file
    (``.db``, ``.sqlite``, ``.sqlite3``: SQLite), for several processes on one
    machine; a URL is Optuna's RDB storage (PostgreSQL for several machines)
    with heartbeats: a trial whose worker stops beating for ``grace_period``
    seconds is failed and retried with its parameters (at most 3 times).
    Optuna storage objects are used as they are.

    Parameters
    ----------
    storage : None, str, path-like or optuna storage
        Where the study lives.
    heartbeat_interval : int, default=30
        Seconds between heartbeats of a running trial (URLs only).
    grace_period : int or None, default=90
        Seconds without a heartbeat after which a trial counts as dead;
        None means twice ``heartbeat_interval``.
    retry_timeout : float, default=None
        Seconds a search waits, retrying with backoff, for a database that
        went away (a restart) before it stops; None means 300 (URLs only,
        see :mod:`skfairtune.distributed._reconnect`).

    Returns
    -------
    storage : optuna storage or None

    Examples
    --------
    >>> make_storage(None) is None
    True
    >>> make_storage("sqlite:///:memory:", heartbeat_interval=5).get_heartbeat_interval()
    5
    """
    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if not isinstance(storage, (str, os.PathLike)):
        raise TypeError(
            f"`storage` must be None, a file path, a database URL or an optuna storage; got {type(storage).__name__}."
        )
    for name, value in (("heartbeat_interval", heartbeat_interval), ("grace_period", grace_period)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"`{name}` must be a positive int (seconds); got {value!r}.")
    text = str(storage)
    if "://" in text:
        return _rdb_storage(expand_storage_url(text), heartbeat_interval, grace_period, retry_timeout)
    path = Path(text)
    if path.exists() and path.is_dir():
        raise ValueError(f"`storage={text!r}` is a directory; pass a file path such as '{text}/search.log'.")
    if not path.parent.exists():
        raise ValueError(f"`storage={text!r}`: folder {str(path.parent)!r} does not exist; create it first.")
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        return optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
    backend = JournalFileBackend(str(path))
    repair_journal(path, backend)  # a record cut mid-write would break every later append
    return JournalStorage(backend)


def _rdb_storage(url: str, heartbeat_interval, grace_period, retry_timeout=None):
    """Optuna's RDB storage with heartbeats, reconnecting, and an error without the password."""
    scheme = url.split("://", 1)[0]
    # Pre-ping: a pooled connection that a database restart killed is replaced, not used.
    engine_kwargs = {"pool_pre_ping": True}
    if scheme.startswith("postgresql") and "connect_timeout" not in url:
        # An unreachable host fails in seconds instead of hanging on the OS's TCP timeout.
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    def connect():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return ReconnectingRDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                retry_timeout=DEFAULT_RETRY_TIMEOUT if retry_timeout is None else retry_timeout,
                grace_period=grace_period,
                # A trial whose worker died is re-queued with the same parameters.
                heartbeat_stale_trial_callback=RetryDeadTrial(max_retry=MAX_RETRY),
            )

    try:
        for attempt in range(4):
            try:
                return connect()
            except (ImportError, ModuleNotFoundError):
                raise
            except Exception as exc:  # noqa: BLE001
                # Workers starting together race to create Optuna's tables; the losers
                # see a duplicate-object error once the winner is done, so try again.
                racing = any(word in str(exc).lower() for word in ("already exists", "duplicate", "unique"))
                if not racing or attempt == 3:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except Exception as exc:  # noqa: BLE001 - the driver decides the type
        lines = [line for line in scrub(str(exc), url).splitlines() if line.strip()]
        message = (lines[0] if lines else type(exc).__name__)[:300]
        hint = ""
        seconds = engine_kwargs.get("connect_args", {}).get("connect_timeout")
        timeout = (f" (each attempt waits at most connect_timeout={seconds} s; add "
                   "'?connect_timeout=N' to the URL to change it)") if seconds else ""
        if isinstance(exc, ImportError) or "No module named" in str(exc) or "Can't load plugin" in str(exc):
            hint = (" The database driver is missing or the scheme is unknown: for PostgreSQL "
                    "`pip install \"psycopg[binary]\"` and write 'postgresql+psycopg://...'.")
        raise ValueError(
            f"`storage={redact_url(url)!r}` could not be opened: {message}.{hint} Check the URL "
            "(e.g. 'postgresql+psycopg://user:password@host:5432/db' or 'sqlite:///search.db') "
            f"and that the server is reachable{timeout}."
        ) from None


def open_study(*, study, storage, study_name, sampler, pruner, signature: dict, tolerate=(),
               directions=("maximize",)):
    """Create or resume the study and check that a resumed one is the same search.

    ``directions`` are the objectives' (several for a multi-objective search).

    ``signature`` holds what must not change between runs of one study (search
    space, scoring, resource, data fingerprint); a mismatch fails here, before
    any training. Keys in ``tolerate`` (``resume="force"``) only warn.
    """
    if study is not None:
        if not isinstance(study, optuna.Study):
            raise TypeError(f"`study` must be an optuna.Study or None; got {type(study).__name__}.")
        found = [d.name.lower() for d in study.directions]
        if found != list(directions):
            raise ValueError(
                f"`study` was created with direction(s) {found}; FairTuneSearchCV maximises its scores "
                f"(higher is better) and minimises costs: create the study with directions={list(directions)}."
            )
        created = study
    else:
        storage_obj = make_storage(storage)
        try:
            created = optuna.create_study(
                study_name=study_name, storage=storage_obj, sampler=sampler, pruner=pruner,
                directions=list(directions), load_if_exists=study_name is not None,
            )
        except Exception as exc:  # noqa: BLE001 - database errors may quote the URL
            clean = scrub(str(exc), str(storage))
            if clean == str(exc):
                raise
            # Chained exceptions would print the password: raise a clean one, unchained.
            raise RuntimeError(
                f"opening study {study_name!r} in storage {redact_url(storage)!r} failed: {clean}"
            ) from None
        # Optuna loads an existing study whatever its direction: check it here.
        found = [d.name.lower() for d in created.directions]
        if found != list(directions):
            raise ValueError(
                f"study {created.study_name!r} in storage {redact_url(storage)!r} was created with "
                f"direction(s) {found}; FairTuneSearchCV maximises its scores (higher is better) and "
                f"minimises costs: this search needs {list(directions)}. Use another `study_name` (or a "
                "new storage)."
            )
    stored = created.user_attrs.get(_ATTR)
    if stored is None:
        if created.trials and study is None:
            raise ValueError(
                f"study {created.study_name!r} already has {len(created.trials)} trials that were not "
                "made by FairTuneSearchCV; use a new `study_name`."
            )
        created.set_user_attr(_ATTR, signature)
    else:
        # A key the stored signature lacks was added by a later version: nothing to compare.
        differences = {k: (stored.get(k), v) for k, v in signature.items()
                       if k in stored and stored.get(k) != _jsonable(v)}
        forced = {k: differences.pop(k) for k in tolerate if k in differences}
        if forced:
            warnings.warn(f"resume='force': study {created.study_name!r} continues although its "
                          f"{', '.join(forced)} differ from this fit's; its earlier trials were scored "
                          "on other data.", UserWarning, stacklevel=3)
        if "data" in differences:
            raise ValueError(
                f"study {created.study_name!r} was run on other data (stored {stored['data']!r}, now "
                f"{_jsonable(signature['data'])!r}): resuming would mix two experiments in one study. "
                "Pass the same X, y, sensitive_features and groups, use another `study_name`, or "
                "pass resume='force' to continue anyway."
            )
        if differences:
            detail = "; ".join(f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in differences.items())
            raise ValueError(
                f"study {created.study_name!r} was made by a different search ({detail}). Resume it "
                "with the same settings, or start a new study with another `study_name`."
            )
    return created


def copy_study(source: optuna.Study, storage, *, sampler, pruner) -> optuna.Study:
    """A copy of ``source`` in ``storage`` (None: memory), trials renumbered identically.

    Optuna's ``copy_study`` copies the attributes and trials; a trial still
    RUNNING (cut short by an interrupt) is then failed in the copy, with
    ``fail_reason="interrupted"`` unless it had one; the retry enqueued for
    it, if any, follows it.

    Examples
    --------
    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study()
    >>> study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    >>> copied = copy_study(study, None, sampler=None, pruner=None)
    >>> [t.params for t in copied.trials] == [t.params for t in study.trials]
    True
    """
    target_storage = optuna.storages.InMemoryStorage() if storage is None else storage
    optuna.copy_study(from_study_name=source.study_name, from_storage=storage_of(source),
                      to_storage=target_storage)
    target = optuna.load_study(study_name=source.study_name, storage=target_storage, sampler=sampler,
                               pruner=pruner)
    for trial in target.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        stored = StoredTrial(target, trial)
        if TrialRecord.of(trial).fail_reason is None:
            TrialRecord.write(stored, fail_reason="interrupted")
        stored.finish(TrialState.FAIL)
    return target


def pickle_safe_study(study):
    """An in-memory copy of a study kept in a database (whose storage holds the URL)."""
    if not isinstance(storage_of(study, unwrap=True), optuna.storages.RDBStorage):
        return study
    return copy_study(study, None, sampler=study.sampler, pruner=study.pruner)


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value
