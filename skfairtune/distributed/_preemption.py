"""SIGTERM (a scheduler's preemption) during a search: stop cleanly, exit with a distinct code.

Slurm, Kubernetes and most batch systems preempt a job with SIGTERM, then
SIGKILL after a grace period (Slurm's ``KillWait``, 30 s by default;
Kubernetes' ``terminationGracePeriodSeconds``, 30 s by default). Python's
default for SIGTERM is to die on the spot, which leaves the running trial
RUNNING in the study until its death is noticed. While a search runs,
:func:`preemption_guard` turns SIGTERM into
:class:`~skfairtune.exceptions.SearchPreempted`, which
travels through the same path as Ctrl-C: the running trial is failed with
``fail_reason="interrupted; retried"`` and re-queued with its parameters,
local worker processes are stopped the same way, every storage write has been
committed (journal records are fsync'ed; database writes are committed per
operation), and the process exits with
:data:`~skfairtune.exceptions.PREEMPTED_EXIT_CODE`. Running the
same search again resumes it to exactly ``n_trials``.

The clean-up takes a few storage writes: well under a second on a local journal
or a reachable database; with ``n_jobs > 1`` up to 10 s more while worker
processes stop. A grace period of 30 s is ample.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

from ..exceptions import PREEMPTED_EXIT_CODE, SearchPreempted

# SearchPreempted and its exit code are defined in skfairtune.exceptions; their names here
# serve older imports.
__all__ = ["PREEMPTED_EXIT_CODE", "SearchPreempted", "preemption_guard"]


@contextlib.contextmanager
def preemption_guard(describe=None):
    """Turn SIGTERM into :class:`SearchPreempted` while the block runs.

    Installed only in the main thread, and only over Python's default handler:
    an application with its own SIGTERM handler keeps it.

    Parameters
    ----------
    describe : callable, default=None
        Returns the line printed to stderr when SIGTERM arrived (what is kept,
        how to resume).
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        # A second SIGTERM must not cut the clean-up of the first one short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SearchPreempted(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except SearchPreempted:
        if describe is not None:
            try:
                print(describe(), file=sys.stderr, flush=True)
            except Exception:  # noqa: BLE001 - the exit code matters more than the message
                pass
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
