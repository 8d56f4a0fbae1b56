"""Database storages that ride out a restart of the server.

Optuna's ``RDBStorage`` raises on the first storage call that finds the
database gone (a restart, a fail-over, a dropped network link), and that call
may come in the middle of a trial: the search ends and the trial stays RUNNING.
:class:`ReconnectingRDBStorage` retries such calls with exponential backoff
(0.5 s doubling to 30 s) for at most ``retry_timeout`` seconds in all, then
raises :class:`StorageUnavailableError`, which names the storage (password
redacted) and how to resume. Only connection failures are retried; any other
error of the database (a constraint, a bad value) is raised at once.

Nothing is counted twice: a write whose commit reached the server but whose
answer was lost is detected when retried (finishing a trial twice), and a
trial row created twice has no owner and is failed and retried by the usual
rules (:mod:`skfairtune.distributed._liveness`).
"""

from __future__ import annotations

import functools
import sys
import time
import warnings

import optuna
from optuna.exceptions import UpdateFinishedTrialError

from ..exceptions import StorageRetryWarning, StorageUnavailableError
from ._credentials import redact_url
from ._optuna_compat import RDB_INTERNAL_QUERIES

# The exception classes are defined in skfairtune.exceptions; their names here serve older imports.
__all__ = ["ReconnectingRDBStorage", "StorageUnavailableError", "StorageRetryWarning", "DEFAULT_RETRY_TIMEOUT"]

#: Seconds a search waits for its database to come back before it stops.
DEFAULT_RETRY_TIMEOUT = 300.0
_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 30.0

# Every RDBStorage method that talks to the database: its public API and the internal
# queries Optuna's own methods call.
_RETRIED = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
    "get_study_system_attrs", "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies",
    "create_new_trial", "set_trial_param", "get_trial_param", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
    "get_best_trial", "record_heartbeat",
) + RDB_INTERNAL_QUERIES


def _driver_connection_errors() -> tuple:
    """The PostgreSQL drivers' connection errors, for those drivers already imported (raising one imports it)."""
    types: list = []
    for name in ("psycopg", "psycopg2"):
        module = sys.modules.get(name)
        if module is not None:
            types.extend(getattr(module, kind) for kind in ("OperationalError", "InterfaceError")
                         if isinstance(getattr(module, kind, None), type))
    return tuple(types)


def _is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database could not be reached."""
    try:
        # sqlalchemy is Optuna's optional database dependency: only RDB storages reach this.
        import sqlalchemy.exc as sa
    except ImportError:  # pragma: no cover - optuna's RDB storage needs sqlalchemy
        return False
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (sa.OperationalError, sa.InterfaceError, ConnectionError)):
            return True
        if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(exc, _driver_connection_errors()):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class ReconnectingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's ``RDBStorage``, retrying calls that lose the database connection.

    Parameters
    ----------
    *args, **kwargs
        As ``optuna.storages.RDBStorage``.
    retry_timeout : float, default=300
        Seconds of retrying, counted from the first failed call of an outage,
        before :class:`StorageUnavailableError` is raised. Once raised, later
        calls try once each until one succeeds, so a stopping search does not
        wait again at every step of its clean-up.
    """

    def __init__(self, *args, retry_timeout: float = DEFAULT_RETRY_TIMEOUT, **kwargs):
        self.retry_timeout = float(retry_timeout)
        self._down_since = None
        self._gave_up = False
        super().__init__(*args, **kwargs)

    def _storage_name(self) -> str:
        return redact_url(self.url)

    def _call(self, name, method, args, kwargs):
        delay = _FIRST_DELAY_S
        failed = False
        while True:
            try:
                result = method(self, *args, **kwargs)
            except UpdateFinishedTrialError:
                if failed and name == "set_trial_state_values" and self._already_set(args, kwargs):
                    return True  # the first attempt was committed; its answer was lost
                raise
            except Exception as exc:  # noqa: BLE001 - the driver decides the type
                if not _is_connection_error(exc):
                    raise
                failed = True
                now = time.monotonic()
                if self._down_since is None:
                    self._down_since = now
                    warnings.warn(
                        f"lost the connection to storage {self._storage_name()!r} ({type(exc).__name__}); "
                        f"retrying with backoff for up to {self.retry_timeout:.0f} s.",
                        StorageRetryWarning, stacklevel=4,
                    )
                waited = now - self._down_since
                if self._gave_up or waited >= self.retry_timeout:
                    self._gave_up = True
                    raise StorageUnavailableError(
                        f"storage {self._storage_name()!r} was unreachable for {waited:.0f} s (retry_timeout="
                        f"{self.retry_timeout:.0f} s), so the search stopped. Every finished trial is stored; "
                        "the trial that was running is retried on resume. Once the database is back, run "
                        "the same search again (same storage and study_name) to resume it."
                    ) from None
                time.sleep(min(delay, self.retry_timeout - waited))
                delay = min(2 * delay, _MAX_DELAY_S)
                continue
            if self._down_since is not None:
                self._down_since = None
                self._gave_up = False
            return result

    def _already_set(self, args, kwargs) -> bool:
        trial_id = kwargs.get("trial_id", args[0] if args else None)
        state = kwargs.get("state", args[1] if len(args) > 1 else None)
        try:
            return optuna.storages.RDBStorage.get_trial(self, trial_id).state == state
        except Exception:  # noqa: BLE001
            return False


def _retrying(name: str):
    method = getattr(optuna.storages.RDBStorage, name)

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        return self._call(name, method, args, kwargs)

    return call


for _name in _RETRIED:
    setattr(ReconnectingRDBStorage, _name, _retrying(_name))
