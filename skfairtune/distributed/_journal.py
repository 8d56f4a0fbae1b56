"""Journal files cut mid-record: read them up to the last complete record.

Optuna's journal file is one JSON record per line, appended whole. A process
killed mid-write, a full disk or a machine crash can leave the last line
partial. Optuna then reads the complete records and silently skips the partial
one, but the next record appended is glued onto it, and from then on the file
no longer loads. Before a journal is opened, :func:`repair_journal` moves a
partial last line aside (next to the journal, ``<file>.torn``) under the
journal's own lock and warns; the study is then exactly what its complete
records say, and a trial whose last update was cut is retried like any
interrupted trial.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from ..exceptions import TornJournalWarning
from ._optuna_compat import journal_lock

# TornJournalWarning is defined in skfairtune.exceptions; its name here serves older imports.
__all__ = ["repair_journal", "TornJournalWarning"]

_CHUNK = 1 << 16


def _complete_length(handle, size: int) -> int:
    """Bytes up to and including the last newline (0 when there is none)."""
    position = size
    while position > 0:
        start = max(0, position - _CHUNK)
        handle.seek(start)
        chunk = handle.read(position - start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def repair_journal(path, backend=None) -> int:
    """Cut a partial last record off an Optuna journal file, with a warning.

    Parameters
    ----------
    path : str or path-like
        The journal file; a missing or empty file is left alone.
    backend : optuna.storages.journal.JournalFileBackend, default=None
        Its lock is held while the file is checked and cut, so a worker
        appending at the same moment is never cut.

    Returns
    -------
    removed : int
        Bytes moved aside (0 when the file was whole).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "s.log")
    >>> with open(path, "w") as handle:
    ...     _ = handle.write('{"op_code": 0}\\n{"op_co')
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     repair_journal(path)
    7
    >>> open(path).read()
    '{"op_code": 0}\\n'
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with journal_lock(backend):
        with open(path, "rb+") as handle:
            size = os.fstat(handle.fileno()).st_size
            keep = _complete_length(handle, size)
            if keep == size:
                return 0
            handle.seek(keep)
            torn = handle.read()
            backup = path.with_name(path.name + ".torn")
            with open(backup, "ab") as aside:
                aside.write(torn + b"\n")
                aside.flush()
                os.fsync(aside.fileno())
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
    n_records = _count_lines(path)
    warnings.warn(
        f"journal file {str(path)!r} ended in a partial record ({len(torn)} bytes, cut short when a "
        f"process writing it was killed or the disk filled); it is read up to its last complete "
        f"record ({n_records} kept) and the partial bytes were moved to {str(backup)!r}. A trial "
        "whose last update was cut is retried when the search resumes.",
        TornJournalWarning, stacklevel=3,
    )
    return len(torn)


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(_CHUNK), b""))
