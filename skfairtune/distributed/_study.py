"""Optuna plumbing for the search: sampler, pruner, storage and the resume contract."""

from __future__ import annotations

import math
import os
import re
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

__all__ = [
    "make_sampler",
    "make_pruner",
    "first_rung_epoch",
    "make_storage",
    "redact_url",
    "open_study",
    "copy_study",
    "PRUNERS",
    "SAMPLERS",
    "rung_system_attrs",
]

PRUNERS = ("successive_halving", "late_successive_halving", "hyperband", "none")
_ATTR = "skfairtune"


def redact_url(url) -> str:
    """Hide the password of a database URL (or of any text holding one).

    Used for every log line, repr and error message that could show a
    storage URL: the user-info password and ``password=`` options become
    ``***``.

    Parameters
    ----------
    url : object
        A URL, an error message or any object (its ``str``).

    Returns
    -------
    text : str
        The text with passwords replaced by ``***``.

    Examples
    --------
    >>> redact_url("postgresql+psycopg://ann:s3cr@t@db.example:5432/search")
    'postgresql+psycopg://ann:***@db.example:5432/search'
    >>> redact_url("postgresql://db/search?user=ann&password=s3cret")
    'postgresql://db/search?user=ann&password=***'
    """
    text = str(url)
    # The user-info ends at the last "@" before the host: passwords may hold "@" unencoded.
    text = re.sub(r"(://[^:/@\s]*):[^\s/]*@", r"\1:***@", text)
    return re.sub(r"(?i)\b((?:password|passwd|pwd)\s*=\s*)[^&\s;'\"]+", r"\1***", text)


def _scrub(message: str, url: str) -> str:
    """An error message without the URL's password, even where a driver echoed it bare."""
    try:
        from sqlalchemy.engine import make_url

        password = make_url(url).password
    except Exception:  # noqa: BLE001 - unparsable URL: nothing more to hide than redact_url finds
        password = None
    if password:
        message = message.replace(str(password), "***")
    return redact_url(message)


#: Samplers named by a string; the default is ``"tpe"``.
SAMPLERS = ("tpe", "independent_tpe", "random")


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
    >>> import optuna
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
        from ._credentials import expand_storage_url

        return _rdb_storage(expand_storage_url(text), heartbeat_interval, grace_period, retry_timeout)
    path = Path(text)
    if path.exists() and path.is_dir():
        raise ValueError(f"`storage={text!r}` is a directory; pass a file path such as '{text}/search.log'.")
    if not path.parent.exists():
        raise ValueError(f"`storage={text!r}`: folder {str(path.parent)!r} does not exist; create it first.")
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        return optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from ._journal import repair_journal

    backend = JournalFileBackend(str(path))
    repair_journal(path, backend)  # a record cut mid-write would break every later append
    return JournalStorage(backend)


def _rdb_storage(url: str, heartbeat_interval, grace_period, retry_timeout=None):
    from ._liveness import MAX_RETRY, RetryDeadTrial
    from ._reconnect import DEFAULT_RETRY_TIMEOUT, ReconnectingRDBStorage

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
        lines = [line for line in _scrub(str(exc), url).splitlines() if line.strip()]
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
            clean = _scrub(str(exc), str(storage))
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

    A trial still RUNNING (cut short by an interrupt) is copied as FAIL; the
    retry enqueued for it, if any, follows it.

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
    target = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner,
                                 study_name=source.study_name, directions=source.directions)
    for key, value in source.user_attrs.items():
        target.set_user_attr(key, value)
    for trial in sorted(source.get_trials(deepcopy=True), key=lambda t: t.number):
        if trial.state == TrialState.RUNNING:
            trial.state = TrialState.FAIL
            trial.datetime_complete = datetime.now()
            trial.user_attrs.setdefault("fail_reason", "interrupted")
        target.add_trial(trial)
    return target


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value
