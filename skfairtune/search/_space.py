"""The search space: what one Optuna trial samples, and how to read a trial's parameters back.

:class:`SearchSpace` composes a trial's hyperparameters (preset, mask bits or
LoRA unit states and rank, learning rate, the user's distributions), and
:meth:`SearchSpace.from_trial` rebuilds the estimator's parameters from a
finished trial. What a bit or a unit state means stays in :mod:`skfairtune.masks`
(:meth:`MaskSpace.suggest <skfairtune.masks.MaskSpace.suggest>` and
:meth:`~skfairtune.masks.MaskSpace.mask_from_params` sample and read the
bits; ``masks._lora`` says which states a unit can take); this module is the
only one that puts them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from ..masks import MaskSpace
from ..masks._lora import UnitStates, check_rank, resolve_states, unit_state_choices
from ._baselines import BASELINE_PARAM

__all__ = ["SearchSpace", "states_from_params", "suggest_distribution", "suggest_states"]


@dataclass
class SearchSpace:
    """What a trial samples: a preset, mask bits or unit states, learning rate and extra distributions.

    The one place that composes a trial's hyperparameters: the preset baselines'
    own choice, then either the mask bits (:meth:`MaskSpace.suggest
    <skfairtune.masks.MaskSpace.suggest>`) or, with ``lora_ranks``, unit
    states and a rank (:func:`suggest_states`), the learning rate, and the
    user's ``param_distributions``.

    Examples
    --------
    >>> import optuna
    >>> from skfairtune.masks import MaskSpace
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> space = SearchSpace(MaskSpace("attn", depth=2), lr_range=(1e-4, 1e-2))
    >>> trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    >>> params = space.suggest(trial)
    >>> sorted(params), len(params["mask"])
    (['lr', 'mask'], 2)
    >>> space.from_trial(trial.params) == params
    True
    """

    mask_space: object | None  # skfairtune.masks.MaskSpace, or None to keep the estimator's mask
    lr_range: tuple[float, float] | None
    extra: dict = field(default_factory=dict)
    lora_ranks: tuple[int, ...] | None = None  # units may also be LoRA-adapted, at one of these ranks
    # The preset baselines' own choice (see skfairtune.search._baselines): None when no preset is enqueued.
    presets: optuna.distributions.CategoricalDistribution | None = None

    def suggest(self, trial: optuna.Trial, *, preset: str | None = None) -> dict:
        """Estimator parameters for ``trial``; ``preset`` names the baseline an enqueued trial trains."""
        params = {}
        if preset is not None and self.presets is not None and preset in self.presets.choices:
            # A preset trains parameters outside the bit space (ERM: the embeddings too), so the
            # study records its name, not bits it does not stand for.
            params["mask"] = trial.suggest_categorical(BASELINE_PARAM, self.presets.choices)
        elif self.mask_space is not None and self.lora_ranks:
            states, rank = suggest_states(trial, self.mask_space, ranks=self.lora_ranks)
            params["mask"] = states.to_string()
            if rank is not None:
                params["lora_rank"] = rank
        elif self.mask_space is not None:
            params["mask"] = self.mask_space.suggest(trial).to_string()
        if self.lr_range is not None:
            params["lr"] = trial.suggest_float("lr", *self.lr_range, log=True)
        for name, distribution in self.extra.items():
            params[name] = suggest_distribution(trial, name, distribution)
        return params

    def trial_params(self, params: dict) -> dict:
        """Optuna parameter values (for ``enqueue_trial``) from estimator parameters."""
        out = {key: value for key, value in params.items() if key != "mask"}
        if "mask" in params and self.mask_space is not None:
            out.update(zip(self.mask_space.bit_names, self.mask_space.resolve(params["mask"]).bits))
        return out

    def from_trial(self, trial_params: dict) -> dict | None:
        """Estimator parameters of a trial; None when sampling was cut short (Ctrl-C)."""
        try:
            params = {}
            if BASELINE_PARAM in trial_params:
                params["mask"] = trial_params[BASELINE_PARAM]
            elif self.mask_space is not None and self.lora_ranks:
                states, rank = states_from_params(trial_params, self.mask_space)
                params["mask"] = states.to_string()
                if rank is not None:
                    params["lora_rank"] = rank
            elif self.mask_space is not None:
                params["mask"] = self.mask_space.mask_from_params(trial_params).to_string()
            if self.lr_range is not None:
                params["lr"] = trial_params["lr"]
            params.update({k: trial_params[k] for k in self.extra})
        except (KeyError, ValueError):
            return None
        return params


def suggest_distribution(trial, name, distribution):
    """Sample ``name`` from an Optuna distribution of the user's ``param_distributions``."""
    dists = optuna.distributions
    if isinstance(distribution, dists.FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high,
                                   log=distribution.log, step=distribution.step)
    if isinstance(distribution, dists.IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high,
                                 log=distribution.log, step=distribution.step)
    if isinstance(distribution, dists.CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(
        f"param_distributions[{name!r}] must be an optuna FloatDistribution, IntDistribution "
        f"or CategoricalDistribution; got {distribution!r}."
    )


def suggest_states(trial: Any, space: MaskSpace, *, ranks: Sequence[int] = (4, 8, 16),
                   prefix: str = "mask__", rank_name: str = "lora_rank") -> tuple[UnitStates, int | None]:
    """Sample unit states and a LoRA rank with an Optuna-style ``trial``.

    Every unit is one categorical hyperparameter named as in
    :meth:`MaskSpace.sample_names <skfairtune.masks.MaskSpace.sample_names>`,
    over its :func:`~skfairtune.masks._lora.unit_state_choices`: ``(0, 1, 2)``,
    or ``(0, 1)`` for a LayerNorm unit (whose state 2 would repeat state 1). The rank is sampled
    from ``ranks`` only when some unit is in state 2, so trials without LoRA
    do not carry a rank that means nothing.

    Parameters
    ----------
    trial : optuna.trial.Trial
        Anything with ``suggest_categorical(name, choices)``.
    space : MaskSpace
        The units to sample.
    ranks : sequence of int, default=(4, 8, 16)
        Candidate LoRA ranks.
    prefix : str, default="mask__"
        Prefix of the unit hyperparameter names.
    rank_name : str, default="lora_rank"
        Name of the rank hyperparameter.

    Returns
    -------
    states : UnitStates
    rank : int or None
        None when no unit is in state 2.

    Examples
    --------
    >>> import optuna
    >>> from skfairtune.masks import MaskSpace
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    >>> states, rank = suggest_states(trial, MaskSpace("ln-attn-mlp", depth=2), ranks=(2, 4))
    >>> len(states.to_string()), rank in (None, 2, 4)
    (6, True)
    """
    if isinstance(ranks, (str, bytes)) or not isinstance(ranks, Sequence) or not len(ranks):
        raise ValueError(f"`ranks` must be a non-empty sequence of positive integers, got {ranks!r:.60}.")
    ranks = tuple(check_rank(r) for r in ranks)
    values = [int(trial.suggest_categorical(name, choices))
              for name, choices in zip(space.sample_names(prefix), unit_state_choices(space))]
    states = resolve_states(values, space)
    rank = int(trial.suggest_categorical(rank_name, ranks)) if states.lora_units else None
    return states, rank


def states_from_params(params: Mapping[str, Any], space: MaskSpace, *, prefix: str = "mask__",
                       rank_name: str = "lora_rank") -> tuple[UnitStates, int | None]:
    """Rebuild states and rank from hyperparameters named by :func:`suggest_states`.

    Parameters
    ----------
    params : mapping
        E.g. ``study.best_params``; other keys are ignored.
    space : MaskSpace
        The space the states belong to.
    prefix, rank_name : str
        As in :func:`suggest_states`.

    Returns
    -------
    states : UnitStates
    rank : int or None

    Examples
    --------
    >>> from skfairtune.masks import MaskSpace
    >>> params = {"lr": 1e-3, "mask__blocks.0.attn": 2, "mask__blocks.1.attn": 0, "lora_rank": 8}
    >>> states_from_params(params, MaskSpace("attn", depth=2))
    (UnitStates('attn', depth=2, states='20'), 8)
    """
    names = space.sample_names(prefix)
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(
            f"`params` lacks {len(missing)} of the {len(names)} unit states of {space!r}, e.g. "
            f"{missing[:3]}; pass a mapping with every name in space.sample_names({prefix!r})."
        )
    states = resolve_states([params[n] for n in names], space)
    if not states.lora_units:
        return states, None
    if rank_name not in params:
        raise ValueError(f"`params` has units in state 2 (LoRA) but no rank {rank_name!r}.")
    return states, check_rank(params[rank_name])
