"""Exceptions and warnings a search raises or emits, for users to catch or filter.

Importing this module loads nothing else of the package (no torch, no Optuna),
so a job script may ``from skfairtune.exceptions import SearchPreempted``
before anything else.

Examples
--------
>>> import warnings
>>> from skfairtune.exceptions import DegradedWarning
>>> with warnings.catch_warnings():
...     warnings.simplefilter("error", DegradedWarning)  # fail instead of running slower
...     issubclass(DegradedWarning, RuntimeWarning)
True
"""

from __future__ import annotations

import signal

__all__ = [
    "DegradedWarning",
    "PREEMPTED_EXIT_CODE",
    "SearchPreempted",
    "StorageRetryWarning",
    "StorageUnavailableError",
    "TornJournalWarning",
]

#: Exit code of a search stopped by SIGTERM: 128 + 15, what a shell reports for a
#: process killed by SIGTERM, so job scripts and schedulers read it as "preempted".
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM


class DegradedWarning(RuntimeWarning):
    """A resource ran out and the search continues in a slower mode.

    Emitted when the files shared with local worker processes cannot be
    written (the trials run in the search's own process instead) and when the
    frozen-prefix activations do not fit in memory (the fit trains from the
    images).
    """


class StorageUnavailableError(RuntimeError):
    """The database stayed unreachable past the retry bound; the search stopped.

    Every finished trial is stored; running the same search again (same
    storage and study name) once the database is back resumes it.
    """


class StorageRetryWarning(RuntimeWarning):
    """The database connection was lost; the search waits for it (``retry_timeout``)."""


class TornJournalWarning(UserWarning):
    """A journal file ended in a partial record, which was moved aside (``<file>.torn``)."""


class SearchPreempted(SystemExit):
    """SIGTERM stopped the search; the running trial was failed and re-queued.

    A ``SystemExit`` with code :data:`PREEMPTED_EXIT_CODE`: left uncaught, the
    process exits with that code; ``except Exception`` does not swallow it.

    Parameters
    ----------
    signum : int, default=signal.SIGTERM
        The signal that stopped the search.
    """

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(PREEMPTED_EXIT_CODE)
        self.signum = signum
