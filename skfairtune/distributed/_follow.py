"""Following a search while it runs: the ``skfairtune`` logger, the progress bar, study callbacks.

Everything the library says goes to ``logging.getLogger("skfairtune")``; one
INFO line per finished trial. :class:`TrialFeed` calls the search's study
callbacks once per finished trial *in the process that runs the search*: after
each trial with ``n_jobs=1``, and by polling the shared study while worker
processes train with ``n_jobs > 1`` (their own processes never run them, so a
callback may hold open files, sockets or an MLflow run).
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import sys
import time
import warnings
from typing import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from ._budget import SURPLUS_ATTR, superseded_numbers
from ._optuna_compat import is_stop_request
from ._trial_record import TrialRecord

__all__ = ["logger", "optuna_verbosity", "TrialFeed", "TrialLogger", "ProgressBar", "trial_summary", "log_to_stderr",
           "progress_enabled"]

logger = logging.getLogger("skfairtune")
# A library never prints by default; the search attaches a stderr handler only when
# asked (verbose >= 1) and the application has configured no logging of its own.
logger.addHandler(logging.NullHandler())

_POLL_S = 0.5


def trial_summary(trial: FrozenTrial) -> str:
    """One line about a finished trial: number, state, value, epochs, seconds, mask, lr.

    Parameters
    ----------
    trial : optuna.trial.FrozenTrial
        A finished trial of a FairTune study.

    Returns
    -------
    line : str

    Examples
    --------
    >>> import optuna
    >>> trial = optuna.trial.create_trial(
    ...     value=0.8123, params={"lr": 3e-4},
    ...     distributions={"lr": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)},
    ...     user_attrs=TrialRecord(n_epochs=4, fit_time=2.5, params={"mask": "110010", "lr": 3e-4}).as_user_attrs())
    >>> trial.number = 7
    >>> trial_summary(trial)
    'trial 7 complete: 0.8123 | 4 epochs | 2.5 s | mask 110010 (3/6 units trained) | lr 3.0e-04'
    """
    record = TrialRecord.of(trial)
    values = trial.values or []
    value = "-" if not values else "/".join(f"{v:.4f}" for v in values)
    parts = [f"trial {trial.number} {trial.state.name.lower()}: {value}", f"{record.n_epochs} epochs"]
    if not math.isnan(record.fit_time):
        parts.append(f"{record.fit_time:.1f} s")
    params = record.params or {}
    mask = params.get("mask")
    if isinstance(mask, str) and set(mask) <= {"0", "1", "2"}:
        label = f" {record.baseline}" if record.baseline else ""
        parts.append(f"mask{label} {mask} ({len(mask) - mask.count('0')}/{len(mask)} units trained)")
    elif isinstance(mask, str):
        parts.append(f"preset {mask}")  # a preset trains parameters outside the bit space: no bits to show
    lr = params.get("lr", trial.params.get("lr"))
    if lr is not None:
        parts.append(f"lr {lr:.1e}")
    if trial.state == TrialState.FAIL and record.fail_reason:
        parts.append(f"reason: {str(record.fail_reason)[:200]}")
    return " | ".join(parts)


class TrialLogger:
    """Study callback writing :func:`trial_summary` at INFO (WARNING for failed trials)."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        level = logging.WARNING if trial.state == TrialState.FAIL else logging.INFO
        logger.log(level, "%s", trial_summary(trial))


def progress_enabled(progress_bar) -> bool:
    """Whether ``progress_bar`` ("auto", True or False) shows a bar here.

    Examples
    --------
    >>> progress_enabled(True), progress_enabled(False)
    (True, False)
    """
    if progress_bar == "auto":
        stream = sys.stderr
        return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
    if isinstance(progress_bar, bool):
        return progress_bar
    raise ValueError(f"`progress_bar` must be 'auto', True or False; got {progress_bar!r}.")


class ProgressBar:
    """tqdm bar over the study's trials: done/total, pruned, failed, best so far, elapsed, ETA.

    Parameters
    ----------
    n_trials : int
        The study's budget.
    initial : int, default=0
        Trials already finished (a resumed study).
    best : float or None, default=None
        Best value already in the study.
    file : file-like, default=None
        Where the bar is drawn; ``None`` is ``sys.stderr``.
    """

    def __init__(self, n_trials: int, *, initial: int = 0, best=None, file=None):
        self.best = best
        self.counts = {"pruned": 0, "failed": 0}
        size = shutil.get_terminal_size((100, 24))
        self._bar = tqdm(total=n_trials, initial=min(initial, n_trials), desc="FairTune", unit="trial",
                         file=file if file is not None else sys.stderr,
                         # A terminal that reports no size (a pty without one) would hide the bar.
                         ncols=min(120, size.columns), nrows=max(2, size.lines),
                         bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
        self._refresh()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.PRUNED:
            self.counts["pruned"] += 1
        elif trial.state == TrialState.FAIL:
            self.counts["failed"] += 1
        elif trial.state == TrialState.COMPLETE and trial.values is not None and len(trial.values) == 1:
            if self.best is None or trial.values[0] > self.best:
                self.best = trial.values[0]
        self._refresh(update=1)

    def _refresh(self, update: int = 0) -> None:
        best = "-" if self.best is None else f"{self.best:.4f}"
        self._bar.set_postfix_str(f"pruned {self.counts['pruned']}, failed {self.counts['failed']}, best {best}",
                                  refresh=False)
        if update and self._bar.n < self._bar.total:
            self._bar.update(update)
        else:
            self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class TrialFeed:
    """Call study callbacks once for every trial that finishes during a run.

    Called as a study callback ``feed(study, trial)`` in the process that ran
    the trial, it also catches up on trials other workers finished (a shared
    storage); :meth:`poll` does the same from a process that runs no trial.
    Trials already finished when the feed was made are not reported, nor
    trials that do not count (surplus or duplicate baselines, see
    :mod:`skfairtune.distributed._budget`).

    Parameters
    ----------
    callbacks : sequence of callable
        ``callback(study, frozen_trial)``, called in order.
    study : optuna.Study, default=None
        Its finished trials are taken as already reported.
    """

    def __init__(self, callbacks: Sequence[Callable], study: optuna.Study | None = None):
        self.callbacks = list(callbacks)
        self._seen: set[int] = set()
        self._last_poll = 0.0
        self._stop_warned = False
        if study is not None:
            self._seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._feed(study, first=trial)

    def poll(self, study: optuna.Study, *, force: bool = False) -> None:
        """Report newly finished trials (at most every 0.5 s unless ``force``).

        A callback's ``study.stop()`` cannot stop worker processes from here;
        it is ignored with a warning.
        """
        now = time.monotonic()
        if not self.callbacks or (not force and now - self._last_poll < _POLL_S):
            return
        self._last_poll = now
        try:
            self._feed(study)
        except RuntimeError as exc:
            if not is_stop_request(exc):
                raise
            if not self._stop_warned:
                self._stop_warned = True
                warnings.warn("a callback called study.stop(); with n_jobs > 1 the worker processes "
                              "finish the study's n_trials regardless (use timeout= to bound a run).",
                              RuntimeWarning, stacklevel=2)

    def _feed(self, study: optuna.Study, first: FrozenTrial | None = None) -> None:
        trials = study.get_trials(deepcopy=False)
        superseded = superseded_numbers(trials)
        fresh = [t for t in sorted(trials, key=lambda t: t.number)
                 if t.state.is_finished() and t.number not in self._seen
                 and SURPLUS_ATTR not in t.system_attrs and t.number not in superseded]
        if first is not None and first.number not in self._seen and all(t.number != first.number for t in fresh):
            fresh.append(first)
        for trial in fresh:
            self._seen.add(trial.number)
            for callback in self.callbacks:
                callback(study, trial)


@contextlib.contextmanager
def log_to_stderr(verbose: int):
    """With ``verbose >= 1``, show the ``skfairtune`` INFO lines on stderr for the block.

    Only when the application configured no handler of its own (on this
    logger or its ancestors); otherwise its configuration decides. Lines go
    through ``tqdm.write`` so they do not break a progress bar.
    """
    if verbose < 1 or _has_real_handler(logger):
        yield
        return
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("[skfairtune] %(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _has_real_handler(log: logging.Logger) -> bool:
    current: logging.Logger | None = log
    while current is not None:
        if any(not isinstance(h, logging.NullHandler) for h in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


class _TqdmHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if getattr(tqdm, "_instances", None):
                # A bar is drawn: tqdm clears and redraws it around the line.
                tqdm.write(message, file=sys.stderr)
            else:
                sys.stderr.write(message + "\n")
        except Exception:  # noqa: BLE001 - logging must never break the search
            self.handleError(record)


@contextlib.contextmanager
def optuna_verbosity(verbose: int):
    """Optuna logs every trial at INFO; keep it quiet unless verbose >= 2."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose >= 2 else optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)
