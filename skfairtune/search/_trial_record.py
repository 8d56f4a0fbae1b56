"""What a search stores on each Optuna trial, as one typed record.

Trials travel between processes and machines only through the study's
storage, so everything a search later needs (the parameters trained, epochs
run, per-split scores, bootstrap replicates, why a trial failed...) is written
as Optuna user attributes. :class:`TrialRecord` names those attributes once:
the objective writes them with :meth:`TrialRecord.write` (an unknown name is
an error, not a silent new key) and every reader uses :meth:`TrialRecord.of`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrialRecord"]


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
        The preset an enqueued baseline trial trains.
    baseline_lr : float or None
        The learning rate a baseline was enqueued with.
    fail_reason : str or None
        Why a trial failed or scored ``error_score``.
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
    >>> from skfairtune.search._trial_record import TrialRecord
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
    n_trainable_params: int | None = None
    frozen_prefix: int | None = None
    activation_cache: dict | None = None
    epoch_split_scores: list = field(default_factory=list)
    epoch_split_overall_auc: list = field(default_factory=list)
    bootstrap_scores: list = field(default_factory=list)
    baseline: str | None = None
    baseline_lr: float | None = None
    fail_reason: str | None = None
    traceback: str | None = None
    interrupted: bool = False
    requeued_from: int | None = None
    copied_from: dict | None = None
    epoch_objective_values: dict | None = None
    pareto_rungs: dict | None = None

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

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
