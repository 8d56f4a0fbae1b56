"""What a search stores on each Optuna trial, as one typed record.

Trials travel between processes and machines only through the study's
storage, so everything a search later needs (the parameters trained, epochs
run, per-split scores, bootstrap replicates, why a trial failed...) is written
as Optuna user attributes. :class:`TrialRecord` names those attributes once:
the objective writes them with :meth:`TrialRecord.write` (an unknown name is
an error, not a silent new key) and every reader uses :meth:`TrialRecord.of`.

The record lives in :mod:`skfairtune.distributed` because the process layer
writes it too (why a trial failed, which trial a retry replaces) and reads two
properties that fields declare rather than the process layer naming them:
which attributes a retry keeps (:meth:`TrialRecord.retry_attrs`, fields with
``keep_on_retry``) and what makes an enqueued trial unique
(:meth:`TrialRecord.identity`, fields with ``identity``).
Pickles and code of the flat layout reach it as ``skfairtune._trial_record`` (see :mod:`skfairtune._legacy`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrialRecord"]

# A field an enqueued trial is named by: kept on its retry, and one trial per value enqueued.
_ENQUEUED = {"keep_on_retry": True, "identity": True}


@dataclass
class TrialRecord:
    """A search trial's stored attributes.

    Attributes
    ----------
    params : dict or None
        Estimator parameters the trial trained with (a baseline keeps its preset name).
    n_epochs : int
        Epochs trained (so far, for a running or pruned trial).
    fit_time : float
        Seconds spent training and scoring all splits.
    split_fit_times : list of float
        Seconds spent training each split (``cv_results_``'s ``mean_fit_time``, ``std_fit_time``).
    split_score_times : list of float
        Seconds spent predicting and scoring each split's validation part (``*_score_time``).
    n_trainable_params : int or None
        Parameters the mask trains, head included.
    frozen_prefix : int or None
        Leading half-blocks served from cached activations.
    activation_cache : dict or None
        The search's activation-cache counters when the trial started.
    epoch_split_scores : list of list of float
        Per epoch, the score of each split.
    epoch_split_overall_auc : list of list of float or None
        Per epoch, each split's overall AUC (the Pareto plot's axis).
    bootstrap_scores : list of float
        Paired bootstrap replicates of the final score.
    baseline : str or None
        The preset an enqueued baseline trial trains (kept on retry; identity).
    baseline_lr : float or None
        The learning rate a baseline was enqueued with (kept on retry; identity).
    fail_reason : str or None
        Why a trial failed or scored ``error_score``.
    error_score : float or None
        The search's numeric ``error_score`` given to a trial whose fit failed (the trial is
        told to the sampler as failed; ``cv_results_`` shows this score, as scikit-learn does).
    split_objective_scores : list of list of float
        Multi-objective searches: each objective's score per split at the last epoch.
    traceback : str or None
        The end of the failure's traceback.
    interrupted : bool
        Ended by Ctrl-C or a signal (re-queued by the process runner).
    requeued_from : int or None
        Number of the trial this one retries.
    copied_from : dict or None
        ``{"study": name, "trial": number}`` of the trial this one copies
        (``compare_methods``' baselines).
    epoch_objective_values : dict or None
        Multi-objective searches: ``{"<epoch>": [value per objective]}``.
    pareto_rungs : dict or None
        Multi-objective pruning: ``{"<rung epoch>": [dominated by, trials at the rung]}``.

    Examples
    --------
    >>> import optuna
    >>> study = optuna.create_study()
    >>> trial = study.ask()
    >>> TrialRecord.write(trial, n_epochs=3, fit_time=1.5)
    >>> TrialRecord.of(trial).n_epochs
    3
    >>> TrialRecord.write(trial, n_epoch=3)
    Traceback (most recent call last):
    ...
    AttributeError: TrialRecord has no field 'n_epoch'; fields are ['params', 'n_epochs', ...].
    """

    params: dict | None = None
    n_epochs: int = 0
    fit_time: float = math.nan
    split_fit_times: list = field(default_factory=list)
    split_score_times: list = field(default_factory=list)
    n_trainable_params: int | None = None
    frozen_prefix: int | None = None
    activation_cache: dict | None = None
    epoch_split_scores: list = field(default_factory=list)
    epoch_split_overall_auc: list = field(default_factory=list)
    bootstrap_scores: list = field(default_factory=list)
    baseline: str | None = field(default=None, metadata=_ENQUEUED)
    baseline_lr: float | None = field(default=None, metadata=_ENQUEUED)
    fail_reason: str | None = None
    error_score: float | None = None
    split_objective_scores: list = field(default_factory=list)
    traceback: str | None = None
    interrupted: bool = False
    requeued_from: int | None = None
    copied_from: dict | None = None
    epoch_objective_values: dict | None = None
    pareto_rungs: dict | None = None

    @classmethod
    def fields(cls, flag: str | None = None) -> tuple[str, ...]:
        """The field names, in order; with ``flag``, those whose metadata sets it."""
        return tuple(f.name for f in dataclasses.fields(cls) if flag is None or f.metadata.get(flag))

    @classmethod
    def retry_attrs(cls, trial) -> dict:
        """The user attributes of ``trial`` that its retry keeps: what to run, not the dead attempt's results.

        Examples
        --------
        >>> import optuna
        >>> trial = optuna.trial.create_trial(
        ...     state=optuna.trial.TrialState.FAIL,
        ...     user_attrs=TrialRecord(baseline="linear", fail_reason="killed").as_user_attrs())
        >>> TrialRecord.retry_attrs(trial)
        {'baseline': 'linear'}
        """
        keep = cls.fields("keep_on_retry")
        return {name: value for name, value in trial.user_attrs.items() if name in keep}

    @classmethod
    def identity(cls, trial) -> tuple | None:
        """What names an enqueued trial (its identity fields' values); None when its first is unset.

        Examples
        --------
        >>> import optuna
        >>> trial = optuna.trial.create_trial(
        ...     state=optuna.trial.TrialState.WAITING, user_attrs={"baseline": "linear", "baseline_lr": 1e-3})
        >>> TrialRecord.identity(trial)
        ('linear', 0.001)
        """
        names = cls.fields("identity")
        attrs = trial.user_attrs
        if attrs.get(names[0]) is None:
            return None
        return tuple(attrs.get(name) for name in names)

    @classmethod
    def describe_identity(cls, identity: tuple) -> str:
        """``identity`` in words, naming its first field: ``"baseline 'linear'"``."""
        return f"{cls.fields('identity')[0]} {identity[0]!r}"

    @classmethod
    def of(cls, trial) -> TrialRecord:
        """The record of an Optuna ``Trial`` or ``FrozenTrial`` (missing attributes take defaults)."""
        attrs = trial.user_attrs
        return cls(**{name: attrs[name] for name in cls.fields() if attrs.get(name) is not None})

    @classmethod
    def write(cls, trial, **values: Any) -> None:
        """Store ``values`` on ``trial`` (JSON-serialisable, as Optuna storages require)."""
        known = cls.fields()
        for name, value in values.items():
            if name not in known:
                raise AttributeError(f"TrialRecord has no field {name!r}; fields are {list(known)}.")
            trial.set_user_attr(name, value)

    def as_user_attrs(self, *names: str) -> dict:
        """The named fields as user attributes; without names, every field that is set."""
        if names:
            return {name: getattr(self, name) for name in names}
        defaults = type(self)()
        return {name: getattr(self, name) for name in self.fields()
                if not _same(getattr(self, name), getattr(defaults, name))}


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
