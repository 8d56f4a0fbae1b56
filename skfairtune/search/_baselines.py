"""The paper's baselines as trials of the search: each preset at a few learning rates.

The paper tunes every baseline's learning rate on the same objective as
FairTune's masks. The search enqueues each preset (``full``, ``linear``,
``attention``, ``layernorm`` by default) at ``baseline_lrs`` before the
sampler's own trials; their rows in ``cv_results_`` carry the preset's name.

A preset is not a point of the searched bit space: ``full`` also trains the
embeddings and the final norm, ``attention`` the position embedding. So a
preset trial is stored in the study under its own choice, the parameter
``baseline`` (:data:`BASELINE_PARAM`), and with no mask bits: the sampler
models the bits from the searched masks only, instead of learning from points
labelled with bits they did not train. A baseline given as a bit string *is*
a point of the space and keeps its bits.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..distributed._trial_record import TrialRecord
from ..masks import PRESETS
from ._pruners import rung_system_attrs

__all__ = ["BASELINE_PARAM", "baseline_lrs", "baseline_trials", "copy_baseline_trial", "preset_distribution"]

#: The study parameter that names the preset a baseline trial trained.
BASELINE_PARAM = "baseline"


def baseline_lrs(setting, lr_range) -> tuple[float, ...] | None:
    """The learning rates each baseline is tried with (None: one sampled rate).

    ``"auto"`` is one rate per decade of ``lr_range``, its ends included
    (at least two, spaced evenly in log scale).

    Examples
    --------
    >>> baseline_lrs("auto", (1e-5, 1e-2))
    (1e-05, 0.0001, 0.001, 0.01)
    >>> baseline_lrs("auto", (1e-5, 1e-3))
    (1e-05, 0.0001, 0.001)
    >>> baseline_lrs([3e-4], (1e-5, 1e-3))
    [0.0003]
    """
    if not (isinstance(setting, str) and setting == "auto"):
        return setting
    if lr_range is None:
        return None
    low, high = (float(v) for v in lr_range)
    n_rates = max(2, int(round(np.log10(high / low))) + 1)
    return tuple(float(f"{v:.6g}") for v in np.geomspace(low, high, n_rates))


def preset_distribution(baselines):
    """The categorical distribution of :data:`BASELINE_PARAM`: the preset names among ``baselines``.

    One distribution for every preset trial of a study (Optuna requires the same
    distribution for a parameter across trials); None when no baseline is a preset.
    """
    import optuna

    names = tuple(dict.fromkeys(name for name in baselines or () if name in PRESETS))
    return optuna.distributions.CategoricalDistribution(names) if names else None


def baseline_trials(baselines, space, mask_space, lrs, *, space_name=None) -> list[tuple[dict, dict]]:
    """(trial parameters, user attributes) of every baseline trial, in the order to run them.

    The middle rate runs first for every preset, so a small budget still holds
    each baseline once; then the rates further from it, higher first (the sparse
    presets usually want them). A preset the space cannot express is skipped
    with a warning.
    """
    presets = []
    for name in baselines:
        try:
            presets.append((name, mask_space.resolve(name).to_string()))
        except ValueError:
            warnings.warn(f"baseline {name!r} cannot be expressed in space {space_name!r}; skipped.",
                          UserWarning, stacklevel=4)
    lrs = list(lrs or (None,))
    middle = sorted(lr for lr in lrs if lr is not None)[len(lrs) // 2] if None not in lrs else None
    lrs.sort(key=lambda lr: (0, 0) if lr is None else (round(abs(np.log(lr / middle)), 6), -lr))

    queued = []
    for lr in lrs:
        for name, bits in presets:
            params = {} if lr is None or space.lr_range is None else {"lr": lr}
            if name in PRESETS:
                params[BASELINE_PARAM] = name
            else:
                params.update(space.trial_params({"mask": bits}))
            queued.append((params,
                           TrialRecord(baseline=name, baseline_lr=lr).as_user_attrs("baseline", "baseline_lr")))
    return queued


def copy_baseline_trial(study, source, *, baseline: str, source_study: str, presets, pruner, max_epochs: int,
                        extra_user_attrs: dict | None = None) -> None:
    """Add a complete baseline trial of another study to ``study``, stored as the search stores its own.

    The copy is kept under the preset's name (:data:`BASELINE_PARAM`), not bits,
    records where it came from (``copied_from``), and carries the rung records
    successive halving needs to count it as a competitor. Used where the same
    baseline training (same folds, seed and objective) serves several studies,
    e.g. ``compare_methods`` and the science benchmark's second sampler.

    Parameters
    ----------
    study : optuna.Study
        The study receiving the copy.
    source : optuna.trial.FrozenTrial
        A complete trial that trained the preset ``baseline``.
    baseline : str
        The preset's name.
    source_study : str
        The name of the study ``source`` comes from.
    presets : sequence of str
        Every preset the receiving study holds (one distribution for all of them).
    pruner : optuna.pruners.BasePruner
        The receiving study's pruner.
    max_epochs : int
        Epochs a complete trial trains.
    extra_user_attrs : dict, default=None
        User attributes outside the trial record to store with the copy (e.g. a
        benchmark's held-out scores); the record's own fields cannot be overridden.
    """
    import optuna

    params, distributions = {BASELINE_PARAM: baseline}, {BASELINE_PARAM: preset_distribution(presets)}
    if "lr" in source.params:
        params["lr"], distributions["lr"] = source.params["lr"], source.distributions["lr"]
    record = TrialRecord.of(source)
    record.baseline, record.baseline_lr = baseline, params.get("lr")
    record.copied_from = {"study": source_study, "trial": source.number}
    record.params = {"mask": baseline, **({"lr": params["lr"]} if "lr" in params else {})}
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions=distributions, value=source.value,
        user_attrs={**(extra_user_attrs or {}), **record.as_user_attrs()},
        intermediate_values=dict(source.intermediate_values),
        system_attrs=rung_system_attrs(pruner, source.intermediate_values, max_epochs)))
